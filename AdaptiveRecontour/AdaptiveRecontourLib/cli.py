"""Command line: ``python -m AdaptiveRecontourLib predict|train|evaluate`` on image files.

Examples::

    python -m AdaptiveRecontourLib predict --planning plan.nrrd --planning-label plan_label.nrrd \\
        --daily day3.nrrd --output day3_label.nrrd --field day3_field.nrrd --device cpu
    python -m AdaptiveRecontourLib train --folder pairs/ --output-dir run/ --iterations 2000
    python -m AdaptiveRecontourLib evaluate --result day3_label.nrrd --reference day3_ref.nrrd --field day3_field.nrrd

Label values: 1 prostate, 2 seminal vesicles, 3 rectum, 4 bladder. Exit code 2 with a one-line reason on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

import numpy as np

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m AdaptiveRecontourLib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="re-contour a daily CT from the planning CT and contours")
    p.add_argument("--planning", required=True, help="planning CT (any SimpleITK-readable file)")
    p.add_argument("--planning-label", required=True, help="planning label map (values 1-4)")
    p.add_argument("--daily", required=True, help="daily CT")
    p.add_argument("--output", required=True, help="daily label map to write (on the daily CT's grid)")
    p.add_argument("--field", help="also write the planning-to-daily displacement field (RAS mm, resampling "
                                   "convention) as a vector image on the working grid")
    p.add_argument("--model", default=None, help="model name or .safetensors path (default: bundled demo)")
    p.add_argument("--use", choices=("segmentation", "registration"), default=None,
                   help="segmentation head or warped planning contours (default: the model's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=2)
    t = sub.add_parser("train", help="train on a folder of planning/daily pairs")
    t.add_argument("--folder", required=True)
    t.add_argument("--output-dir", required=True)
    t.add_argument("--config", default="cpu_small", help="configuration name (paper_cross_stitch, cpu_small, ...)")
    t.add_argument("--iterations", type=int, default=None)
    t.add_argument("--device", default="auto")
    e = sub.add_parser("evaluate", help="DSC, MSD, HD per structure (+ Jacobian std and folding of a field)")
    e.add_argument("--result", required=True)
    e.add_argument("--reference", required=True)
    e.add_argument("--field", help="displacement field written by predict --field")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _progress_bar(total_label: str):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return None, lambda f, m: None
    bar = tqdm(total=100, desc=total_label, leave=False)

    def update(fraction, message):
        bar.n = int(round(100 * fraction))
        bar.set_postfix_str(message[:40])
        bar.refresh()

    return bar, update


def _predict(args) -> int:
    from mednets.io import read_volume, write_volume

    from .inputs import check_ct_volume
    from .models import load_recontour_model
    from .pipeline import recontour

    planning, daily = read_volume(args.planning), read_volume(args.daily)
    labels = read_volume(args.planning_label)
    check_ct_volume(planning, "planning CT")
    check_ct_volume(daily, "daily CT")
    if labels.shape != planning.shape:
        raise ValueError(f"the planning label map {labels.shape} and the planning CT {planning.shape} differ in shape")
    loaded, config = load_recontour_model(args.model, device=args.device, report=print)
    bar, update = _progress_bar("recontour")
    result = recontour(loaded.network, config, planning, np.asarray(labels.array).astype(np.uint8), daily,
                       output=args.use, device=loaded.device, batch_size=args.batch_size, progress=update)
    if bar is not None:
        bar.close()
    write_volume(daily.with_array(result.labels.astype(np.uint8)), args.output)
    if args.field:
        write_volume(result.grid.with_array(result.displacement_ras.astype(np.float32)), args.field)
    print(f"wrote {args.output} ({result.output} output; network {result.timings.get('network_s', 0):.2f} s)")
    return 0


def _train(args) -> int:
    from .training import train_from_folder

    bar, update = _progress_bar("train")
    path = train_from_folder(args.folder, args.output_dir, configName=args.config, iterations=args.iterations,
                             device=args.device, progress=update)
    if bar is not None:
        bar.close()
    print(f"wrote {path}")
    return 0


def _evaluate(args) -> int:
    from mednets.io import read_volume
    from mednets.metrics import deformation_metrics, per_label_metrics

    from .configs import SEGMENT_NAMES

    result, reference = read_volume(args.result), read_volume(args.reference)
    if result.shape != reference.shape:
        raise ValueError(f"result {result.shape} and reference {reference.shape} differ in shape")
    rows = per_label_metrics(np.asarray(result.array), np.asarray(reference.array),
                             {i + 1: n for i, n in enumerate(SEGMENT_NAMES)}, result.spacing,
                             metrics=("dice", "mean_surface_distance", "hausdorff_distance"))
    out = {"structures": rows}
    if args.field:
        field = read_volume(args.field)
        along = np.asarray(field.array, dtype=np.float64) @ field.directions_ras  # components along I, J, K
        dvf = np.stack([along[..., 2], along[..., 1], along[..., 0]])
        out["deformation"] = deformation_metrics(dvf, field.spacing)
    if args.json:
        print(json.dumps(out, default=float))
    else:
        for row in rows:
            print(f"{row['name']:<18} DSC {row['dice']:.3f}  MSD {row['mean_surface_distance']:.2f} mm  "
                  f"HD {row['hausdorff_distance']:.2f} mm")
        if "deformation" in out:
            d = out["deformation"]
            print(f"Jacobian std {d['jacobian_std']:.4f}  folding {100 * d['folding_fraction']:.3f} %")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"predict": _predict, "train": _train, "evaluate": _evaluate}[args.command](args)
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as error:
        print(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return 2
