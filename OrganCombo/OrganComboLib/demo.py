"""OrganCombo's demo: bundled demo weights trained on PET phantoms, and the batch demo of ``make demo``.

Demo weights (``Resources/Models/organcombo_pet_demo.safetensors``) are made by this file, not by hand::

    python -m OrganComboLib.demo --train-weights        # from the OrganCombo folder; about 10 minutes on 2 CPU cores

They use the paper's proposed network (``combo_net``) with a reduced width and 32^3 sub-volumes on 8 mm-class phantom
grids (the paper's full size, 80^3 sub-volumes and the full width, stays the default for training on real data; it
does not fit the 60 MB budget for bundled weights nor a CPU demo). Everything else is the paper's recipe: Combo loss
with the PET preset (alpha 0.5, beta 0.4), ADADELTA (lr 1, rho 0.95, eps 1e-8), organ/background sub-volumes 5:1,
per-window min-max normalisation, max aggregation of windows with stride = window / 4 (20 of 80 in the paper), t = 0.5.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .configs import OrganComboConfig, get_config
from .models import CATALOGUE, DEFAULT_MODEL, MODULE_NAME

__all__ = ["DEMO_CONFIG", "DEMO_MODEL_OVERRIDES", "WEIGHTS_FILE", "phantom_case", "train_demo_weights", "run_demo"]

#: The demo task: the PET configuration at a CPU-friendly scale (32^3 windows, stride 8 = window / 4 as in the paper).
DEMO_CONFIG: OrganComboConfig = get_config("pet").replace(
    patch_size=(32, 32, 32), window_size=(32, 32, 32), window_stride=(8, 8, 8), batch_size=4)
#: Width of the demo network (the paper's network has the full width; see the module README).
DEMO_MODEL_OVERRIDES: Dict[str, int] = {"base_channels": 8}
WEIGHTS_FILE = CATALOGUE.parent / "organcombo_pet_demo.safetensors"
TRAIN_SEEDS = tuple(range(0, 12))
VALIDATION_SEEDS = (900, 901)


def phantom_case(seed: int, name: Optional[str] = None):
    """A PET whole-body phantom as a training case (label k+1 = organ k of the PET configuration)."""
    from mednets.phantoms import pet_whole_body_phantom
    from mednets.training import Case

    phantom = pet_whole_body_phantom(seed=seed)
    return Case.from_volume(name or f"pet-phantom-{seed}", phantom.image, phantom.labels, phantom.spacing)


def train_demo_weights(output: Path = WEIGHTS_FILE, iterations: int = 3000, device: str = "cpu",
                       log: Callable[[str], None] = print) -> Dict[str, object]:
    """Train the demo network on phantoms and write the weights (fp16), the model card and the catalogue entry."""
    import shutil
    import tempfile

    from mednets.checkpoints import load_checkpoint, save_checkpoint
    from mednets.fileio import sha256_file
    from mednets.sources import ModelRegistry, ModelSource

    from .training import TrainingRequest, train

    started = time.monotonic()
    train_cases = [phantom_case(seed) for seed in TRAIN_SEEDS]
    validation_cases = [phantom_case(seed) for seed in VALIDATION_SEEDS]
    run_dir = Path(tempfile.mkdtemp(prefix="organcombo-demo-training-"))
    try:
        request = TrainingRequest(
            config=DEMO_CONFIG, train_cases=train_cases, validation_cases=validation_cases, output_dir=run_dir,
            iterations=iterations, validate_every=max(1, iterations // 10), model_overrides=DEMO_MODEL_OVERRIDES,
            device=device, seed=0,
            training_data=(f"{len(TRAIN_SEEDS)} synthetic PET whole-body phantoms (mednets.phantoms."
                           f"pet_whole_body_phantom, seeds {TRAIN_SEEDS[0]}-{TRAIN_SEEDS[-1]}); validation seeds "
                           f"{list(VALIDATION_SEEDS)}. Synthetic data only: NOT for clinical use."))
        result = train(request, log=log)
        state, metadata = load_checkpoint(result.best_checkpoint)
        minutes = (time.monotonic() - started) / 60
        metadata.extra["demo"] = {"iterations": iterations, "training_minutes_cpu": round(minutes, 1),
                                  "best_validation": result.best_metric, "best_iteration": result.best_iteration}
        save_checkpoint(output, state, metadata, dtype="float16")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    digest = sha256_file(output)
    registry = ModelRegistry.load(CATALOGUE) if CATALOGUE.is_file() else ModelRegistry()
    registry.add(ModelSource(name=DEFAULT_MODEL, path=str(output), sha256=digest, license="Apache-2.0",
                             module=MODULE_NAME, architecture=DEMO_CONFIG.model,
                             description="Demo weights: PET whole body (5 organs), trained on synthetic phantoms "
                                         "only; not for clinical use"), replace=True)
    registry.save(CATALOGUE)
    summary = {"file": output.name, "sha256": digest, "bytes": output.stat().st_size, "minutes": round(minutes, 1),
               "best_validation_dice": result.best_metric, "best_iteration": result.best_iteration}
    log(json.dumps(summary))
    return summary


def _panel_slices(labels: np.ndarray) -> List[int]:
    """Coronal slices (array axis 1) through the most organ voxels."""
    counts = (labels > 0).sum(axis=(0, 2))
    return [int(np.argmax(counts))]


def run_demo(output_dir: Path, progress=None):
    """Segment the bundled PET sample (a held-out phantom) through the module Logic, evaluate it against its bundled
    reference, write files; returns a DemoResult."""
    import slicer

    from mednets import mrml
    from mednets.demo import DemoPanel, DemoResult, overlay_labels
    from mednets.io import read_volume
    from mednets.terminology import segment_specs

    import OrganCombo  # the scripted module file (its folder is on sys.path when Slicer or the runtime loaded it)

    from .samples import PET_SAMPLE

    started = time.monotonic()
    output_dir = Path(output_dir)
    image_path, reference_path = (Path(entry.path) for entry in PET_SAMPLE.files)
    volume = read_volume(image_path)
    reference_labels, _ = mrml.read_segmentation_file(reference_path, DEMO_CONFIG.class_names, allow_missing=False)
    slicer.mrmlScene.Clear()
    volume_node = mrml.new_volume_node(volume, slicer.mrmlScene, "PET phantom")
    logic = OrganCombo.OrganComboLogic()
    segmentation = logic.run(volume_node, device="auto", progress=progress)
    reference = mrml.new_segmentation_node(reference_labels, volume_node, segment_specs(DEMO_CONFIG.classes),
                                           name="PET phantom reference")
    rows, table = logic.evaluate(segmentation, reference, volume_node)
    seg_path = mrml.save_node(segmentation, output_dir / "pet_phantom_organs.seg.nrrd")
    csv_path = mrml.save_node(table, output_dir / "pet_phantom_metrics.csv")
    found = mrml.case_from_nodes(volume_node, segmentation, DEMO_CONFIG.class_names, allow_missing=True).label
    colors = {index + 1: entry.color for index, entry in enumerate(DEMO_CONFIG.classes)}
    image = volume.array
    j = _panel_slices(reference_labels)[0]
    window = (0.0, float(np.percentile(image, 99.5)))
    # Coronal view: rows = superior (top) to inferior, columns = patient right on the left of the picture.
    coronal = lambda array: array[::-1, j, :]  # noqa: E731
    aspect = volume.spacing[0] / volume.spacing[2]
    panels = [DemoPanel("PET phantom (coronal)", overlay_labels(coronal(image), None, window=window), aspect),
              DemoPanel("OrganCombo result", overlay_labels(coronal(image), coronal(found), colors, window),
                        aspect),
              DemoPanel("reference (outline)", overlay_labels(coronal(image), coronal(reference_labels), colors,
                                                              window, outline_only=True), aspect)]
    metrics = {f"Dice {row['name']}": float(row["dice"]) for row in rows}
    metrics = {"mean Dice": float(np.mean(list(metrics.values()))), **metrics}
    return DemoResult(MODULE_NAME, "bundled PET sample (held-out phantom) through OrganComboLogic.run + evaluate, demo weights",
                      metrics, panels, [image_path, seg_path, csv_path], time.monotonic() - started)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Train OrganCombo's bundled demo weights on PET phantoms")
    parser.add_argument("--train-weights", action="store_true", help="train and write the demo weights")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not args.train_weights:
        parser.print_help()
        return 0
    train_demo_weights(iterations=args.iterations, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
