"""Command line of AneurysmSeg: ``python -m AneurysmSegLib predict|train|evaluate ...`` (run from the AneurysmSeg
folder or with it on PYTHONPATH). Works without Slicer; ``.seg.nrrd`` outputs need the ``slicer-core`` package, label
maps (``.nrrd``, ``.nii.gz``, ``.mha``) do not.

Exit status: 0 on success, 2 on bad input (one-line reason on stderr), 130 when interrupted.
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


def _tqdm_progress(description: str):
    from tqdm import tqdm

    bar = tqdm(total=100, desc=description, unit="%", leave=True, file=sys.stderr,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def progress(fraction: float, message: str = "") -> None:
        bar.n = int(round(100 * max(0.0, min(1.0, fraction))))
        bar.set_postfix_str(message[:60], refresh=False)
        bar.refresh()

    progress.close = bar.close  # type: ignore[attr-defined]
    return progress


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
    from mednets.io import read_volume, write_volume

    from .configs import ANEURYSM
    from .models import load_aneurysmseg_model
    from .pipeline import TABLE_COLUMNS, segment_volume

    started = time.monotonic()
    volume = read_volume(args.input)
    loaded, config = load_aneurysmseg_model(args.model, device=args.device,
                                            report=lambda m: print(m, file=sys.stderr))
    if args.overlap is not None:
        from .configs import scaled_overlap

        config = config.replace(window_overlap=scaled_overlap(args.overlap, config))
    progress = _tqdm_progress("segmenting")
    try:
        result = segment_volume(volume, loaded.network, config, device=loaded.device, threshold=args.threshold,
                                batch_size=args.batch_size, progress=progress)
    finally:
        progress.close()
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
    print(f"wrote {output} in {time.monotonic() - started:.1f} s on {loaded.device}: "
          f"{len(result.targets)} aneurysm candidate(s)")
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
    metrics = evaluate_case(probability, reference, volume.spacing, labels=prediction)
    rows = [{"level": level, "metric": key, "value": float(value)}
            for level in ("voxel", "target", "case") for key, value in metrics[level].items()]
    text = _csv(rows, ["level", "metric", "value"])
    if args.csv:
        _write_text(args.csv, text)
    sys.stdout.write(text)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mednets.training import training_folder_cases

    from .configs import get_config
    from .training import TrainingRequest, train

    cases = list(training_folder_cases(args.data))
    if len(cases) < 2:
        raise ValueError(f"the training folder '{args.data}' needs at least 2 labelled cases, it has {len(cases)}")
    validation = max(1, int(round(len(cases) * args.validation_fraction)))
    config = get_config(args.config)
    initial = args.initial_weights
    if args.official_weights:
        from .models import import_official_checkpoint

        initial = str(import_official_checkpoint(args.official_weights,
                                                 Path(args.output) / "official-converted.safetensors"))
    request = TrainingRequest(config=config, train_cases=cases[:-validation], validation_cases=cases[-validation:],
                              output_dir=args.output, iterations=args.iterations, device=args.device, seed=args.seed,
                              resume=args.resume, initial_weights=initial,
                              training_data=f"{len(cases)} cases from {args.data}")
    progress = _tqdm_progress("training")
    try:
        result = train(request, progress=progress, log=lambda m: print(m, file=sys.stderr))
    finally:
        progress.close()
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
    train.add_argument("--initial-weights", help="mednets checkpoint to fine-tune from")
    train.add_argument("--official-weights", help="checkpoint of the official GLIA-Net code to fine-tune from")
    train.add_argument("--device", default="auto")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    train.set_defaults(run=cmd_train)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError, ImportError) as error:
        print(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
