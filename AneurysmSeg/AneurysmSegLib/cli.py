"""Command line of AneurysmSeg: ``python -m AneurysmSegLib predict|train|evaluate ...`` (run from the AneurysmSeg
folder or with it on PYTHONPATH). Works without Slicer; ``.seg.nrrd`` outputs need the ``slicer-core`` package, label
maps (``.nrrd``, ``.nii.gz``, ``.mha``) do not.

Exit status: 0 on success, 2 on bad input (one-line reason on stderr), 130 when interrupted.

The Slicer panel runs this same command line as a child process (``PythonSlicer -m AneurysmSegLib --progress json
...``, see :mod:`mednets.jobs`): with ``--progress json`` progress, log lines and the results the panel loads (output
paths, the target table, metrics, the best checkpoint) are JSON lines on stdout (:func:`mednets.cli.emit_result`).
Nothing here imports slicer or qt.
"""

from __future__ import annotations

import argparse
import csv
import io as text_io
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

EXAMPLES = """examples:
  python -m AneurysmSegLib predict --input cta.nrrd --output aneurysms.seg.nrrd --risk-map risk.nrrd --table targets.csv
  python -m AneurysmSegLib predict --input cta.nii.gz --output labels.nii.gz --model best.safetensors --overlap 48
  python -m AneurysmSegLib evaluate --prediction labels.nii.gz --reference truth.nii.gz --risk-map risk.nrrd
  python -m AneurysmSegLib train --data training_folder --output run1 --config paper --iterations 200000
  python -m AneurysmSegLib train --data training_folder --output run1 --official-weights checkpoint-0245700.pt
"""


def _json_value(text: Optional[str], option: str) -> Dict[str, Any]:
    """A JSON object given on the command line (``--config-changes``, ``--model-overrides``)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{option} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object")
    return value


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the configurations use (window sizes, widths)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _csv(rows: List[Dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = text_io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([f"{row[c]:.6g}" if isinstance(row[c], float) else row[c] for c in columns])
    return buffer.getvalue()


def _write_text(path: str, text: str) -> None:
    from mednets.fileio import atomic_write

    with atomic_write(path, "w", newline="") as handle:
        handle.write(text)


def _read_mask(path: Path):
    from mednets.io import read_volume

    if path.name.lower().endswith(".seg.nrrd"):
        from mednets import mrml

        labels, volume = mrml.read_segmentation_file(path, ["aneurysm"], allow_missing=True)
        return np.asarray(labels) > 0, volume
    volume = read_volume(path)
    return np.asarray(volume.array) > 0, volume


def cmd_predict(args: argparse.Namespace) -> int:
    import warnings

    from mednets.cli import emit_log, emit_result, progress_bar
    from mednets.io import read_volume, write_volume

    from .configs import ANEURYSM
    from .models import load_aneurysmseg_model
    from .pipeline import TABLE_COLUMNS, segment_volume

    started = time.monotonic()
    volume = read_volume(args.input)
    messages: List[str] = []

    def report(message: str) -> None:  # device fallbacks and the like: shown in the panel's status line
        messages.append(str(message))
        emit_log(message)

    loaded, config = load_aneurysmseg_model(args.model, device=args.device, report=report,
                                            extra_folders=args.model_folder or ())
    if args.overlap is not None:
        from .configs import scaled_overlap

        config = config.replace(window_overlap=scaled_overlap(args.overlap, config))
    with progress_bar("segmenting") as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = segment_volume(volume, loaded.network, config, device=loaded.device, threshold=args.threshold,
                                batch_size=args.batch_size, progress=progress, report_fallback=report)
    for warning in caught:
        report(str(warning.message))
    output = Path(args.output)
    if output.name.lower().endswith(".seg.nrrd"):
        from mednets import mrml
        from mednets.terminology import segment_specs

        mrml.write_segmentation_file(result.labels, volume, output, segment_specs([ANEURYSM]))
    else:
        write_volume(volume.with_array(result.labels), output)
    if args.risk_map:
        write_volume(volume.with_array(result.probability), args.risk_map)
    if args.table:
        _write_text(args.table, _csv(result.targets, TABLE_COLUMNS))
    seconds = time.monotonic() - started
    emit_result(output=str(output), risk_map=args.risk_map, table=args.table, targets=result.targets,
                columns=list(TABLE_COLUMNS), threshold=float(result.threshold), device=str(loaded.device),
                messages=messages, seconds=seconds)
    print(f"wrote {output} in {seconds:.1f} s on {loaded.device}: "
          f"{len(result.targets)} aneurysm candidate(s)", file=sys.stderr if args.progress == "json" else sys.stdout)
    if args.progress != "json":
        for row in result.targets:
            print(f"  #{row['target']}: {row['volume_mm3']:.1f} mm3, max diameter {row['max_diameter_mm']:.1f} mm, "
                  f"mean probability {row['mean_probability']:.2f}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mednets.io import read_volume

    from .pipeline import evaluate_case

    prediction, volume = _read_mask(Path(args.prediction))
    reference, _ = _read_mask(Path(args.reference))
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction grid {prediction.shape} differs from reference grid {reference.shape}; "
                         "resample one onto the other first")
    probability = prediction.astype(np.float32)
    if args.risk_map:
        probability = np.asarray(read_volume(args.risk_map).array, dtype=np.float32)
        if probability.shape != prediction.shape:
            raise ValueError(f"the risk map grid {probability.shape} differs from the prediction's")
    from mednets.cli import emit_result

    metrics = evaluate_case(probability, reference, volume.spacing, labels=prediction)
    rows = [{"level": level, "metric": key, "value": float(value)}
            for level in ("voxel", "target", "case") for key, value in metrics[level].items()]
    text = _csv(rows, ["level", "metric", "value"])
    if args.csv:
        _write_text(args.csv, text)
    if args.progress == "json":  # the panel reads the nested metrics (stdout carries JSON lines only)
        emit_result(metrics={level: {k: float(v) for k, v in metrics[level].items()}
                             for level in ("voxel", "target", "case")}, csv=args.csv)
    else:
        sys.stdout.write(text)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mednets.cli import emit_log, emit_result, progress_bar
    from mednets.training import training_folder_cases

    from .configs import get_config
    from .training import TrainingRequest, train

    cases = list(training_folder_cases(args.data))
    if len(cases) < 2:
        raise ValueError(f"the training folder '{args.data}' needs at least 2 labelled cases (one to train, one to "
                         f"validate); it has {len(cases)}")
    validation = max(1, int(round(len(cases) * args.validation_fraction)))
    config = get_config(args.config)
    changes = _tuples(_json_value(args.config_changes, "--config-changes"))
    if changes:
        try:
            config = config.replace(**changes)
        except TypeError as error:
            raise ValueError(f"--config-changes: {error}") from None
    initial = args.initial_weights
    if initial and not Path(initial).is_file():  # a model name (as the panel lists it)
        from mednets.sources import resolve

        from .models import find_model

        initial = str(resolve(find_model(initial, args.model_folder or ())))
    if args.official_weights:
        from .models import import_official_checkpoint

        initial = str(import_official_checkpoint(args.official_weights,
                                                 Path(args.output) / "official-converted.safetensors"))
    if args.validation_split == "first":  # the Logic's (and panel's) split: the first cases validate
        train_cases, validation_cases = cases[validation:], cases[:validation]
    else:
        train_cases, validation_cases = cases[:-validation], cases[-validation:]
    request = TrainingRequest(config=config, train_cases=train_cases, validation_cases=validation_cases,
                              output_dir=args.output, iterations=args.iterations, validate_every=args.validate_every,
                              model_overrides=_tuples(_json_value(args.model_overrides, "--model-overrides")),
                              device=args.device, seed=args.seed, resume=args.resume, initial_weights=initial,
                              training_data=f"{len(cases)} cases from {args.data}")
    with progress_bar("training") as progress:
        result = train(request, progress=progress, log=emit_log)
    best = result.best_checkpoint or result.last_checkpoint
    emit_result(best_checkpoint=str(result.best_checkpoint) if result.best_checkpoint else None,
                last_checkpoint=str(result.last_checkpoint) if result.last_checkpoint else None,
                checkpoint=str(best) if best else None, best_metric=result.best_metric,
                iterations=result.iterations, output=str(args.output))
    if args.progress != "json":
        print(json.dumps({"best_checkpoint": str(result.best_checkpoint), "best_target_f1": result.best_metric,
                          "iterations": result.iterations}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m AneurysmSegLib",
                                     description="Intracranial aneurysm segmentation on CTA with GLIA-Net "
                                                 "(Bo et al., Patterns 2021)",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="segment a CTA file", epilog=EXAMPLES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("--input", required=True, help="CTA in Hounsfield units (NRRD, NIfTI, MHA, ...)")
    predict.add_argument("--output", required=True, help="label map file, or .seg.nrrd for a named segment")
    predict.add_argument("--model", help="model name or .safetensors path (default: bundled demo weights)")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    predict.add_argument("--threshold", type=float, help="probability threshold (default 0.5)")
    predict.add_argument("--overlap", type=int, help="sliding-window overlap in voxels of a 96-voxel window (paper 64; "
                         "the same fraction for models with other window sizes)")
    predict.add_argument("--batch-size", type=int, default=4, help="windows per network call")
    predict.add_argument("--risk-map", help="also write the aneurysm probability volume")
    predict.add_argument("--table", help="also write the per-target table (CSV)")
    predict.add_argument("--model-folder", action="append", help="extra folder of checkpoints to find --model in "
                         "(training output folders; repeatable)")
    predict.set_defaults(run=cmd_predict)

    evaluate = commands.add_parser("evaluate", help="voxel-, target- and case-wise metrics of a result")
    evaluate.add_argument("--prediction", required=True, help="label map or .seg.nrrd")
    evaluate.add_argument("--reference", required=True, help="label map or .seg.nrrd on the same grid")
    evaluate.add_argument("--risk-map", help="probability volume of the prediction (for AUC and AP)")
    evaluate.add_argument("--csv", help="write the metrics to this CSV file")
    evaluate.set_defaults(run=cmd_evaluate)

    train = commands.add_parser("train", help="train or fine-tune on a folder of <case>_image/_label.nrrd pairs")
    train.add_argument("--data", required=True, help="training folder")
    train.add_argument("--output", required=True, help="output folder (checkpoints, history)")
    train.add_argument("--config", default="paper", help="paper, official or small")
    train.add_argument("--iterations", type=int, help="optimizer steps (default: the configuration's)")
    train.add_argument("--validation-fraction", type=float, default=0.2)
    train.add_argument("--initial-weights", help="mednets checkpoint (path or model name) to fine-tune from")
    train.add_argument("--official-weights", help="checkpoint of the official GLIA-Net code to fine-tune from")
    train.add_argument("--device", default="auto")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    train.add_argument("--validate-every", type=int, help="iterations between validations (default: a tenth)")
    train.add_argument("--validation-split", choices=("first", "last"), default="last",
                       help="which cases (in folder order) validate: the last (default) or the first (the panel's)")
    train.add_argument("--config-changes", help="JSON object of configuration fields to change, e.g. "
                       "'{\"patch_size\": [16, 16, 16]}'")
    train.add_argument("--model-overrides", help="JSON object of network arguments to change")
    train.add_argument("--model-folder", action="append", help="extra folder of checkpoints to find "
                       "--initial-weights (a model name) in; repeatable")
    train.set_defaults(run=cmd_train)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mednets.cli import run_command

    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
