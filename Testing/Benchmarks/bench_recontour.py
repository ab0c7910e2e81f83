#!/usr/bin/env python
"""AdaptiveRecontour: network registration vs SimpleITK B-spline registration of the same phantom pair.

Both start from the same affinely pre-registered pair (pipeline.prepare_pair: daily CT on the working grid, planning
CT and contours resampled with the SimpleITK affine). Timed:

* network: whole-volume tiled inference of the registration path (DVF) + warping of the planning contours;
* B-spline: SimpleITK ``ImageRegistrationMethod`` with a B-spline transform (mesh of ``--mesh`` control points per
  axis), correlation metric, L-BFGS-B, two resolution levels, then warping of the planning contours (nearest).

DSC: mean over prostate, seminal vesicles, rectum, bladder of the warped planning contours against the daily truth.
The network is the bundled demo model when it exists (else ``--model``; with neither, an untrained network of the demo
size, which only times the inference). Last line: ``speedup_vs_bspline=<x> dsc_net=<a> dsc_bspline=<b>``
(x = B-spline time / network time; affine time excluded from both).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "MedNetsCore"))
sys.path.insert(0, str(ROOT / "AdaptiveRecontour"))

from AdaptiveRecontourLib import build_model  # noqa: E402
from AdaptiveRecontourLib.configs import get_config  # noqa: E402
from AdaptiveRecontourLib.pipeline import normalise_ct, predict_arrays, prepare_pair  # noqa: E402
from mednets.image import Volume  # noqa: E402
from mednets.metrics import dice  # noqa: E402
from mednets.phantoms import KJI_LPS_DIRECTIONS  # noqa: E402
from mednets.phantoms.pelvis_pair import pelvis_ct_pair  # noqa: E402
from mednets.spatial_transform import warp_labels  # noqa: E402


def mean_dice(a, b):
    return float(np.mean([dice(a == v, b == v) for v in (1, 2, 3, 4)]))


def bspline(fixed: Volume, moving: Volume, moving_labels: np.ndarray, mesh: int, iterations: int):
    f = sitk.Cast(fixed.to_sitk(), sitk.sitkFloat32)
    m = sitk.Cast(moving.to_sitk(), sitk.sitkFloat32)
    f = sitk.Clamp(f, sitk.sitkFloat32, -1000.0, 1000.0)
    m = sitk.Clamp(m, sitk.sitkFloat32, -1000.0, 1000.0)
    transform = sitk.BSplineTransformInitializer(f, [mesh] * 3)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsCorrelation()
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=iterations)
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(f, m)
    labels = sitk.GetImageFromArray(moving_labels.astype(np.uint8))
    labels.CopyInformation(f)
    warped = sitk.Resample(labels, f, transform, sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(warped)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=950)
    parser.add_argument("--model", default=None, help="checkpoint (.safetensors) or model name")
    parser.add_argument("--mesh", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)

    from AdaptiveRecontourLib.models import available_models, load_recontour_model

    names = [s.name for s in available_models()]
    if args.model or names:
        loaded, config = load_recontour_model(args.model, device="cpu")
        network, source = loaded.network, args.model or "bundled demo weights"
    else:
        config = get_config("cpu_small", spacing_mm=3.0)
        torch.manual_seed(0)
        network, source = build_model(config.model, **config.architecture_config()).eval(), "untrained (timing only)"
    sp = config.spacing_mm
    shape = tuple(int(round(n * 2.0 / sp)) for n in (48, 64, 80))
    pair = pelvis_ct_pair(args.seed, shape=shape, spacing=(sp,) * 3)
    vol = lambda c: Volume(c.image, spacing=c.spacing, directions_ras=KJI_LPS_DIRECTIONS)  # noqa: E731
    prep = prepare_pair(vol(pair.planning), pair.planning.labels, vol(pair.daily), sp, True)
    moving_labels = np.where(prep.moving_labels <= 4, prep.moving_labels, 0).astype(np.uint8)
    truth = np.where(pair.daily.labels <= 4, pair.daily.labels, 0)
    fixed_n, moving_n = normalise_ct(prep.fixed.array), normalise_ct(prep.moving.array)

    def run_net():
        out = predict_arrays(network, fixed_n, moving_n, moving_labels, config.inference_patch_size, batch_size=1)
        return warp_labels(torch.from_numpy(moving_labels.astype(np.int64))[None, None],
                           torch.from_numpy(out["dvf"])[None], 5)[0, 0].numpy()

    run_net()  # warm-up
    net_times, bs_times = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        net_labels = run_net()
        net_times.append(time.perf_counter() - t)
    for _ in range(max(1, args.repeats // 2)):
        t = time.perf_counter()
        bs_labels = bspline(prep.fixed, prep.moving, moving_labels, args.mesh, args.iterations)
        bs_times.append(time.perf_counter() - t)
    t_net, t_bs = min(net_times), min(bs_times)
    d_aff, d_net, d_bs = mean_dice(moving_labels, truth), mean_dice(net_labels, truth), mean_dice(bs_labels, truth)
    print(f"pair seed {args.seed}, {shape} voxels at {sp} mm; network: {config.model} {source}; threads {args.threads}")
    print(f"network {t_net:.3f} s, B-spline {t_bs:.3f} s; DSC affine {d_aff:.3f}, network {d_net:.3f}, "
          f"B-spline {d_bs:.3f}")
    print(f"speedup_vs_bspline={t_bs / t_net:.2f} dsc_net={d_net:.3f} dsc_bspline={d_bs:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
