"""Command line: ``python -m AdaptiveRecontourLib predict|train|evaluate`` on image files.

Examples::

    python -m AdaptiveRecontourLib predict --planning plan.nrrd --planning-label plan_label.nrrd \\
        --daily day3.nrrd --output day3_label.nrrd --field day3_field.nrrd --device cpu
    python -m AdaptiveRecontourLib train --folder pairs/ --output-dir run/ --iterations 2000
    python -m AdaptiveRecontourLib evaluate --result day3_label.nrrd --reference day3_ref.nrrd --field day3_field.nrrd

Label values: 1 prostate, 2 seminal vesicles, 3 rectum, 4 bladder. Exit code 2 with a one-line reason on bad input.

The Slicer panel runs these same commands as a child process (``PythonSlicer -m AdaptiveRecontourLib --progress json
...``; ``mednets.widgets.start_cli_job``): with ``--progress json`` progress, log and result lines (output paths,
metric rows, the checkpoint) are JSON objects on stdout (``mednets.cli``). Inputs are plain NRRD files with full
geometry; no slicer/qt import happens here.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from mednets.cli import emit_log, emit_result, json_progress, progress_bar, run_command

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
    p.add_argument("--model-folder", action="append", default=[],
                   help="another folder of trained models to look the model name up in (repeatable)")
    p.add_argument("--use", choices=("segmentation", "registration"), default=None,
                   help="segmentation head or warped planning contours (default: the model's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=2)
    p.set_defaults(run=_predict)
    t = sub.add_parser("train", help="train on a folder of planning/daily pairs")
    t.add_argument("--folder", required=True)
    t.add_argument("--output-dir", required=True)
    t.add_argument("--config", default="cpu_small", help="configuration name (paper_cross_stitch, cpu_small, ...)")
    t.add_argument("--iterations", type=int, default=None)
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--initial-model", default=None,
                   help="fine-tune this model (name or .safetensors path): start from its weights and configuration")
    t.add_argument("--model-folder", action="append", default=[],
                   help="another folder of trained models to look --initial-model up in (repeatable)")
    t.add_argument("--config-changes", default=None, metavar="JSON",
                   help='configuration fields to change, a JSON object, e.g. \'{"filters": [4, 6, 8], '
                        '"patch_size": 48}\'')
    t.set_defaults(run=_train)
    e = sub.add_parser("evaluate", help="DSC, MSD, HD per structure (+ Jacobian std and folding of a field)")
    e.add_argument("--result", required=True)
    e.add_argument("--reference", required=True)
    e.add_argument("--field", help="displacement field written by predict --field (RAS mm components)")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(run=_evaluate)
    return parser


def _user_errors(function):
    """Run a sub-command; a RuntimeError (e.g. weights that do not fit the network) is a one-line user error too,
    as this command always reported it (exit status 2)."""
    def run(args) -> int:
        try:
            return function(args)
        except RuntimeError as error:
            raise ValueError(str(error).strip() or type(error).__name__) from None
    return run


@_user_errors
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
    with progress_bar("recontour") as update:
        update(0.0, "Loading the model")
        loaded, config = load_recontour_model(args.model, device=args.device, report=emit_log,
                                              extra_folders=args.model_folder)
        result = recontour(loaded.network, config, planning, np.asarray(labels.array).astype(np.uint8), daily,
                           output=args.use, device=loaded.device, batch_size=args.batch_size, progress=update)
    write_volume(daily.with_array(result.labels.astype(np.uint8)), args.output)
    if args.field:
        write_volume(result.grid.with_array(result.displacement_ras.astype(np.float32)), args.field)
    emit_result(output=str(args.output), field=str(args.field) if args.field else None, use=str(result.output),
                timings={k: float(v) for k, v in result.timings.items()})
    if not json_progress():
        print(f"wrote {args.output} ({result.output} output; network {result.timings.get('network_s', 0):.2f} s)")
    return 0


def _config_changes(text: Optional[str]) -> Dict[str, Any]:
    """``--config-changes`` as keyword arguments of the configuration (JSON lists become tuples)."""
    if not text:
        return {}
    try:
        changes = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--config-changes is not valid JSON ({error})") from None
    if not isinstance(changes, dict):
        raise ValueError("--config-changes must be a JSON object of configuration fields")
    return {key: tuple(value) if isinstance(value, list) else value for key, value in changes.items()}


class _LogLines(logging.Handler):
    """The trainer's log messages (``mednets.training`` logger) as log lines for the panel (:func:`emit_log`)."""

    def emit(self, record: logging.LogRecord) -> None:
        emit_log(record.getMessage())


@_user_errors
def _train(args) -> int:
    import dataclasses

    from .configs import RecontourConfig
    from .training import train_from_folder

    changes = _config_changes(args.config_changes)
    known = {f.name for f in dataclasses.fields(RecontourConfig)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown configuration field(s) in --config-changes: {', '.join(unknown)}")
    start = {}
    if args.initial_model:
        from .models import load_recontour_model

        loaded, config = load_recontour_model(args.initial_model, device="cpu", report=emit_log,
                                              extra_folders=args.model_folder)
        start = {"initial_network": loaded.network, "initial_config": config}
    logger = logging.getLogger("mednets.training")
    handler, level = _LogLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with progress_bar("train") as update:
            path = train_from_folder(args.folder, args.output_dir, configName=args.config,
                                     iterations=args.iterations, device=args.device, progress=update,
                                     seed=args.seed, **start, **changes)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    emit_result(checkpoint=str(path), output_dir=str(args.output_dir))
    if not json_progress():
        print(f"wrote {path}")
    return 0


@_user_errors
def _evaluate(args) -> int:
    from mednets.io import read_volume

    from .evaluation import evaluation_rows, field_along_ijk

    result, reference = read_volume(args.result), read_volume(args.reference)
    if result.shape != reference.shape:
        raise ValueError(f"result {result.shape} and reference {reference.shape} differ in shape")
    dvf = None
    spacing = result.spacing
    if args.field:
        field = read_volume(args.field)
        dvf = field_along_ijk(field.array, field.directions_ras)
        field_spacing = field.spacing
    with progress_bar("evaluate") as update:
        rows = evaluation_rows(np.rint(np.asarray(result.array)).astype(np.int64),
                               np.rint(np.asarray(reference.array)).astype(np.int64), spacing, progress=update)
    structures = [{"name": r["structure"], "dice": r["dice"], "mean_surface_distance": r["msd_mm"],
                   "hausdorff_distance": r["hd_mm"]} for r in rows]
    out: Dict[str, Any] = {"structures": structures}
    if dvf is not None:
        from mednets.metrics import deformation_metrics

        d = deformation_metrics(dvf, field_spacing)
        out["deformation"] = d
        rows.append({"structure": "deformation", "dice": float("nan"), "msd_mm": float("nan"), "hd_mm": float("nan"),
                     "jacobian_std": float(d["jacobian_std"]), "folding_fraction": float(d["folding_fraction"])})
    if json_progress():
        emit_result(rows=rows)  # the Logic's metric rows (NaN as JSON NaN), one per structure + the deformation
    elif args.json:
        print(json.dumps(out, default=float))
    else:
        for row in structures:
            print(f"{row['name']:<18} DSC {row['dice']:.3f}  MSD {row['mean_surface_distance']:.2f} mm  "
                  f"HD {row['hausdorff_distance']:.2f} mm")
        if "deformation" in out:
            d = out["deformation"]
            print(f"Jacobian std {d['jacobian_std']:.4f}  folding {100 * d['folding_fraction']:.3f} %")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run_command(build_parser(), argv)
