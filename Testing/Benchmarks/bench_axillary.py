#!/usr/bin/env python
"""AxillaryLNDetect inference: the paper's two stages against one full-resolution stage with the same network.

The paper's reason for two stages (Altun et al., sec. 2, Fig. 2): the lymph-node network runs at 1 mm only inside
the VOI that a first network finds at 3 mm, instead of over the whole CT at 1 mm. Both runs here use the SAME
lymph-node network, window size and threads:

* two-stage: ``detect_lymph_nodes`` (resampling to 3 mm, VOI network, per-VOI-component crops resampled to 1 mm,
  LN network on the crops, candidates);
* single-stage: ``single_stage_probability`` (the whole CT resampled to 1 mm, LN network everywhere).

Default: a CT axilla phantom of 160 x 200 x 360 mm at 2 mm, stages at 3 mm / 1 mm (the paper's), networks of
widths 8-16-32 (the full 80-160-320 width takes minutes per run on a CPU; ``--widths 80 160 320`` with a GPU). The VOI
is by default the reference VOI of the phantom (the 5 cm spheres minus air and bone, opened; ``--voi oracle``); an
untrained VOI network of the same widths still runs so that its time counts (``--voi demo`` uses the bundled demo VOI
network instead). The speed-up depends on the VOI's share of the volume, which is printed. Last line:
``two_stage_speedup=<x>`` (single-stage time / two-stage time, medians).
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
sys.path.insert(0, str(ROOT / "AxillaryLNDetect"))

from mednets.image import Volume  # noqa: E402
from mednets.phantoms.axilla_ct import axilla_ct_phantom  # noqa: E402
from mednets.sparse_annotations import voi_mask  # noqa: E402
from AxillaryLNDetectLib import build_model  # noqa: E402
from AxillaryLNDetectLib.configs import get_config  # noqa: E402
from AxillaryLNDetectLib.pipeline import detect_lymph_nodes, resample_ct, single_stage_probability  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs=3, default=(8, 16, 32))
    parser.add_argument("--voi", choices=("demo", "oracle"), default="oracle")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = get_config("paper")  # 3 mm / 1 mm, 72^3 training windows, 116^3 inference windows
    case = axilla_ct_phantom(seed=7)
    volume = Volume(case.image, spacing=case.spacing, directions_ras=case.extra["directions_ras"])
    ln_network = build_model("unet3d_3level", widths=tuple(args.widths)).eval()
    mode = args.voi
    reference = None
    if mode == "demo":
        from AxillaryLNDetectLib.models import load_detector

        voi_network = load_detector(None, device="cpu").voi.network
    else:  # the VOI network runs (its time counts) but the reference VOI is used
        voi_network = build_model("unet3d_3level", widths=tuple(args.widths)).eval()
        coarse = resample_ct(volume, config.stage1_spacing)
        centres = coarse.ras_to_kji(volume.kji_to_ras(case.extra["centres_kji"]))
        reference = voi_mask(coarse.array, centres, coarse.spacing)
    print(f"phantom {volume.shape} at {volume.spacing} mm, stages {config.stage1_spacing} / {config.stage2_spacing} "
          f"mm, LN network widths {tuple(args.widths)}, VOI: {mode}, {args.threads} threads")
    two, one = [], []
    fraction = 0.0
    with torch.inference_mode():  # warm-up (oneDNN kernels) on one window
        ln_network(torch.zeros(1, 1, config.inference_size, config.inference_size, config.inference_size))
    for run in range(1, args.runs + 1):
        started = time.perf_counter()
        result = detect_lymph_nodes(volume, voi_network, ln_network, config, device="cpu",
                                    batch_size=args.batch_size, voi_override=reference)
        elapsed = time.perf_counter() - started
        fraction = result.voi_fraction
        if run:
            two.append(elapsed)
        started = time.perf_counter()
        fine, _probability = single_stage_probability(volume, ln_network, config, device="cpu",
                                                      batch_size=args.batch_size)
        elapsed = time.perf_counter() - started
        if run:
            one.append(elapsed)
    print(f"VOI covers {100 * fraction:.1f} % of the volume; 1 mm grid of the whole volume {fine.shape}")
    print(f"two-stage median {statistics.median(two):.2f} s (runs {', '.join(f'{t:.2f}' for t in two)})")
    print(f"single-stage (1 mm everywhere) median {statistics.median(one):.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in one)})")
    print(f"two_stage_speedup={statistics.median(one) / statistics.median(two):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
