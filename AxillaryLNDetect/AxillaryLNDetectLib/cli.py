"""Command line of AxillaryLNDetect: ``python -m AxillaryLNDetectLib predict|train|evaluate ...`` (run from the
AxillaryLNDetect folder or with it on PYTHONPATH). Works without Slicer.

* predict: CT file -> detections as JSON (RAS centres, confidence, short axis, volume), optional label map of the
  detected blobs (1) and the VOI (2).
* evaluate: detections JSON + reference annotations JSON (``{"centres_ras": [...], "diameters_mm": [...]}``, the
  training-folder format) on the CT's grid -> FROC table (CSV) and plot (PNG).
* train: a training folder (``<name>_image.nrrd`` + ``<name>_nodes.json``) -> a detector folder (voi/, ln/).

Exit status: 0 on success, 2 on bad input (one-line reason on stderr), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

EXAMPLES = """examples:
  python -m AxillaryLNDetectLib predict --input ct.nrrd --output nodes.json --labels detections.nrrd
  python -m AxillaryLNDetectLib predict --input ct.nii.gz --output nodes.json --model run1 --device cuda
  python -m AxillaryLNDetectLib evaluate --input ct.nrrd --detections nodes.json --reference truth_nodes.json \\
      --csv froc.csv --plot froc.png
  python -m AxillaryLNDetectLib train --data training_folder --output run1 --iterations 2000 --config paper
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


def cmd_predict(args: argparse.Namespace) -> int:
    from mednets.io import read_volume, write_volume

    from .models import load_detector
    from .pipeline import detect_lymph_nodes

    started = time.monotonic()
    volume = read_volume(args.input)
    detector = load_detector(args.model, device=args.device, report=lambda m: print(m, file=sys.stderr))
    progress = _tqdm_progress("detecting")
    try:
        result = detect_lymph_nodes(volume, detector.voi.network, detector.ln.network, detector.config,
                                    device=detector.ln.device, batch_size=args.batch_size,
                                    voi_threshold=args.voi_threshold, ln_threshold=args.ln_threshold,
                                    progress=progress)
    finally:
        progress.close()
    payload = {"input": str(args.input), "detector": detector.name, "seconds": round(time.monotonic() - started, 2),
               "voi_fraction": result.voi_fraction,
               "lymph_nodes": [{"centre_ras": list(c.centre_ras), "confidence": c.confidence,
                                "short_axis_mm": c.short_axis_mm, "volume_mm3": c.volume_mm3}
                               for c in result.candidates]}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(payload, indent=1))
    if args.labels:
        labels = np.where(result.candidate_labels > 0, 1, np.where(result.voi_mask, 2, 0)).astype(np.uint8)
        write_volume(volume.with_array(labels), args.labels)
    print(f"{len(result.candidates)} lymph-node candidate(s), VOI {100 * result.voi_fraction:.1f} % of the volume, "
          f"{payload['seconds']} s -> {args.output}")
    return 0


def _read_json(path: str, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the {what} '{path}': {error}") from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mednets.io import read_volume
    from mednets.metrics.froc import Candidate, PAPER_SIZE_GROUPS, evaluate_detections, match_detections, plot_froc
    from mednets.sparse_annotations import sphere_instances

    from .pipeline import OPERATING_POINTS, metrics_rows, reference_instances

    volume = read_volume(args.input)
    detections = _read_json(args.detections, "detections")
    reference = _read_json(args.reference, "reference annotations")
    nodes = detections.get("lymph_nodes", [])
    centres = volume.ras_to_kji(np.array([n["centre_ras"] for n in nodes], dtype=float).reshape(-1, 3))
    diameters = [float(n.get("short_axis_mm", 10.0)) for n in nodes]
    labels = sphere_instances(volume.shape, centres, diameters, volume.spacing)
    candidates = [Candidate(i + 1, float(n["confidence"]), tuple(c), int((labels == i + 1).sum()), d)
                  for i, (n, c, d) in enumerate(zip(nodes, centres, diameters))]
    ref_centres = np.asarray(reference.get("centres_ras", []), dtype=float).reshape(-1, 3)
    ref_sizes = [float(d) for d in reference.get("diameters_mm", [])]
    if not len(ref_centres) or len(ref_sizes) != len(ref_centres):
        raise ValueError("the reference needs 'centres_ras' and as many 'diameters_mm'")
    ref_labels = reference_instances(volume, ref_centres, ref_sizes)
    match = match_detections(labels, candidates, ref_labels, args.criterion)
    metrics = evaluate_detections([match], [ref_sizes], PAPER_SIZE_GROUPS, OPERATING_POINTS)
    rows = metrics_rows(metrics)
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if args.plot:
        plot_froc({g: (v["fps"], v["sensitivity"]) for g, v in metrics.items() if v["targets"]}, args.plot,
                  operating_points=(6.7,))
    for row in rows:
        print(", ".join(f"{key} {value}" for key, value in row.items()))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .cases import read_annotated_folder
    from .configs import get_config
    from .training import train_stage

    items = read_annotated_folder(args.data)
    if len(items) < 2:
        raise ValueError(f"the training folder needs at least 2 annotated cases, it has {len(items)}")
    count = max(1, int(round(len(items) * args.validation_fraction)))
    config = get_config(args.config)
    output = Path(args.output)
    voi_result, voi = train_stage("voi", items[count:], items[:count], config, str(output / "voi"), args.iterations,
                                  args.seed, device=args.device, progress=_tqdm_progress("VOI stage"))
    ln_result, _ = train_stage("ln", items[count:], items[:count], config, str(output / "ln"), args.iterations,
                               args.seed, initial_network=voi if args.fine_tune else None, device=args.device,
                               progress=_tqdm_progress("lymph-node stage"))
    print(f"VOI best Jaccard {voi_result.best_metric}, LN best Jaccard {ln_result.best_metric} -> {output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m AxillaryLNDetectLib",
                                     description="Two-stage 3D U-Net detection of axillary lymph nodes in CT "
                                                 "(Altun et al.). Research use only, not for clinical use.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="detect lymph nodes in a CT file", epilog=EXAMPLES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("--input", required=True, help="CT volume (nrrd, nii.gz, mha, DICOM folder) in HU")
    predict.add_argument("--output", required=True, help="detections (.json)")
    predict.add_argument("--labels", help="optional label map: 1 detections, 2 VOI")
    predict.add_argument("--model", default=None, help="detector name, training folder or -voi/-ln file "
                                                       "(default: bundled demo)")
    predict.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    predict.add_argument("--batch-size", type=int, default=2)
    predict.add_argument("--voi-threshold", type=float, default=None)
    predict.add_argument("--ln-threshold", type=float, default=None)
    predict.set_defaults(run=cmd_predict)
    evaluate = commands.add_parser("evaluate", help="FROC of detections against reference annotations")
    evaluate.add_argument("--input", required=True, help="the CT the detections belong to (its grid)")
    evaluate.add_argument("--detections", required=True, help="detections .json from predict")
    evaluate.add_argument("--reference", required=True, help="reference .json (centres_ras, diameters_mm)")
    evaluate.add_argument("--criterion", default="overlap", choices=("overlap", "centre"))
    evaluate.add_argument("--csv", help="FROC table (.csv)")
    evaluate.add_argument("--plot", help="FROC plot (.png)")
    evaluate.set_defaults(run=cmd_evaluate)
    train = commands.add_parser("train", help="train both stages on an annotated training folder")
    train.add_argument("--data", required=True, help="folder of <name>_image.nrrd + <name>_nodes.json")
    train.add_argument("--output", required=True, help="detector folder to write (voi/, ln/)")
    train.add_argument("--config", default="paper", choices=("paper", "cpu_small", "phantom_demo"))
    train.add_argument("--iterations", type=int, default=None, help="per stage (default: the configuration's)")
    train.add_argument("--fine-tune", action="store_true", help="start stage 2 from the VOI network (dropout 0.5)")
    train.add_argument("--validation-fraction", type=float, default=0.2)
    train.add_argument("--device", default="auto")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=cmd_train)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return 2
