"""NucleiMaskylo's demo: bundled demo weights trained on H&E phantoms, and the batch demo of ``make demo``.

Demo weights (``Resources/Models/nucleimaskylo_he_demo.safetensors``) are made by this file, not by hand::

    python -m NucleiMaskyloLib.demo --train-weights     # from the NucleiMaskylo folder; the learning test's run: 90 iterations; 14 min on the shared, loaded 2-core machine

They use the small configuration (``mask_rcnn_small``: the paper's head structure on a small BatchNorm backbone, about
1.6 M parameters, 3.2 MB in float16) trained from scratch on 128x128 crops of synthetic H&E tiles
(:func:`mednets.phantoms.he_nuclei.he_nuclei_phantom`), Macenko-normalised to the bundled reference before training as
in the paper, with the paper's optimizer (SGD, momentum 0.9), warmup + step decay and batch 16 (accumulated), at the
demo learning rate of :data:`NucleiMaskyloLib.training.DEMO_RECIPE`. The paper configuration (``mask_rcnn``,
ResNet-50 FPN, 512x512 tiles) stays the default for training on real data.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from .models import CATALOGUE, DEFAULT_MODEL, MODULE_NAME

__all__ = ["WEIGHTS_FILE", "TRAIN_SEEDS", "VALIDATION_SEEDS", "DEMO_SAMPLE_SEED", "phantom_cases",
           "train_demo_weights", "run_demo"]

WEIGHTS_FILE = CATALOGUE.parent / "nucleimaskylo_he_demo.safetensors"
TRAIN_SEEDS = tuple(range(100, 124))
VALIDATION_SEEDS = tuple(range(900, 906))
DEMO_SAMPLE_SEED = 1234
DEMO_PIPELINE = {"tile_size": 512, "overlap": 64, "stain_method": "macenko", "score_threshold": 0.5}


def phantom_cases(seeds: Sequence[int], shape=(256, 256)):
    """(RGB image, instance labels) of H&E phantoms, Macenko-normalised to the bundled reference."""
    from mednets.phantoms.he_nuclei import he_nuclei_phantom

    from .training import normalise_cases

    return normalise_cases([(c.image, c.labels) for c in (he_nuclei_phantom(s, shape=shape) for s in seeds)])


def train_demo_weights(output: Path = WEIGHTS_FILE, iterations: int = 90, log: Callable[[str], None] = print
                       ) -> Dict[str, object]:
    """Train the demo network on phantoms; write the weights (fp16) and the catalogue entry; returns a summary."""
    import torch

    from mednets.fileio import sha256_file
    from mednets.sources import ModelRegistry, ModelSource

    from . import build_model
    from .training import DEMO_RECIPE, evaluate_map, save_nuclei_checkpoint, train_mask_rcnn

    started = time.monotonic()
    train = phantom_cases(TRAIN_SEEDS)
    validation = phantom_cases(VALIDATION_SEEDS, shape=(128, 128))
    recipe = DEMO_RECIPE.__class__.from_dict({**DEMO_RECIPE.to_dict(), "iterations": iterations,
                                              "warmup_iterations": max(5, iterations // 12)})
    torch.manual_seed(0)
    model = build_model("mask_rcnn_small")
    history = train_mask_rcnn(model, train, recipe, seed=0,
                              on_iteration=lambda i, d: log(f"iteration {i} loss {d['loss']:.3f}") if i % 10 == 0
                              else None)
    scores = evaluate_map(model, validation)
    minutes = (time.monotonic() - started) / 60
    save_nuclei_checkpoint(
        output, model, "mask_rcnn_small", {}, pipeline=DEMO_PIPELINE,
        training_data=(f"{len(TRAIN_SEEDS)} synthetic H&E tiles of 256x256 pixels (mednets.phantoms.he_nuclei, seeds "
                       f"{TRAIN_SEEDS[0]}-{TRAIN_SEEDS[-1]}), Macenko-normalised; validation seeds "
                       f"{list(VALIDATION_SEEDS)} (128x128). Synthetic data only: NOT for clinical use."),
        extra={"recipe": recipe.to_dict(), "demo": {"iterations": iterations, "training_minutes_cpu": round(minutes, 1),
                                                    "validation": scores}},
        dtype="float16")
    digest = sha256_file(output)
    registry = ModelRegistry.load(CATALOGUE) if CATALOGUE.is_file() else ModelRegistry()
    registry.add(ModelSource(name=DEFAULT_MODEL, path=str(output), sha256=digest, license="Apache-2.0",
                             module=MODULE_NAME, architecture="mask_rcnn_small",
                             description="Demo weights: nuclei in H&E, trained on synthetic phantoms only; not for "
                                         "clinical use"), replace=True)
    registry.save(CATALOGUE)
    summary = {"file": output.name, "sha256": digest, "bytes": output.stat().st_size, "minutes": round(minutes, 1),
               "validation": scores}
    log(json.dumps(summary))
    return summary


def _outline(image: np.ndarray, labels: np.ndarray, colour=(255, 230, 0)) -> np.ndarray:
    from skimage.segmentation import find_boundaries

    out = np.array(image, copy=True)
    out[find_boundaries(labels, mode="inner")] = colour
    return out


def run_demo(output_dir: Path, progress=None):
    """Find the nuclei of a held-out 512x512 H&E phantom tile through the module Logic, evaluate against its
    reference, write the label map (TIFF), the nucleus table and the metrics (CSV); returns a DemoResult."""
    import slicer

    from mednets import mrml
    from mednets.demo import DemoPanel, DemoResult
    from mednets.image import Volume
    from mednets.phantoms.he_nuclei import he_nuclei_phantom

    import NucleiMaskylo  # the scripted module file (its folder is on sys.path when Slicer or the runtime loaded it)

    from .datasets import write_label_map

    started = time.monotonic()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    phantom = he_nuclei_phantom(DEMO_SAMPLE_SEED, shape=(512, 512))
    slicer.mrmlScene.Clear()
    volume_node = mrml.new_volume_node(Volume(phantom.image[None]), slicer.mrmlScene, "H&E phantom",
                                       node_class="vector")
    logic = NucleiMaskylo.NucleiMaskyloLogic()
    labelmap, table = logic.run(volume_node, device="auto", progress=progress)
    reference = mrml.new_volume_node(phantom.labels[None].astype(np.int32), name="reference", node_class="label",
                                     reference_node=volume_node)
    metrics, metrics_table = logic.evaluate(labelmap, reference)
    found = slicer.util.arrayFromVolume(labelmap)[0]
    label_path = write_label_map(output_dir / "he_phantom_nuclei.tif", found)
    table_path = mrml.save_node(table, output_dir / "he_phantom_nuclei.csv")
    metrics_path = mrml.save_node(metrics_table, output_dir / "he_phantom_metrics.csv")
    panels = [DemoPanel("H&E phantom (512x512)", phantom.image),
              DemoPanel(f"NucleiMaskylo: {int(found.max())} nuclei", _outline(phantom.image, found)),
              DemoPanel(f"reference: {int(phantom.labels.max())} nuclei", _outline(phantom.image, phantom.labels,
                                                                                   (0, 255, 255)))]
    shown = {key: float(metrics[key]) for key in ("mAP50", "mAP50_95", "precision", "recall", "dice", "aji", "pq")}
    return DemoResult(MODULE_NAME, "held-out H&E phantom tile through NucleiMaskyloLogic.run + evaluate, demo "
                      "weights", shown, panels, [label_path, table_path, metrics_path], time.monotonic() - started)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Train NucleiMaskylo's bundled demo weights on H&E phantoms")
    parser.add_argument("--train-weights", action="store_true", help="train and write the demo weights")
    parser.add_argument("--iterations", type=int, default=90)
    args = parser.parse_args(argv)
    if not args.train_weights:
        parser.print_help()
        return 0
    train_demo_weights(iterations=args.iterations)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
