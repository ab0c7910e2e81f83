#!/usr/bin/env python
"""AneurysmSeg full-volume inference: our GLIA-Net pipeline vs MONAI's sliding window running the same network.

The job (Bo et al., Patterns 2021): cover a CTA with windows overlapping by 64 of 96 voxels, run GLIA-Net on each
window with the window's box in the 96^3 global image (ROI pooling of the global feature map) and average the
aneurysm probabilities of overlapping windows. Ours: :func:`AneurysmSegLib.pipeline.predict_probabilities`
(mednets.inference.sliding_window over the positioned int16 image, global feature map computed once, channels-last
windows on the CPU). Peer: MONAI's ``sliding_window_inference`` with ``with_coord=True`` on the HU-windowed 3-channel
image (what a MONAI user would write: the locations give the boxes), the same network and the same precomputed global
feature map, the same windows, batch size, averaging ("constant" mode) and threads. Both results must agree.

Default (CPU-sized): the small demo network (configs.SMALL, 24^3 windows, overlap 8 = the same 1/3 of the window) on a
CTA head phantom of 64 x 96 x 96 voxels. ``--paper``: the full network (1,066,704 parameters), 96^3 windows, overlap
64, on a 200 x 256 x 256 phantom (GPU advised; about 180 windows). Last line: ``speedup_vs_monai=<x>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "MedNetsCore"))
sys.path.insert(0, str(ROOT / "AneurysmSeg"))

from mednets.phantoms.cta_head import cta_head_phantom  # noqa: E402
from AneurysmSegLib import build_model  # noqa: E402
from AneurysmSegLib.configs import PAPER, SMALL  # noqa: E402
from AneurysmSegLib.inputs import GlobalGeometry, hu_windows  # noqa: E402
from AneurysmSegLib.pipeline import global_image, predict_probabilities  # noqa: E402


def monai_average(network, hu: np.ndarray, config, batch_size: int, device: torch.device) -> np.ndarray:
    from monai.inferers import sliding_window_inference

    image, geometry = global_image(hu, config)
    features = network.global_feature_map(image.to(device))
    patch = tuple(config.patch_size)
    windows = torch.from_numpy(hu_windows(hu, config.hu_windows))[None].to(device)

    def predictor(batch: torch.Tensor, locations) -> torch.Tensor:
        boxes = []
        for location in locations:
            region = location[-3:]
            boxes.append(geometry.box(tuple(int(s.start) for s in region), patch))
        logits, _ = network(batch, boxes=torch.tensor(boxes, dtype=torch.float32), global_features=features)
        return torch.softmax(logits, dim=1)[:, 1:2]

    with torch.inference_mode():
        result = sliding_window_inference(windows, patch, batch_size, predictor, overlap=config.overlap_fraction,
                                          mode="constant", padding_mode="constant", cval=0.0, with_coord=True,
                                          progress=False)
    return result[0, 0].float().cpu().numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper", action="store_true", help="full-size network, 96^3 windows, 200x256x256 volume")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.paper:
        config = PAPER
        phantom = cta_head_phantom(shape=(200, 256, 256), spacing=(0.5, 0.5, 0.5), seed=7)
    else:
        config = SMALL
        phantom = cta_head_phantom(shape=(64, 96, 96), spacing=(1.0, 1.0, 1.0), seed=7)
    network = build_model("glia_net", **config.model_overrides).to(device).eval()
    hu = np.rint(phantom.image).astype(np.float32)  # CT numbers are integers (our positioned image stores int16)
    parameters = sum(p.numel() for p in network.parameters())
    print(f"glia_net {parameters:,} parameters, volume {hu.shape}, window {config.patch_size[0]}, overlap "
          f"{config.window_overlap[0]}, batch {args.batch_size}, device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    ours_times, monai_times = [], []
    ours = theirs = None
    for run in range(args.runs + 1):  # the first run of each warms up
        started = time.perf_counter()
        ours, _ = predict_probabilities(network, hu, config, device=device, batch_size=args.batch_size)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if run:
            ours_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        theirs = monai_average(network, hu, config, args.batch_size, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if run:
            monai_times.append(time.perf_counter() - started)
    difference = float(np.abs(ours - theirs).max())
    print(f"results agree: max |mednets - monai| = {difference:.2e}")
    if difference > 1e-4:
        print("RESULTS DIFFER", file=sys.stderr)
        return 1
    ours_median, monai_median = statistics.median(ours_times), statistics.median(monai_times)
    print(f"mednets pipeline (sliding_window, constant blend) median {ours_median:.3f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in ours_times)})")
    print(f"monai sliding_window_inference (with_coord)      median {monai_median:.3f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in monai_times)})")
    print(f"speedup_vs_monai={monai_median / ours_median:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
