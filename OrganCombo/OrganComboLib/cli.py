"""Command line of OrganCombo: ``python -m OrganComboLib predict|train|evaluate ...`` (run from the OrganCombo folder
or with it on PYTHONPATH). Works without Slicer; ``.seg.nrrd`` files need the ``slicer-core`` package (``pip install
slicermednets[demo]``), label maps (``.nrrd``, ``.nii.gz``, ``.mha``) do not.

Exit status: 0 on success, 2 on bad input (one-line reason on stderr), 130 when interrupted.

The OrganCombo panel runs this same command as a child process (``PythonSlicer -m OrganComboLib --progress json ...``
in Slicer, see mednets.jobs.ProcessJob): with ``--progress json`` the commands write JSON progress/log lines and one
``result`` object (``mednets.cli.emit_result``) naming the files and numbers the panel loads into new nodes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from mednets.cli import (emit_log, emit_result, progress_bar, read_label_file, rows_to_csv, run_command,
                        write_label_file, write_text)
from mednets.terminology import segment_specs

EXAMPLES = """examples:
  python -m OrganComboLib predict --input pet.nrrd --output pet_organs.seg.nrrd
  python -m OrganComboLib predict --input pet.nii.gz --output labels.nii.gz --model path/to/best.safetensors --device cuda
  python -m OrganComboLib evaluate --prediction labels.nii.gz --reference truth.nii.gz --csv metrics.csv
  python -m OrganComboLib train --data training_folder --output run1 --config pet --epochs 20
"""


#: Columns of the evaluation CSV: (row key of evaluate_labels, column title).
METRIC_COLUMNS = (("name", "organ"), ("jaccard", "jaccard"), ("dice", "dice"), ("false_positive_rate", "fpr"),
                  ("false_negative_rate", "fnr"), ("hausdorff_distance", "hd_mm"))


def _json_option(text: Optional[str], option: str) -> Dict[str, Any]:
    """A JSON object given on the command line (``--config-changes '{"patch_size": [32, 32, 32]}'``)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{option} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object, not {type(value).__name__}")
    # JSON has no tuples: sizes such as patch_size are tuples in OrganComboConfig
    return {key: tuple(item) if isinstance(item, list) else item for key, item in value.items()}


def cmd_predict(args: argparse.Namespace) -> int:
    from mednets.io import read_volume

    from .inputs import check_input_volume
    from .models import load_organcombo_model
    from .pipeline import segment_volume

    started = time.monotonic()
    messages: List[str] = []  # device fallbacks and intensity warnings: shown in the panel's status

    def note(message: str) -> None:
        messages.append(str(message))
        emit_log(message)

    volume = read_volume(args.input)
    check_input_volume(volume)  # refuse unusable input before loading any model (as OrganComboLogic does)
    loaded, config = load_organcombo_model(args.model, device=args.device, report=note,
                                           extra_folders=args.model_folder or ())
    with progress_bar("segmenting") as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = segment_volume(volume, loaded.network, config, device=loaded.device, threshold=args.threshold,
                                batch_size=args.batch_size, progress=progress, report_fallback=note)
    for warning in caught:
        note(str(warning.message))
    output = write_label_file(result.labels, volume, args.output, segment_specs(config.classes))
    probabilities = None
    if args.probabilities:
        from mednets.io import write_volume

        probabilities = write_volume(volume.with_array(np.moveaxis(result.probabilities, 0, -1)), args.probabilities)
    seconds = time.monotonic() - started
    emit_result(output=output, probabilities=probabilities, config=config.to_dict(), volumes_ml=result.volumes_ml,
                messages=messages, device=str(loaded.device), seconds=seconds)
    print(f"wrote {output} in {seconds:.1f} s on {loaded.device}")
    for name, millilitres in result.volumes_ml.items():
        print(f"  {name}: {millilitres:.1f} ml")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .configs import get_config
    from .pipeline import evaluate_labels

    names = list(get_config(args.config).class_names)
    if args.organs:  # label k+1 = organs[k] (the panel's segment names, in its order)
        try:
            names = [str(name) for name in json.loads(args.organs)]
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"--organs must be a JSON list of names ({error})") from None
    prediction, volume = read_label_file(args.prediction, names)
    reference, _ = read_label_file(args.reference, names)
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction grid {prediction.shape} differs from reference grid {reference.shape}; "
                         "resample one onto the other first")
    # In a child process: the Hausdorff distances (distance transforms per organ) take seconds on a whole-body scan.
    with progress_bar("evaluating") as progress:
        rows = evaluate_labels(prediction, reference, names, volume.spacing, progress=progress)
    text = rows_to_csv(rows, METRIC_COLUMNS)
    write_text(args.csv, text)
    emit_result(rows=rows, csv=args.csv)
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
    changes = _json_option(args.config_changes, "--config-changes")
    if args.patch_size:
        changes.update(patch_size=(args.patch_size,) * 3, window_size=(args.patch_size,) * 3,
                       window_stride=(max(1, args.patch_size // 4),) * 3)
    if changes:
        config = config.replace(**changes)
    overrides = _json_option(args.model_overrides, "--model-overrides")
    if args.width:
        overrides["base_channels"] = args.width
    initial = args.initial_weights
    if initial:  # a model name (as listed in the panel) or a checkpoint path
        from mednets.sources import resolve

        from .models import find_model

        initial = str(resolve(find_model(initial, args.model_folder or ())))
    request = TrainingRequest(config=config, train_cases=cases[:-validation], validation_cases=cases[-validation:],
                              output_dir=args.output, epochs=args.epochs, iterations=args.iterations,
                              device=args.device, seed=args.seed, resume=args.resume, model_overrides=overrides,
                              initial_weights=initial, training_data=f"{len(cases)} cases from {args.data}")
    with progress_bar("training") as progress:
        result = train(request, progress=progress, log=emit_log)
    checkpoint = result.best_checkpoint or result.last_checkpoint
    emit_result(checkpoint=checkpoint, best_checkpoint=result.best_checkpoint, last_checkpoint=result.last_checkpoint,
                best_metric=result.best_metric, iterations=result.iterations, output=args.output)
    print(f"best checkpoint: {result.best_checkpoint}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m OrganComboLib",
                                     description="Multi-organ segmentation with the Combo loss (Taghanaki et al. 2019)",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="segment an image file", epilog=EXAMPLES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("--input", required=True, help="image file (NRRD, NIfTI, MHA, ...)")
    predict.add_argument("--output", required=True, help="label map file, or .seg.nrrd for named segments")
    predict.add_argument("--model", help="model name or .safetensors path (default: bundled PET demo weights)")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    predict.add_argument("--threshold", type=float, help="probability threshold (default: the model's, 0.5)")
    predict.add_argument("--batch-size", type=int, default=1, help="windows per network call")
    predict.add_argument("--probabilities", help="also write the organ probabilities (multi-component volume)")
    predict.add_argument("--model-folder", action="append", help="also look for --model in this folder of "
                         "checkpoints (a training output folder; repeatable)")
    predict.set_defaults(run=cmd_predict)

    evaluate = commands.add_parser("evaluate", help="per-organ Jaccard, Dice, FPR, FNR, HD of a result")
    evaluate.add_argument("--prediction", required=True, help="label map or .seg.nrrd")
    evaluate.add_argument("--reference", required=True, help="label map or .seg.nrrd on the same grid")
    evaluate.add_argument("--config", default="pet", help="pet, mri or ultrasound (organ names and label order)")
    evaluate.add_argument("--organs", help="JSON list of organ names, label k+1 = organs[k] (default: the "
                          "configuration's)")
    evaluate.add_argument("--csv", help="write the table to this CSV file")
    evaluate.set_defaults(run=cmd_evaluate)

    train = commands.add_parser("train", help="train or fine-tune on a folder of <case>_image/_label.nrrd pairs")
    train.add_argument("--data", required=True, help="training folder")
    train.add_argument("--output", required=True, help="output folder (checkpoints, history)")
    train.add_argument("--config", default="pet", help="pet, mri or ultrasound")
    train.add_argument("--epochs", type=int, help="epochs (default: the configuration's)")
    train.add_argument("--iterations", type=int, help="optimizer steps (overrides --epochs)")
    train.add_argument("--validation-fraction", type=float, default=0.2)
    train.add_argument("--patch-size", type=int, help="cubic sub-volume size (default: the paper's 80)")
    train.add_argument("--width", type=int, help="base channel width (default: the paper's)")
    train.add_argument("--initial-weights", help="checkpoint (path or model name) to fine-tune from")
    train.add_argument("--model-folder", action="append", help="where to look for an --initial-weights model name "
                       "(repeatable)")
    train.add_argument("--config-changes", help="JSON object of configuration changes, e.g. "
                       "'{\"patch_size\": [32, 32, 32], \"batch_size\": 1}'")
    train.add_argument("--model-overrides", help="JSON object of network arguments, e.g. '{\"base_channels\": 2}'")
    train.add_argument("--device", default="auto")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    train.set_defaults(run=cmd_train)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
