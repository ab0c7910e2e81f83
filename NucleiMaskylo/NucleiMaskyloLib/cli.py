"""Command line of NucleiMaskylo: ``python -m NucleiMaskyloLib predict|train|evaluate ...`` (run from the NucleiMaskylo
folder or with it on PYTHONPATH). Works without Slicer.

* predict: an H&E image (PNG/JPEG/TIFF; large TIFFs are read tile by tile) -> instance label map (TIFF), COCO-JSON
  results and a per-nucleus CSV table.
* evaluate: a result label map (or COCO-JSON results with scores) against a reference label map (or COCO-JSON) ->
  precision, recall, mAP@50, mAP@50-95, Dice, IoU, AJI, PQ (printed, optionally as CSV).
* train: Mask R-CNN on a folder in the NuInsSeg layout (or a COCO-JSON file with its images).

Exit status: 0 on success, 2 on bad input (one-line reason on stderr), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

EXAMPLES = """examples:
  python -m NucleiMaskyloLib predict --input tile.png --output tile_nuclei.tif --json tile_nuclei.json --table tile_nuclei.csv
  python -m NucleiMaskyloLib predict --input slide.tif --output slide_nuclei.tif --model my.safetensors --device cuda
  python -m NucleiMaskyloLib evaluate --prediction tile_nuclei.tif --reference truth.tif --csv metrics.csv
  python -m NucleiMaskyloLib train --data NuInsSeg --output run1 --iterations 2000 --architecture mask_rcnn
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


def _read_instances(path: Path):
    """(label map, scores or None) from an instance label map file or COCO-JSON (first image)."""
    from .datasets import load_coco, read_label_map

    if path.suffix.lower() == ".json":
        entry = load_coco(path)[0]
        return entry["labels"], entry.get("scores")
    if path.suffix.lower() in (".tif", ".tiff"):
        return read_label_map(path), None
    from skimage.io import imread

    array = np.asarray(imread(str(path)))
    if array.ndim != 2:
        raise ValueError(f"'{path.name}' is not an instance label map (shape {array.shape})")
    return array.astype(np.int32), None


def cmd_predict(args: argparse.Namespace) -> int:
    from .datasets import label_map_to_coco, write_coco, write_label_map
    from .models import load_nuclei_model
    from .pipeline import NucleiPipeline, PipelineSettings, check_rgb_image, labels_and_table
    from .tiling import RegionReader

    started = time.monotonic()
    source = Path(args.input)
    if not source.is_file():
        raise ValueError(f"input image '{source}' does not exist")
    if source.stat().st_size == 0:
        raise ValueError(f"input image '{source}' is empty (0 bytes)")
    image = str(source)
    if source.suffix.lower() not in (".tif", ".tiff"):
        from skimage.io import imread

        image = check_rgb_image(np.asarray(imread(str(source))))
    else:
        import tifffile

        from .pipeline import thumbnail

        try:
            with tifffile.TiffFile(image) as tiff:
                series = tuple(tiff.series[0].shape) if tiff.series else ()
        except (tifffile.TiffFileError, ValueError) as error:
            raise ValueError(f"'{source.name}' is not a readable TIFF image ({error})") from None
        if len(series) > 3:  # a stack of slices (pyramid levels are not part of series[0].shape)
            raise ValueError(f"'{source.name}' is a stack of {series[0]} images (shape {series}); NucleiMaskylo needs "
                             "a single 2D RGB H&E image (one slice)")
        with RegionReader(image) as reader:
            if len(reader.shape) != 3 or reader.shape[2] not in (3, 4):
                raise ValueError(f"NucleiMaskylo needs an RGB H&E image; '{source.name}' has shape {reader.shape}")
            check_rgb_image(thumbnail(reader))  # constant, NaN, too small: refused before loading any model
    loaded, stored = load_nuclei_model(args.model, device=args.device, report=lambda m: print(m, file=sys.stderr))
    fields = set(PipelineSettings.__dataclass_fields__)
    values = {k: v for k, v in stored.items() if k in fields}
    for key in ("tile_size", "overlap", "score_threshold", "stain_method"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    pipeline = NucleiPipeline(loaded.network, PipelineSettings(**values), device=loaded.device)
    progress = _tqdm_progress("tiles")
    try:
        stitched = pipeline.predict(image, progress=progress)
    finally:
        progress.close()
    labels, table = labels_and_table(stitched, args.pixel_size_um)
    write_label_map(args.output, labels)
    if args.json:
        write_coco(args.json, [labels], [source.name], [table["confidence"]])
    if args.table:
        with open(args.table, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(list(table))
            writer.writerows(zip(*table.values()))
    print(f"{len(table['label'])} nuclei -> {args.output} ({time.monotonic() - started:.1f} s)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mednets.metrics.coco_instances import instance_segmentation_metrics

    prediction, scores = _read_instances(Path(args.prediction))
    reference, _ = _read_instances(Path(args.reference))
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction {prediction.shape} and reference {reference.shape} differ in size")
    count = len(np.unique(prediction)) - 1
    if scores is not None and len(scores) != count:
        scores = None
    metrics = instance_segmentation_metrics(reference, prediction, scores=scores, max_dets=max(100, count))
    names = ["precision", "recall", "mAP50", "mAP50_95", "dice", "iou", "aji", "pq", "sq", "dq", "f1",
             "n_reference", "n_predicted"]
    for name in names:
        print(f"{name:12s} {float(metrics[name]):.4f}")
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["metric", "value"])
            writer.writerows((name, float(metrics[name])) for name in names)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from . import build_model
    from .datasets import load_coco, load_nuinsseg_case, scan_nuinsseg
    from .training import DEMO_RECIPE, PAPER_RECIPE, TrainingRecipe, normalise_cases, save_nuclei_checkpoint, \
        train_mask_rcnn

    data = Path(args.data)
    if data.suffix.lower() == ".json":
        cases = [(entry["image"], entry["labels"]) for entry in load_coco(data, load_images=True)]
    else:
        cases = [load_nuinsseg_case(case)[:2] for case in scan_nuinsseg(data)]
    if args.stain_method != "none":
        cases = normalise_cases(cases, args.stain_method)
    validation = cases[::5] if len(cases) >= 5 else []
    training = [c for i, c in enumerate(cases) if i % 5 or len(cases) < 5]
    base = DEMO_RECIPE if args.architecture == "mask_rcnn_small" else PAPER_RECIPE
    settings = base.to_dict()
    for key in ("iterations", "lr", "batch_size", "micro_batch", "tile_size"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    recipe = TrainingRecipe.from_dict(settings)
    torch.manual_seed(args.seed)
    model = build_model(args.architecture)
    progress = _tqdm_progress("training")
    try:
        history = train_mask_rcnn(model, training, recipe, validation, seed=args.seed,
                                  eval_every=max(1, recipe.iterations // 4) if validation else 0, progress=progress)
    finally:
        progress.close()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    path = output / "nucleimaskylo_trained.safetensors"
    save_nuclei_checkpoint(path, model, args.architecture, {},
                           pipeline={"tile_size": 512, "overlap": 64, "stain_method": args.stain_method},
                           training_data=f"{len(training)} tiles from {data}",
                           extra={"recipe": recipe.to_dict(),
                                  "history": {k: [float(x) for x in v] for k, v in history.items()}})
    (output / "history.json").write_text(json.dumps({k: [float(x) for x in v] for k, v in history.items()}))
    best = history.get("best_val_mAP50", [float("nan")])[0]
    print(f"wrote {path} (validation mAP@50 {best:.3f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m NucleiMaskyloLib", epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="MASKYLO nuclei instance segmentation in H&E images")
    sub = parser.add_subparsers(dest="command", required=True)
    predict = sub.add_parser("predict", help="find the nuclei of an H&E image", epilog=EXAMPLES,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("--input", required=True, help="RGB H&E image (PNG, JPEG, TIFF; TIFFs are read by region)")
    predict.add_argument("--output", required=True, help="instance label map to write (.tif)")
    predict.add_argument("--json", help="also write COCO-JSON results with scores")
    predict.add_argument("--table", help="also write the per-nucleus table (.csv)")
    predict.add_argument("--model", default=None, help="model name or .safetensors path (default: demo weights)")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    predict.add_argument("--tile-size", dest="tile_size", type=int)
    predict.add_argument("--overlap", type=int)
    predict.add_argument("--score-threshold", dest="score_threshold", type=float)
    predict.add_argument("--stain", dest="stain_method", choices=("macenko", "reinhard", "none"))
    predict.add_argument("--pixel-size-um", dest="pixel_size_um", type=float, help="adds area in um^2 to the table")
    predict.set_defaults(func=cmd_predict)
    evaluate = sub.add_parser("evaluate", help="compare a result with a reference", epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_argument("--prediction", required=True, help="label map (.tif/.png) or COCO-JSON results")
    evaluate.add_argument("--reference", required=True, help="label map (.tif/.png) or COCO-JSON")
    evaluate.add_argument("--csv", help="write the metrics as CSV")
    evaluate.set_defaults(func=cmd_evaluate)
    train = sub.add_parser("train", help="train Mask R-CNN", epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--data", required=True, help="NuInsSeg-layout folder or COCO-JSON file")
    train.add_argument("--output", required=True, help="output folder for the checkpoint")
    train.add_argument("--architecture", default="mask_rcnn", choices=("mask_rcnn", "mask_rcnn_small"))
    train.add_argument("--iterations", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--batch-size", dest="batch_size", type=int, help="tiles per optimizer step (paper: 16)")
    train.add_argument("--micro-batch", dest="micro_batch", type=int, help="tiles per forward pass (accumulated)")
    train.add_argument("--tile-size", dest="tile_size", type=int)
    train.add_argument("--stain", dest="stain_method", default="macenko", choices=("macenko", "reinhard", "none"))
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return 2
