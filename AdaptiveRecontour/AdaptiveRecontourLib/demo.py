"""AdaptiveRecontour's demo: bundled demo weights trained on pelvis phantom pairs, and the batch demo of
``make demo``.

Demo weights (``Resources/Models/adaptiverecontour_pelvis_demo.safetensors``) are made by this file::

    python -m AdaptiveRecontourLib.demo --train-weights [--iterations N]     # from the AdaptiveRecontour folder

They use JRS-reg (the registration network trained with the joint NCC + DSC-R + bending-energy loss; equal loss
weights, bending energy 0.5, RAdam, batch 2 doubled by swapping, patches sampled equally from targets / organs at
risk / torso) at a CPU scale: filters (8, 16, 32) instead of (23, 45, 91), 64^3 patches instead of 96^3, 3 mm voxels
instead of 1 mm and RAdam lr 1e-2 instead of 1e-4 (:data:`DEMO_CONFIG`). With 48^3 patches the outcome depended on the
seed (+0.001 and +0.037 over the affine for seeds 0 and 1); with 64^3 patches the learning test's recipe gave +0.056
and +0.110 (README status). The paper's best, Cross-stitch, has not been trained to a useful state on CPU. The paper's full
configuration stays the default for training on real data. The best checkpoint is chosen on the validation seeds;
the model card reports the separate test seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .configs import DEFAULT_MODEL, MODULE_NAME, RecontourConfig, get_config
from .models import CATALOGUE

__all__ = ["DEMO_CONFIG", "WEIGHTS_FILE", "TRAIN_SEEDS", "VALIDATION_SEEDS", "phantom_pairs", "train_demo_weights",
           "run_demo"]

DEMO_CONFIG: RecontourConfig = get_config("cpu_jrs_reg")
WEIGHTS_FILE = CATALOGUE.parent / "adaptiverecontour_pelvis_demo.safetensors"
CARD_FILE = CATALOGUE.parent / "adaptiverecontour_pelvis_demo.md"
TRAIN_SEEDS = tuple(range(100, 112))
VALIDATION_SEEDS = (900, 901, 902)
TEST_SEEDS = (910, 911, 912)  # never seen in training or checkpoint selection: the model card's numbers
DEMO_SEED = 950
PHANTOM_SHAPE_2MM = (48, 64, 80)


def phantom_shape(spacing_mm: float):
    return tuple(int(round(n * 2.0 / spacing_mm)) for n in PHANTOM_SHAPE_2MM)


def phantom_volumes(seed: int, spacing_mm: float = DEMO_CONFIG.spacing_mm):
    """(planning Volume, planning labels 0-4, daily Volume, daily labels 0-4, name) of one phantom pair."""
    from mednets.image import Volume
    from mednets.phantoms import KJI_LPS_DIRECTIONS
    from mednets.phantoms.pelvis_pair import pelvis_ct_pair

    pair = pelvis_ct_pair(seed, shape=phantom_shape(spacing_mm), spacing=(spacing_mm,) * 3)
    vol = lambda c: Volume(c.image, spacing=c.spacing, directions_ras=KJI_LPS_DIRECTIONS)  # noqa: E731
    clean = lambda l: np.where(l <= 4, l, 0).astype(np.uint8)  # noqa: E731 - bones are not a network class
    return vol(pair.planning), clean(pair.planning.labels), vol(pair.daily), clean(pair.daily.labels), f"pelvis-{seed}"


def phantom_pairs(seeds: Sequence[int], config: RecontourConfig = DEMO_CONFIG, affine_iterations: int = 60):
    from .training import pairs_from_volumes

    return pairs_from_volumes([phantom_volumes(s, config.spacing_mm) for s in seeds], config, affine_iterations)


def train_demo_weights(output: Path = WEIGHTS_FILE, iterations: int = 1000, device: str = "cpu",
                       log: Callable[[str], None] = print) -> Dict[str, object]:
    """Train the demo network, write fp16 weights, the model card and the catalogue entry."""
    import shutil
    import tempfile

    from mednets.checkpoints import load_checkpoint, save_checkpoint
    from mednets.fileio import sha256_file
    from mednets.sources import ModelRegistry, ModelSource

    from .training import evaluate_pairs, train_network

    started = time.monotonic()
    train, val = phantom_pairs(TRAIN_SEEDS), phantom_pairs(VALIDATION_SEEDS)
    run_dir = Path(tempfile.mkdtemp(prefix="adaptiverecontour-demo-"))
    try:
        network, result, _loss = train_network(
            DEMO_CONFIG, train, val, output_dir=str(run_dir), iterations=iterations,
            validate_every=max(1, iterations // 6), seed=0, device=device,
            training_data=(f"{len(TRAIN_SEEDS)} synthetic pelvis CT pairs (mednets.phantoms.pelvis_pair, seeds "
                           f"{TRAIN_SEEDS[0]}-{TRAIN_SEEDS[-1]}); validation seeds {list(VALIDATION_SEEDS)}. "
                           "Synthetic data only: NOT for clinical use."))
        best = run_dir / "best.safetensors"
        state, metadata = load_checkpoint(best if best.is_file() else run_dir / "model.safetensors")
        from . import build_model

        net = build_model(DEMO_CONFIG.model, **DEMO_CONFIG.architecture_config())
        net.load_state_dict(state)
        net.eval()
        val_scores = evaluate_pairs(net, val, DEMO_CONFIG.inference_patch_size, spacing=(DEMO_CONFIG.spacing_mm,) * 3)
        scores = evaluate_pairs(net, phantom_pairs(TEST_SEEDS), DEMO_CONFIG.inference_patch_size,
                                spacing=(DEMO_CONFIG.spacing_mm,) * 3)
        minutes = (time.monotonic() - started) / 60
        metadata.extra["demo"] = {"iterations": iterations, "training_minutes_cpu": round(minutes, 1),
                                  "validation": val_scores, "test": scores}
        output.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(output, state, metadata, dtype="float16")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    digest = sha256_file(output)
    registry = ModelRegistry.load(CATALOGUE) if CATALOGUE.is_file() else ModelRegistry()
    registry.add(ModelSource(name=DEFAULT_MODEL, path=output.name, sha256=digest, license="Apache-2.0",
                             module=MODULE_NAME, architecture=DEMO_CONFIG.model,
                             description="Demo weights: pelvis CT pairs (prostate, seminal vesicles, rectum, "
                                         "bladder), synthetic phantoms only; not for clinical use"), replace=True)
    registry.save(CATALOGUE)
    _write_card(output, digest, iterations, minutes, scores, val_scores)
    summary = {"file": output.name, "sha256": digest, "bytes": output.stat().st_size, "minutes": round(minutes, 1),
               "test": scores, "validation": val_scores}
    log(json.dumps(summary))
    return summary


def _write_card(output: Path, digest: str, iterations: int, minutes: float, scores: Dict[str, float],
                val_scores: Dict[str, float]) -> None:
    c = DEMO_CONFIG
    text = f"""# AdaptiveRecontour demo weights (`{output.name}`)

**Not for clinical use.** Trained on synthetic phantoms only, to demonstrate the module.

- Network: JRS-reg (JRS-MTL, Elmahdy et al., IEEE Access 2021): inputs daily CT, planning CT, planning contours;
  output the displacement field; filters {list(c.filters)} (paper: [23, 45, 91]), trilinear up-sampling. The daily
  contours are the planning contours (prostate, seminal vesicles, rectum, bladder) warped by it.
- Input: {c.patch_size}^3 patches at {c.spacing_mm} mm (paper: 96^3 at 1 mm), HU clipped to {list(c.hu_clip)}, affine
  pre-registration (SimpleITK).
- Training data: {len(TRAIN_SEEDS)} planning/daily pairs of `mednets.phantoms.pelvis_pair` (seeds {TRAIN_SEEDS[0]}-
  {TRAIN_SEEDS[-1]}), validation seeds {list(VALIDATION_SEEDS)} (checkpoint selection), test seeds
  {list(TEST_SEEDS)} (the numbers below).
- Recipe: RAdam lr {c.optimizer.get('lr')} (paper 1e-4), batch {c.batch_size} doubled by swapping, patches sampled
  equally from targets / organs at risk / torso, equal loss weights, bending energy {c.bending_weight}, deep
  supervision 1/3 each; {iterations} iterations, {minutes:.1f} min on a shared 2-core CPU.
- Test (mean over 4 structures and {len(TEST_SEEDS)} held-out pairs never used in training or selection, largest
  component kept): DSC warped contours {scores.get('dice_reg', float('nan')):.3f}, DSC affine only
  {scores.get('dice_affine', float('nan')):.3f}; folding fraction {scores.get('folding', float('nan')):.4f}, Jacobian
  std {scores.get('jacobian_std', float('nan')):.3f}. Validation pairs (used to pick the checkpoint): DSC warped
  {val_scores.get('dice_reg', float('nan')):.3f}, affine only {val_scores.get('dice_affine', float('nan')):.3f}.
- Bundled weights are the checkpoint of one seeded CPU run; a phantom-only demo, not a validated model.
- Storage: float16 safetensors, sha256 `{digest}`.
"""
    CARD_FILE.write_text(text)


def run_demo(output_dir: Path, progress=None):
    """Re-contour a held-out phantom pair through the module Logic, evaluate it; returns a DemoResult."""
    if not (CATALOGUE.is_file() and WEIGHTS_FILE.is_file()):
        from mednets.demo import DemoUnavailable

        raise DemoUnavailable("the AdaptiveRecontour demo weights are not built yet: run "
                              "'python -m AdaptiveRecontourLib.demo --train-weights' in the AdaptiveRecontour folder")
    import slicer

    from mednets import mrml
    from mednets.demo import DemoPanel, DemoResult, overlay_labels
    from mednets.terminology import segment_specs

    import AdaptiveRecontour  # the scripted module file (its folder is on sys.path once loaded)

    from .configs import SEGMENT_NAMES, segment_classes

    started = time.monotonic()
    output_dir = Path(output_dir)
    planning, planning_labels, daily, daily_labels, _ = phantom_volumes(DEMO_SEED)
    slicer.mrmlScene.Clear()
    specs = segment_specs(segment_classes())
    p_node = mrml.new_volume_node(planning, slicer.mrmlScene, "planning CT")
    p_seg = mrml.new_segmentation_node(planning_labels, p_node, specs, name="planning contours")
    d_node = mrml.new_volume_node(daily, slicer.mrmlScene, "daily CT")
    reference = mrml.new_segmentation_node(daily_labels, d_node, specs, name="daily reference")
    logic = AdaptiveRecontour.AdaptiveRecontourLogic()
    segmentation, transform = logic.run(p_node, p_seg, d_node, device="auto", progress=progress)
    rows, table = logic.evaluate(segmentation, reference, d_node, transform)
    seg_path = mrml.save_node(segmentation, output_dir / "pelvis_daily_recontoured.seg.nrrd")
    csv_path = mrml.save_node(table, output_dir / "pelvis_recontour_metrics.csv")
    found = mrml.case_from_nodes(d_node, segmentation, SEGMENT_NAMES, allow_missing=True).label
    colors = {i + 1: c.color for i, c in enumerate(segment_classes())}
    k = int(np.argmax((daily_labels > 0).sum(axis=(1, 2))))
    window = (-300.0, 300.0)
    panels = [DemoPanel("planning CT + contours", overlay_labels(planning.array[k], planning_labels[k], colors,
                                                                 window)),
              DemoPanel("daily CT: AdaptiveRecontour", overlay_labels(daily.array[k], found[k], colors, window)),
              DemoPanel("daily CT: reference (outline)", overlay_labels(daily.array[k], daily_labels[k], colors,
                                                                        window, outline_only=True))]
    metrics = {f"DSC {r['structure']}": float(r["dice"]) for r in rows if r["structure"] in SEGMENT_NAMES}
    metrics = {"mean DSC": float(np.mean(list(metrics.values()))), **metrics,
               "folding %": 100.0 * float(rows[-1]["folding_fraction"])}
    return DemoResult(MODULE_NAME, "held-out pelvis phantom pair through AdaptiveRecontourLogic.run + evaluate, "
                      "demo weights", metrics, panels, [seg_path, csv_path], time.monotonic() - started)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-weights", action="store_true", help="train and write the bundled demo weights")
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.train_weights:
        train_demo_weights(iterations=args.iterations, device=args.device)
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
