"""AneurysmSeg's demo: bundled demo weights trained on CTA head phantoms, and the batch demo of ``make demo``.

Demo weights (``Resources/Models/aneurysmseg_cta_demo.safetensors``) are made by this file, not by hand::

    python -m AneurysmSegLib.demo --train-weights        # from the AneurysmSeg folder

They use GLIA-Net in the small configuration (:data:`AneurysmSegLib.configs.SMALL`: widths 4-32, global feature 8
channels, 24^3 patches, windows and global image) on 40 x 56 x 56 phantoms of 1.25 mm (the learning test's set); the paper's full size (96^3,
widths 16-128, 1,066,704 parameters) stays the default for training on real data. Everything else is the paper's
recipe: balanced positive/negative patches with jitter, flips and rotations, 0.1 global CE + (0.8 exp-log Dice + 0.2
pyramid CE), Adam with the x0.95 step schedule, batch 3, threshold 0.5.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from .configs import DEFAULT_MODEL, MODULE_NAME, SMALL, AneurysmSegConfig
from .models import CATALOGUE

__all__ = ["DEMO_CONFIG", "WEIGHTS_FILE", "PHANTOM_SHAPE", "phantom_case", "train_demo_weights", "run_demo"]

DEMO_CONFIG: AneurysmSegConfig = SMALL
WEIGHTS_FILE = CATALOGUE.parent / "aneurysmseg_cta_demo.safetensors"
# The training set of the learning test (Testing/Python/test_learning.py): same phantoms, configuration and seed, so
# the demo weights are what that test trains.
PHANTOM_SHAPE = (40, 56, 56)
PHANTOM_SPACING = (1.25, 1.25, 1.25)
DIAMETERS_MM = (5.0, 10.0)
TRAIN_SEEDS = tuple(range(0, 8))
VALIDATION_SEEDS = (200, 201)
DEMO_SEED = 4242


def phantom(seed: int, num_aneurysms=None):
    from mednets.phantoms.cta_head import cta_head_phantom

    return cta_head_phantom(shape=PHANTOM_SHAPE, spacing=PHANTOM_SPACING, seed=seed, num_aneurysms=num_aneurysms,
                            aneurysm_diameter_mm=DIAMETERS_MM)


def phantom_case(seed: int, name: Optional[str] = None):
    """A CTA head phantom as a training case (label 1 = aneurysm)."""
    from mednets.training import Case

    case = phantom(seed)
    return Case.from_volume(name or f"cta-phantom-{seed}", case.image, (case.labels == 1).astype(np.uint8),
                            case.spacing)


def train_demo_weights(output: Path = WEIGHTS_FILE, iterations: int = 240, device: str = "cpu",
                       log: Callable[[str], None] = print) -> Dict[str, object]:
    """Train the demo network on phantoms and write the weights (fp16) and the catalogue entry."""
    import shutil
    import tempfile

    from mednets.checkpoints import load_checkpoint, save_checkpoint
    from mednets.fileio import sha256_file
    from mednets.sources import ModelRegistry, ModelSource

    from .training import TrainingRequest, train

    started = time.monotonic()
    train_cases = [phantom_case(seed) for seed in TRAIN_SEEDS]
    validation_cases = [phantom_case(seed) for seed in VALIDATION_SEEDS]
    run_dir = Path(tempfile.mkdtemp(prefix="aneurysmseg-demo-training-"))
    try:
        request = TrainingRequest(
            config=DEMO_CONFIG, train_cases=train_cases, validation_cases=validation_cases, output_dir=run_dir,
            iterations=iterations, validate_every=max(1, iterations // 3), device=device, seed=0,
            training_data=(f"{len(TRAIN_SEEDS)} synthetic CTA head phantoms (mednets.phantoms.cta_head, seeds "
                           f"{TRAIN_SEEDS[0]}-{TRAIN_SEEDS[-1]}, {PHANTOM_SHAPE} voxels of {PHANTOM_SPACING[0]} mm, "
                           f"aneurysms {DIAMETERS_MM[0]:g}-{DIAMETERS_MM[1]:g} mm); validation seeds "
                           f"{list(VALIDATION_SEEDS)}. Synthetic data only: NOT for clinical use."))
        result = train(request, log=log)
        state, metadata = load_checkpoint(result.best_checkpoint)
        minutes = (time.monotonic() - started) / 60
        metadata.extra["demo"] = {"iterations": iterations, "training_minutes_cpu": round(minutes, 1),
                                  "best_validation_target_f1": result.best_metric,
                                  "best_iteration": result.best_iteration}
        output.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(output, state, metadata, dtype="float16")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    digest = sha256_file(output)
    registry = ModelRegistry.load(CATALOGUE) if CATALOGUE.is_file() else ModelRegistry()
    registry.add(ModelSource(name=DEFAULT_MODEL, path=str(output), sha256=digest, license="Apache-2.0",
                             module=MODULE_NAME, architecture="glia_net",
                             description="Demo weights: aneurysms in CTA head phantoms (small GLIA-Net), trained on "
                                         "synthetic phantoms only; not for clinical use"), replace=True)
    registry.save(CATALOGUE)
    summary = {"file": output.name, "sha256": digest, "bytes": output.stat().st_size, "minutes": round(minutes, 1),
               "best_validation_target_f1": result.best_metric, "best_iteration": result.best_iteration}
    log(json.dumps(summary))
    return summary


def run_demo(output_dir: Path, progress=None):
    """Segment a held-out CTA phantom through the module Logic with the demo weights, evaluate it against its
    reference, write files; returns a DemoResult."""
    import slicer

    from mednets import mrml
    from mednets.demo import DemoPanel, DemoResult, overlay_labels
    from mednets.image import Volume
    from mednets.phantoms import KJI_LPS_DIRECTIONS
    from mednets.terminology import segment_specs

    import AneurysmSeg  # the scripted module file (its folder is on sys.path when Slicer or the runtime loaded it)

    from .configs import ANEURYSM

    started = time.monotonic()
    output_dir = Path(output_dir)
    case = phantom(DEMO_SEED, num_aneurysms=2)
    reference_labels = (case.labels == 1).astype(np.uint8)
    slicer.mrmlScene.Clear()
    volume = Volume(case.image, spacing=case.spacing, directions_ras=KJI_LPS_DIRECTIONS)
    volume_node = mrml.new_volume_node(volume, slicer.mrmlScene, "CTA phantom")
    logic = AneurysmSeg.AneurysmSegLogic()
    outputs = logic.run(volume_node, device="auto", progress=progress)
    reference = mrml.new_segmentation_node(reference_labels, volume_node, segment_specs([ANEURYSM]),
                                           name="CTA phantom reference")
    metrics, table = logic.evaluate(outputs["segmentation"], reference, volume_node, riskMapNode=outputs["riskMap"])
    image_path = mrml.save_node(volume_node, output_dir / "cta_phantom.nrrd")
    seg_path = mrml.save_node(outputs["segmentation"], output_dir / "cta_phantom_aneurysms.seg.nrrd")
    risk_path = mrml.save_node(outputs["riskMap"], output_dir / "cta_phantom_aneurysm_risk.nrrd")
    csv_path = mrml.save_node(table, output_dir / "cta_phantom_metrics.csv")
    targets_path = mrml.save_node(outputs["table"], output_dir / "cta_phantom_aneurysms.csv")
    found = (mrml.case_from_nodes(volume_node, outputs["segmentation"], [ANEURYSM.name], allow_missing=True).label > 0)
    risk = slicer.util.arrayFromVolume(outputs["riskMap"])
    # axial maximum-intensity projection inside the skull (vessels and aneurysms; the skull would hide them), rows
    # anterior (top) to posterior
    inside = np.isin(case.labels, (1, 2, 4))
    mip = np.where(inside, case.image, -1000.0).max(axis=0)
    window = (-100.0, 600.0)
    colors = {1: ANEURYSM.color}
    panels = [DemoPanel("CTA phantom (axial MIP inside the skull)", overlay_labels(mip, None, window=window), 1.0),
              DemoPanel("AneurysmSeg result (MIP)", overlay_labels(mip, found.max(axis=0).astype(np.uint8), colors,
                                                                   window), 1.0),
              DemoPanel("risk map (max over K)", overlay_labels(risk.max(axis=0), None, window=(0.0, 1.0)), 1.0),
              DemoPanel("reference (outline)", overlay_labels(mip, reference_labels.max(axis=0), colors, window,
                                                              outline_only=True), 1.0)]
    values = {"DSC": float(metrics["voxel"]["dsc"]), "AP": float(metrics["voxel"]["ap"]),
              "AUC": float(metrics["voxel"]["auc"]), "target recall": float(metrics["target"]["recall"]),
              "false positives": float(metrics["target"]["fp"])}
    return DemoResult(MODULE_NAME, "held-out CTA head phantom through AneurysmSegLogic.run + evaluate, demo weights",
                      values, panels, [image_path, seg_path, risk_path, csv_path, targets_path],
                      time.monotonic() - started)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Train AneurysmSeg's bundled demo weights on CTA head phantoms")
    parser.add_argument("--train-weights", action="store_true", help="train and write the demo weights")
    parser.add_argument("--iterations", type=int, default=240)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not args.train_weights:
        parser.print_help()
        return 0
    train_demo_weights(iterations=args.iterations, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
