#!/usr/bin/env python
"""OrganCombo inference: the paper's max-over-windows rule with our sliding window vs MONAI doing the same job.

The job (Taghanaki et al. 2019, sec. 2): cover the volume with windows at a fixed stride (window / 4: 20 of 80 in the
paper), run the network on each window (normalised to [0, 1] on its own) and keep, per voxel and organ, the MAXIMUM
probability over the windows covering it. MONAI's ``sliding_window_inference`` has no max blending, so the peer runs
MONAI's window loop with ``with_coord=True`` and a predictor that keeps the running maximum of each window's output in
a full-size buffer (what a MONAI user would write); MONAI's own averaged output is discarded. Both results must be
identical. Same network, windows, batch size and threads in one run.

Default: the demo network (combo_net, base width 8) on a PET phantom of 128 x 52 x 72 voxels, window 32, stride 8.
``--paper``: the full network (width 32) with 80^3 windows and stride 20 on a 128 x 128 x 200 phantom (GPU advised).
Last line: ``speedup_vs_monai=<x>`` (MONAI time / our time).
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
sys.path.insert(0, str(ROOT / "OrganCombo"))

from mednets.phantoms import pet_whole_body_phantom  # noqa: E402
from OrganComboLib import build_model  # noqa: E402
from OrganComboLib.configs import get_config  # noqa: E402
from OrganComboLib.pipeline import WindowNormalizingPredictor, min_max_normalize, predict_probabilities  # noqa: E402


def monai_max(network: torch.nn.Module, image: np.ndarray, window: int, stride: int, batch_size: int,
              device: torch.device) -> np.ndarray:
    from monai.inferers import sliding_window_inference

    predictor = WindowNormalizingPredictor(network).eval()
    tensor = torch.from_numpy(image[np.newaxis, np.newaxis]).to(device)
    maximum = torch.full((1, network.out_channels) + image.shape, -torch.inf, device=device)

    def keep_max(windows: torch.Tensor, locations) -> torch.Tensor:
        output = predictor(windows)
        for index, location in enumerate(locations):
            region = (slice(None),) + tuple(location[-3:]) if len(location) > 3 else (slice(None),) + tuple(location)
            maximum[(0,) + region] = torch.maximum(maximum[(0,) + region], output[index])
        return output

    with torch.inference_mode():
        sliding_window_inference(tensor, (window,) * 3, batch_size, keep_max, overlap=1.0 - stride / window,
                                 mode="constant", padding_mode="constant", cval=float(image.min()), with_coord=True,
                                 progress=False)
    return maximum[0].cpu().numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper", action="store_true", help="full-size network and windows")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.paper:
        window, stride, width = 80, 20, 32
        phantom = pet_whole_body_phantom(seed=5, shape=(200, 128, 128), spacing=(5.0, 3.0, 3.0))
    else:
        window, stride, width = 32, 8, 8
        phantom = pet_whole_body_phantom(seed=5)
    network = build_model("combo_net", base_channels=width).to(device).eval()
    image = min_max_normalize(phantom.image)
    config = get_config("pet").replace(window_size=(window,) * 3, window_stride=(stride,) * 3)
    print(f"combo_net width {width}, volume {image.shape}, window {window}, stride {stride}, batch {args.batch_size}, "
          f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    ours_times, monai_times = [], []
    ours = theirs = None
    for run in range(args.runs + 1):  # the first run of each warms up
        started = time.perf_counter()
        ours = predict_probabilities(network, image, config, device=device, batch_size=args.batch_size)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        if run:
            ours_times.append(elapsed)
        started = time.perf_counter()
        theirs = monai_max(network, image, window, stride, args.batch_size, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        if run:
            monai_times.append(elapsed)
    difference = float(np.abs(ours - theirs).max())
    print(f"results agree: max |mednets - monai max| = {difference:.2e}")
    if difference > 1e-5:
        print("RESULTS DIFFER", file=sys.stderr)
        return 1
    ours_median, monai_median = statistics.median(ours_times), statistics.median(monai_times)
    print(f"mednets sliding_window(blend='max') median {ours_median:.3f} s (runs {', '.join(f'{t:.2f}' for t in ours_times)})")
    print(f"monai sliding_window_inference + max  median {monai_median:.3f} s (runs {', '.join(f'{t:.2f}' for t in monai_times)})")
    print(f"speedup_vs_monai={monai_median / ours_median:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
