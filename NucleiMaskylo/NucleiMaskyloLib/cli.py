"""Command line of NucleiMaskylo: ``python -m NucleiMaskyloLib predict|train|evaluate ...`` (run from the NucleiMaskylo
folder or with it on PYTHONPATH). Works without Slicer.

* predict: an H&E image (PNG/JPEG/TIFF; large TIFFs are read tile by tile) -> instance label map (TIFF), COCO-JSON
  results and a per-nucleus CSV table.
* evaluate: a result label map (or COCO-JSON results with scores) against a reference label map (or COCO-JSON) ->
  precision, recall, mAP@50, mAP@50-95, Dice, IoU, AJI, PQ (printed, optionally as CSV).
* train: Mask R-CNN on a folder in the NuInsSeg layout (or a COCO-JSON file with its images).

The NucleiMaskylo panel in 3D Slicer runs these same commands as a child process (``PythonSlicer -m NucleiMaskyloLib
--progress json predict|evaluate|train ...``): inputs are NRRD volumes with their geometry (written by the panel with
:func:`mednets.io.write_volume`) and JSON files, progress comes back as JSON lines (:func:`mednets.cli.progress_bar`),
the outputs' paths and numbers as ``{"type": "result"}`` lines (:func:`mednets.cli.emit_result`). One code path from
the GUI to batch.

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

#: Volume files (read and written with their geometry by mednets.io): what the Slicer panel exchanges with the child.
VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")

EXAMPLES = """examples:
  python -m NucleiMaskyloLib predict --input tile.png --output tile_nuclei.tif --json tile_nuclei.json --table tile_nuclei.csv
  python -m NucleiMaskyloLib predict --input tile.nrrd --output tile_nuclei.nrrd --table tile_nuclei.json
  python -m NucleiMaskyloLib predict --input slide.tif --output slide_nuclei.tif --model my.safetensors --device cuda
  python -m NucleiMaskyloLib evaluate --prediction tile_nuclei.tif --reference truth.tif --csv metrics.csv
  python -m NucleiMaskyloLib train --data NuInsSeg --output run1 --iterations 2000 --architecture mask_rcnn
"""


def _is_volume_file(path: Path) -> bool:
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def _read_json_option(text: Optional[str], what: str) -> Dict:
    """A JSON object given on the command line (or ``@file.json``)."""
    if not text:
        return {}
    source = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        value = json.loads(source)
    except ValueError as error:
        raise ValueError(f"{what} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, e.g. '{{\"micro_batch\": 2}}'")
    return value


def _read_instances(path: Path):
    """(label map, scores or None) from an instance label map file or COCO-JSON (first image)."""
    from .datasets import load_coco, read_label_map

    if path.suffix.lower() == ".json":
        entry = load_coco(path)[0]
        return entry["labels"], entry.get("scores")
    if path.suffix.lower() in (".tif", ".tiff"):
        return read_label_map(path), None
    if _is_volume_file(path):  # a single-slice label map with its geometry (what the Slicer panel writes)
        from mednets.io import read_volume

        array = np.asarray(read_volume(path).array)
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 2:
            raise ValueError(f"'{path.name}' is not a single-slice instance label map (shape {array.shape})")
        return np.rint(array).astype(np.int32), None
    from skimage.io import imread

    array = np.asarray(imread(str(path)))
    if array.ndim != 2:
        raise ValueError(f"'{path.name}' is not an instance label map (shape {array.shape})")
    return array.astype(np.int32), None


def cmd_predict(args: argparse.Namespace) -> int:
    from mednets.cli import emit_result, progress_bar

    from .datasets import write_coco, write_label_map
    from .models import find_model, load_nuclei_model
    from .pipeline import NucleiPipeline, PipelineSettings, check_rgb_image, labels_and_table
    from .tiling import RegionReader

    started = time.monotonic()
    source = Path(args.input)
    if not source.is_file():
        raise ValueError(f"input image '{source}' does not exist")
    if source.stat().st_size == 0:
        raise ValueError(f"input image '{source}' is empty (0 bytes)")
    image = str(source)
    grid = None  # the input's geometry when it is a volume file (the output label map is written on it)
    if _is_volume_file(source):
        from mednets.io import read_volume

        grid = read_volume(source)
        array = np.asarray(grid.array)
        if array.ndim == 4 and array.shape[0] != 1:
            raise ValueError(f"'{source.name}' has {array.shape[0]} slices; NucleiMaskylo needs a single-slice (2D) "
                             "H&E image")
        image = check_rgb_image(array)
    elif source.suffix.lower() not in (".tif", ".tiff"):
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
    yolo_models = []
    if args.yolo_weights:
        from . import yolo

        yolo.ensure_ultralytics()  # no consent dialog here: the panel asks on Slicer's GUI thread before starting
        yolo_models = [yolo.build_yolo(weights=w) for w in args.yolo_weights]
    folders = list(args.model_folders or [])
    with progress_bar("tiles") as progress:
        progress(0.0, "Loading the model...")
        model = find_model(args.model, folders)
        loaded, stored = load_nuclei_model(model, device=args.device, report=lambda m: print(m, file=sys.stderr),
                                           extra_folders=folders)
        fields = set(PipelineSettings.__dataclass_fields__)
        values = {k: v for k, v in stored.items() if k in fields}
        for key in ("tile_size", "overlap", "score_threshold", "stain_method", "fusion", "fusion_iou", "batch_size"):
            if getattr(args, key) is not None:
                values[key] = getattr(args, key)
        pipeline = NucleiPipeline(loaded.network, PipelineSettings(**values), yolo_models=yolo_models,
                                  device=loaded.device)
        stitched = pipeline.predict(image, progress=progress)
    labels, table = labels_and_table(stitched, args.pixel_size_um)
    output = Path(args.output)
    if _is_volume_file(output):
        from mednets.image import Volume
        from mednets.io import write_volume

        planes = labels.astype(np.int32)[None]
        write_volume(grid.with_array(planes) if grid is not None else Volume(planes), output)
    else:
        write_label_map(output, labels)
    if args.json:
        write_coco(args.json, [labels], [source.name], [table["confidence"]])
    if args.table:
        if str(args.table).lower().endswith(".json"):  # the columns with their types (the panel's table node)
            from mednets.cli import write_text

            write_text(args.table, json.dumps({k: [v.item() if hasattr(v, "item") else v for v in column]
                                               for k, column in table.items()}))
        else:
            with open(args.table, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(list(table))
                writer.writerows(zip(*table.values()))
    count = len(table["label"])
    emit_result(output=str(output), table=str(args.table) if args.table else None, count=count, model=model.name,
                seconds=time.monotonic() - started)
    print(f"{count} nuclei -> {args.output} ({time.monotonic() - started:.1f} s)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Instance metrics. Run in the panel's child process too: mAP over ten IoU thresholds, AJI and PQ over thousands
    of nuclei take seconds on a large tile (0.6 s for 655 nuclei on 768x768 pixels), too long for Slicer's GUI thread."""
    from mednets.cli import emit_result, progress_bar
    from mednets.metrics.coco_instances import instance_segmentation_metrics

    with progress_bar("evaluation") as progress:
        progress(0.0, "Reading the label maps...")
        prediction, scores = _read_instances(Path(args.prediction))
        reference, _ = _read_instances(Path(args.reference))
        if prediction.shape != reference.shape:
            raise ValueError(f"prediction {prediction.shape} and reference {reference.shape} differ in size")
        count = len(np.unique(prediction)) - 1
        if args.scores:  # confidences in label order (JSON list), e.g. from the panel's nucleus table
            scores = np.asarray(json.loads(Path(args.scores).read_text()), dtype=float)
        if scores is not None and len(scores) != count:
            scores = None
        progress(0.1, "Matching the nuclei...")
        metrics = instance_segmentation_metrics(reference, prediction, scores=scores, max_dets=max(100, count))
        progress(1.0, "Evaluation done")
    names = ["precision", "recall", "mAP50", "mAP50_95", "dice", "iou", "aji", "pq", "sq", "dq", "f1",
             "n_reference", "n_predicted"]
    for name in names:
        print(f"{name:12s} {float(metrics[name]):.4f}")
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["metric", "value"])
            writer.writerows((name, float(metrics[name])) for name in names)
    emit_result(metrics={name: float(metrics[name]) for name in names}, csv=args.csv)
    return 0


TRAINING_LOG_LINES = 20  # log lines a training run writes (one every iterations / 20 iterations)


def cmd_train(args: argparse.Namespace) -> int:
    """Train a new network, or fine-tune ``--model`` (the same steps as ``NucleiMaskyloLogic.train``)."""
    from mednets.cli import emit_log, emit_result, progress_bar

    with progress_bar("training") as progress:
        progress(0.0, "Reading the training tiles...")
        import torch
        from mednets.device import choose_device

        from . import build_model
        from .datasets import load_coco, load_nuinsseg_case, scan_nuinsseg
        from .models import load_nuclei_model
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
        settings.update(_read_json_option(args.recipe, "--recipe"))
        for key in ("iterations", "lr", "batch_size", "micro_batch", "tile_size"):
            if getattr(args, key) is not None:
                settings[key] = getattr(args, key)
        try:
            recipe = TrainingRecipe.from_dict(settings)
        except TypeError as error:
            raise ValueError(f"--recipe: {error}") from None
        architecture, overrides = args.architecture, {}
        if args.model:  # fine-tune: start from these weights, keep their architecture
            loaded, _stored = load_nuclei_model(args.model, device=args.device, extra_folders=args.model_folders or [],
                                                report=emit_log)
            model, architecture = loaded.network, loaded.metadata.architecture
            overrides = dict(loaded.metadata.architecture_config)
        else:
            torch.manual_seed(args.seed)
            model = build_model(args.architecture).to(choose_device(args.device))
        every = max(1, recipe.iterations // TRAINING_LOG_LINES)

        def log_iteration(iteration: int, values: Dict[str, float]) -> None:
            if iteration % every == 0 or iteration == recipe.iterations:
                emit_log(f"iteration {iteration}/{recipe.iterations}: "
                         + ", ".join(f"{k} {float(v):.4f}" for k, v in values.items()
                                     if isinstance(v, (int, float))))

        history = train_mask_rcnn(model, training, recipe, validation, seed=args.seed,
                                  eval_every=max(1, recipe.iterations // 4) if validation else 0, progress=progress,
                                  on_iteration=log_iteration)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    path = output / "nucleimaskylo_trained.safetensors"
    save_nuclei_checkpoint(path, model, architecture, overrides,
                           pipeline={"tile_size": 512, "overlap": 64, "stain_method": args.stain_method},
                           training_data=f"{len(training)} tiles from {data}",
                           extra={"recipe": recipe.to_dict(),
                                  "history": {k: [float(x) for x in v] for k, v in history.items()}})
    (output / "history.json").write_text(json.dumps({k: [float(x) for x in v] for k, v in history.items()}))
    best = history.get("best_val_mAP50", [float("nan")])[0]
    emit_result(checkpoint=str(path), best_val_mAP50=float(best), iterations=recipe.iterations)
    print(f"wrote {path} (validation mAP@50 {best:.3f})")  # with --progress json: a log line for the panel
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
    predict.add_argument("--fusion", choices=("iou_voting", "confidence_weighting", "wbf"),
                         help="how YOLO and Mask R-CNN detections are fused (with --yolo-weights)")
    predict.add_argument("--fusion-iou", dest="fusion_iou", type=float)
    predict.add_argument("--batch-size", dest="batch_size", type=int, help="tiles per forward pass")
    predict.add_argument("--yolo-weights", dest="yolo_weights", action="append",
                         help="trained YOLO weights (.pt) for the optional YOLO branch (ultralytics, AGPL-3.0); repeat")
    predict.add_argument("--model-folder", dest="model_folders", action="append",
                         help="another folder of checkpoints where --model names are looked up (repeat)")
    predict.set_defaults(func=cmd_predict, run=cmd_predict)
    evaluate = sub.add_parser("evaluate", help="compare a result with a reference", epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_argument("--prediction", required=True, help="label map (.tif/.png) or COCO-JSON results")
    evaluate.add_argument("--reference", required=True, help="label map (.tif/.png) or COCO-JSON")
    evaluate.add_argument("--csv", help="write the metrics as CSV")
    evaluate.add_argument("--scores", help="JSON list of the prediction's confidences in label order (for mAP)")
    evaluate.set_defaults(func=cmd_evaluate, run=cmd_evaluate)
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
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    train.add_argument("--model", help="fine-tune these weights (model name or .safetensors path) instead of a new "
                                       "network")
    train.add_argument("--model-folder", dest="model_folders", action="append",
                       help="another folder of checkpoints where --model names are looked up (repeat)")
    train.add_argument("--recipe", help="training recipe changes as a JSON object (or @file.json), e.g. "
                                        "'{\"micro_batch\": 2, \"tile_size\": 64}'")
    train.set_defaults(func=cmd_train, run=cmd_train)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit status 0, 2 for bad input (one line on stderr; a JSON error line with ``--progress json``), 130 when
    interrupted (see :func:`mednets.cli.run_command`)."""
    from mednets.cli import run_command

    return run_command(build_parser(), argv)
