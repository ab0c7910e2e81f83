"""Command line of OrganCombo: ``python -m OrganComboLib predict|train|evaluate ...`` (run from the OrganCombo folder
or with it on PYTHONPATH). Works without Slicer; ``.seg.nrrd`` files need the ``slicer-core`` package (``pip install
slicermednets[demo]``), label maps (``.nrrd``, ``.nii.gz``, ``.mha``) do not.

Exit status: 0 on success, 2 on bad input (one-line reason on stderr), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

import numpy as np

from mednets.cli import progress_bar, read_label_file, rows_to_csv, run_command, write_label_file, write_text
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


def cmd_predict(args: argparse.Namespace) -> int:
    from mednets.io import read_volume

    from .models import load_organcombo_model
    from .pipeline import segment_volume

    started = time.monotonic()
    volume = read_volume(args.input)
    loaded, config = load_organcombo_model(args.model, device=args.device, report=lambda m: print(m, file=sys.stderr))
    with progress_bar("segmenting") as progress:
        result = segment_volume(volume, loaded.network, config, device=loaded.device, threshold=args.threshold,
                                batch_size=args.batch_size, progress=progress)
    output = write_label_file(result.labels, volume, args.output, segment_specs(config.classes))
    if args.probabilities:
        from mednets.io import write_volume

        write_volume(volume.with_array(np.moveaxis(result.probabilities, 0, -1)), args.probabilities)
    print(f"wrote {output} in {time.monotonic() - started:.1f} s on {loaded.device}")
    for name, millilitres in result.volumes_ml.items():
        print(f"  {name}: {millilitres:.1f} ml")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .configs import get_config
    from .pipeline import evaluate_labels

    config = get_config(args.config)
    prediction, volume = read_label_file(args.prediction, config.class_names)
    reference, _ = read_label_file(args.reference, config.class_names)
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction grid {prediction.shape} differs from reference grid {reference.shape}; "
                         "resample one onto the other first")
    rows = evaluate_labels(prediction, reference, config.class_names, volume.spacing)
    text = rows_to_csv(rows, METRIC_COLUMNS)
    write_text(args.csv, text)
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
    changes = {}
    if args.patch_size:
        changes.update(patch_size=(args.patch_size,) * 3, window_size=(args.patch_size,) * 3,
                       window_stride=(max(1, args.patch_size // 4),) * 3)
    if changes:
        config = config.replace(**changes)
    overrides = {}
    if args.width:
        overrides["base_channels"] = args.width
    request = TrainingRequest(config=config, train_cases=cases[:-validation], validation_cases=cases[-validation:],
                              output_dir=args.output, epochs=args.epochs, iterations=args.iterations,
                              device=args.device, seed=args.seed, resume=args.resume, model_overrides=overrides,
                              initial_weights=args.initial_weights, training_data=f"{len(cases)} cases from {args.data}")
    with progress_bar("training") as progress:
        result = train(request, progress=progress, log=lambda m: print(m, file=sys.stderr))
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
    predict.set_defaults(run=cmd_predict)

    evaluate = commands.add_parser("evaluate", help="per-organ Jaccard, Dice, FPR, FNR, HD of a result")
    evaluate.add_argument("--prediction", required=True, help="label map or .seg.nrrd")
    evaluate.add_argument("--reference", required=True, help="label map or .seg.nrrd on the same grid")
    evaluate.add_argument("--config", default="pet", help="pet, mri or ultrasound (organ names and label order)")
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
    train.add_argument("--initial-weights", help="checkpoint to fine-tune from")
    train.add_argument("--device", default="auto")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    train.set_defaults(run=cmd_train)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
