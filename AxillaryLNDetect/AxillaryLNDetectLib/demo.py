"""AxillaryLNDetect demo: demo weights for both stages trained on CT axilla phantoms, and the batch demo of
``make demo``.

Demo weights (``Resources/Models/axillary-demo-voi.safetensors`` / ``axillary-demo-ln.safetensors``, fp16) are made by
this file, not by hand::

    python -m AxillaryLNDetectLib.demo --train-weights      # from the AxillaryLNDetect folder

They use the paper's network with reduced widths (:data:`DEMO_CONFIG`, the ``phantom_demo`` configuration: widths
8-16-32, 52^3 patches, stage 1 at 8 mm and stage 2 at 2 mm on phantoms at 2 mm with nodes of 8-20 mm) so that
training and the demo run on a CPU; everything else is the paper's recipe (targets from sparse annotations, Dice /
weighted cross-entropy, 50/50 patches, Adam 1e-3, plateau halving, best by Jaccard, augmentation). The seeds and
iteration counts are the learning test's (``Testing/Python/test_learning.py``). The full-size paper configuration
stays the default for training on real data.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .configs import DEFAULT_MODEL, MODULE_NAME, AxillaryConfig, get_config

__all__ = ["DEMO_CONFIG", "PHANTOM_GRID", "phantom_item", "train_demo_weights", "make_test_detector", "run_demo",
           "WEIGHTS_DIR"]

#: The demo configuration (see the module docstring).
DEMO_CONFIG: AxillaryConfig = get_config("phantom_demo")
_WIDTHS = "-".join(str(w) for w in DEMO_CONFIG.model_overrides["widths"])
#: Phantom grid of the demo and of the learning test: 128 x 192 x 384 mm at 2 mm, nodes of 8-20 mm.
PHANTOM_GRID = {"shape": (64, 96, 192), "spacing": (2.0, 2.0, 2.0), "node_diameter_mm": (8.0, 20.0),
                "num_nodes": (3, 6)}
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "Resources" / "Models"
#: The same seeds as the learning test (Testing/Python/test_learning.py): the demo weights are that test's recipe.
TRAIN_SEEDS = tuple(range(0, 6))
VALIDATION_SEEDS = (100,)
TEST_SEEDS = (200, 201, 202)
VOI_ITERATIONS, LN_ITERATIONS = 300, 900
#: Per-stage recipe changes (batch 4; the VOI network is validated more often, its run is short).
TRAINING_CHANGES = {"voi": {"batch_size": 4, "validate_every": 100}, "ln": {"batch_size": 4, "validate_every": 300}}
DEMO_SEED = 950


def phantom_item(seed: int, name: Optional[str] = None, **grid):
    """An axilla phantom as an annotated CT (:class:`AxillaryLNDetectLib.training.AnnotatedCT`)."""
    from mednets.phantoms.axilla_ct import axilla_ct_phantom

    from .training import AnnotatedCT

    settings = dict(PHANTOM_GRID)
    settings.update(grid)
    return AnnotatedCT.from_phantom(name or f"axilla-phantom-{seed}", axilla_ct_phantom(seed=seed, **settings))


def _save_pair(folder: Path, name: str, networks: Dict[str, object], config: AxillaryConfig, training_data: str,
               extra: Optional[Dict[str, dict]] = None, dtype: Optional[str] = None) -> Dict[str, Path]:
    from mednets.checkpoints import save_checkpoint

    from .training import checkpoint_metadata

    paths = {}
    for stage, network in networks.items():
        metadata = checkpoint_metadata(stage, config, network, training_data)
        if extra and stage in extra:
            metadata.extra["demo"] = extra[stage]
        path = folder / f"{name}-{stage}.safetensors"
        save_checkpoint(path, network, metadata, dtype=dtype)
        paths[stage] = path
    return paths


def make_test_detector(folder: Optional[Path] = None, untrained: bool = False):
    """A detector for tests: the bundled demo detector when its catalogue exists (and not ``untrained``), else a
    seeded UNTRAINED tiny pair (widths 2-4-8, stages at 8 mm / 4 mm, files ``untrained-test-{voi,ln}.safetensors``)
    written to ``folder`` (a temporary folder by default). Returns a DetectorSource."""
    import torch

    from . import build_model
    from .models import CATALOGUE, detector_from_path, find_detector

    if CATALOGUE.is_file() and not untrained:
        return find_detector(DEFAULT_MODEL)
    folder = Path(folder or tempfile.mkdtemp(prefix="axillary-test-detector-"))
    config = DEMO_CONFIG.replace(model_overrides={"widths": (2, 4, 8)}, stage1_spacing=8.0, stage2_spacing=4.0,
                                 inference_size=76, voi_min_voxels=1)
    torch.manual_seed(0)
    networks = {stage: build_model("unet3d_3level", widths=(2, 4, 8)) for stage in ("voi", "ln")}
    with torch.no_grad():  # an untrained VOI network that marks everything as VOI (the ReLU head's class 1 wins)
        networks["voi"].head[0].bias.copy_(torch.tensor([0.0, 3.0]))
    paths = _save_pair(folder, "untrained-test", networks, config, "untrained test networks")
    return detector_from_path(paths["ln"])


def train_demo_weights(output_dir: Path = WEIGHTS_DIR, voi_iterations: int = VOI_ITERATIONS,
                       ln_iterations: int = LN_ITERATIONS,
                       device: str = "cpu", log: Callable[[str], None] = print) -> Dict[str, object]:
    """Train both demo stages on phantoms and write fp16 weights, the catalogue entries and measured scores."""
    import shutil

    from mednets.fileio import sha256_file
    from mednets.sources import ModelRegistry, ModelSource

    from .models import CATALOGUE
    from .training import train_stage

    started = time.monotonic()
    train_items = [phantom_item(seed) for seed in TRAIN_SEEDS]
    validation_items = [phantom_item(seed) for seed in VALIDATION_SEEDS]
    run_dir = Path(tempfile.mkdtemp(prefix="axillary-demo-training-"))
    summary: Dict[str, object] = {}
    try:
        networks, extra = {}, {}
        for stage, iterations in (("voi", voi_iterations), ("ln", ln_iterations)):
            stage_started = time.monotonic()
            result, network = train_stage(stage, train_items, validation_items, DEMO_CONFIG, str(run_dir / stage),
                                          iterations=iterations, seed=0, device=device, log=log,
                                          training_changes=TRAINING_CHANGES[stage])
            networks[stage] = network
            extra[stage] = {"iterations": result.best_iteration, "best_validation_jaccard": result.best_metric,
                            "trained_iterations": result.iterations,
                            "training_minutes_cpu": round((time.monotonic() - stage_started) / 60, 1)}
        training_data = (f"{len(TRAIN_SEEDS)} synthetic contrast-CT axilla phantoms (mednets.phantoms.axilla_ct, "
                         f"seeds {TRAIN_SEEDS[0]}-{TRAIN_SEEDS[-1]}, {PHANTOM_GRID}); validation seeds "
                         f"{list(VALIDATION_SEEDS)}; synthetic data only.")
        paths = _save_pair(Path(output_dir), DEFAULT_MODEL, networks, DEMO_CONFIG, training_data, extra,
                           dtype="float16")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    registry = ModelRegistry.load(CATALOGUE) if CATALOGUE.is_file() else ModelRegistry()
    for stage, path in paths.items():
        registry.add(ModelSource(
            name=f"{DEFAULT_MODEL}-{stage}", path=str(path), sha256=sha256_file(path), license="Apache-2.0",
            module=MODULE_NAME, architecture="unet3d_3level",
            description=(f"Demo {'VOI' if stage == 'voi' else 'lymph-node'} stage (widths {_WIDTHS}), trained on "
                         "synthetic CT axilla phantoms only; not for clinical use")), replace=True)
    registry.save(CATALOGUE)
    summary = {"minutes": round((time.monotonic() - started) / 60, 1), "stages": extra,
               "bytes": {stage: Path(path).stat().st_size for stage, path in paths.items()},
               "training_data": training_data}
    summary["evaluation"] = evaluate_demo_detector(paths)
    write_model_card(Path(output_dir) / f"{DEFAULT_MODEL}.md", summary)
    log(json.dumps(summary))
    return summary


def package_demo_weights(voi_checkpoint: Path, ln_checkpoint: Path, output_dir: Path = WEIGHTS_DIR,
                         training_data: str = "", log: Callable[[str], None] = print) -> Dict[str, object]:
    """Bundle two trained stage checkpoints (e.g. a training run's ``voi/best.safetensors`` and
    ``ln/best.safetensors``) as the demo detector: fp16 copies, catalogue entries with SHA-256, evaluation on
    held-out phantoms and the model card."""
    from mednets.checkpoints import load_checkpoint, save_checkpoint
    from mednets.fileio import sha256_file
    from mednets.sources import ModelRegistry, ModelSource

    from .models import CATALOGUE

    paths, extra = {}, {}
    for stage, checkpoint in (("voi", voi_checkpoint), ("ln", ln_checkpoint)):
        state, metadata = load_checkpoint(checkpoint, expected_module=MODULE_NAME)
        if metadata.extra.get("stage") != stage:
            raise ValueError(f"'{checkpoint}' holds the {metadata.extra.get('stage')!r} stage, not {stage!r}")
        training = metadata.extra.get("training", {}) if isinstance(metadata.extra, dict) else {}
        extra[stage] = {"iterations": training.get("iteration"), "training_minutes_cpu": "see README",
                        "best_validation_jaccard": (training.get("metrics") or {}).get("jaccard", float("nan"))}
        if training_data:
            metadata.training_data = training_data
        metadata.extra["demo"] = extra[stage]
        path = Path(output_dir) / f"{DEFAULT_MODEL}-{stage}.safetensors"
        save_checkpoint(path, state, metadata, dtype="float16")
        paths[stage] = path
    registry = ModelRegistry.load(CATALOGUE) if CATALOGUE.is_file() else ModelRegistry()
    for stage, path in paths.items():
        registry.add(ModelSource(
            name=f"{DEFAULT_MODEL}-{stage}", path=str(path), sha256=sha256_file(path), license="Apache-2.0",
            module=MODULE_NAME, architecture="unet3d_3level",
            description=(f"Demo {'VOI' if stage == 'voi' else 'lymph-node'} stage (widths {_WIDTHS}), trained on "
                         "synthetic CT axilla phantoms only; not for clinical use")), replace=True)
    registry.save(CATALOGUE)
    summary: Dict[str, object] = {"stages": extra, "bytes": {s: p.stat().st_size for s, p in paths.items()}}
    summary["evaluation"] = evaluate_demo_detector(paths)
    write_model_card(Path(output_dir) / f"{DEFAULT_MODEL}.md", summary)
    log(json.dumps(summary, default=str))
    return summary


def evaluate_demo_detector(paths: Dict[str, Path], seeds: Sequence[int] = TEST_SEEDS) -> Dict[str, float]:
    """FROC (eq. 1) of a detector pair on held-out phantoms: sensitivity at 1, 2 and 6.7 FP/volume."""
    from .models import detector_from_path, load_detector
    from .pipeline import detect_lymph_nodes, evaluate_results, reference_instances

    detector = load_detector(detector_from_path(paths["ln"]), device="cpu")
    items = [phantom_item(seed) for seed in seeds]
    results = [detect_lymph_nodes(item.volume, detector.voi.network, detector.ln.network, detector.config)
               for item in items]
    references = [reference_instances(item.volume, item.centres_ras, item.diameters_mm) for item in items]
    metrics = evaluate_results([item.volume for item in items], results, references,
                               [item.diameters_mm for item in items], operating_points=(1.0, 2.0, 6.7))
    overall = metrics["all"]
    return {"volumes": len(items), "nodes": overall["targets"], "detected": overall["detected"],
            "false_positives": overall["false_positives"],
            **{f"sensitivity_at_{p:g}_fp": overall["sensitivity_at"][p] for p in (1.0, 2.0, 6.7)}}


def write_model_card(path: Path, summary: Dict[str, object]) -> Path:
    """The demo detector's model card (what it was trained on, how long, measured scores, not for clinical use)."""
    stages = summary["stages"]
    evaluation = summary.get("evaluation", {})
    lines = [
        f"# {DEFAULT_MODEL}: AxillaryLNDetect demo detector (two stages)",
        "",
        "**Demo weights trained on synthetic phantoms only. NOT for clinical use.**",
        "",
        f"* Files: `{DEFAULT_MODEL}-voi.safetensors` (VOI stage) and `{DEFAULT_MODEL}-ln.safetensors` (lymph-node "
        "stage), float16 safetensors with mednets metadata (SHA-256 in `AxillaryLNDetectModels.json`).",
        f"* Network: `unet3d_3level` (Altun et al., Fig. 3) with widths {DEMO_CONFIG.model_overrides.get('widths')} "
        f"instead of the paper's (80, 160, 320); {DEMO_CONFIG.input_size}^3 training patches; stage 1 at "
        f"{DEMO_CONFIG.stage1_spacing:g} mm, stage 2 at {DEMO_CONFIG.stage2_spacing:g} mm (paper: 3 mm / 1 mm).",
        f"* Training data: {summary.get('training_data') or 'synthetic contrast-CT axilla phantoms'} "
        "Recipe of the paper (targets from centre + diameter, Dice / weighted "
        "cross-entropy with shell masking and size-normalised weights, 50/50 patches, Adam 1e-3, plateau halving, "
        "best by Jaccard, augmentation).",
        f"* Training (CPU, 2 shared cores): best VOI checkpoint at iteration {stages['voi']['iterations']} "
        f"of {stages['voi'].get('trained_iterations', '?')} (validation Jaccard "
        f"{float(stages['voi']['best_validation_jaccard']):.3f}); best lymph-node checkpoint at "
        f"iteration {stages['ln']['iterations']} of {stages['ln'].get('trained_iterations', '?')} (validation Jaccard "
        f"{float(stages['ln']['best_validation_jaccard']):.3f}); training time: "
        f"{stages['voi']['training_minutes_cpu']} / {stages['ln']['training_minutes_cpu']} min.",
        f"* Held-out phantoms (seeds {list(TEST_SEEDS)}), eq. 1 hits: {evaluation.get('detected')} of "
        f"{evaluation.get('nodes')} nodes detected, {evaluation.get('false_positives')} false positives in "
        f"{evaluation.get('volumes')} volumes; sensitivity {evaluation.get('sensitivity_at_1_fp', float('nan')):.2f} "
        f"at 1 FP/volume, {evaluation.get('sensitivity_at_2_fp', float('nan')):.2f} at 2, "
        f"{evaluation.get('sensitivity_at_6.7_fp', float('nan')):.2f} at 6.7.",
        f"* Made by `python -m AxillaryLNDetectLib.demo --train-weights --voi-iterations "
        f"{stages['voi'].get('trained_iterations', VOI_ITERATIONS)} --ln-iterations "
        f"{stages['ln'].get('trained_iterations', LN_ITERATIONS)}` (AxillaryLNDetectLib/demo.py).",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def run_demo(output_dir: Path, progress=None):
    """Detect the nodes of a held-out phantom through the module Logic with the demo detector, evaluate against its
    annotations (FROC table + plot), write the files; returns a DemoResult."""
    import slicer
    from mednets import mrml
    from mednets.demo import DemoPanel, DemoResult, overlay_labels
    from mednets.image import Volume
    from mednets.phantoms.axilla_ct import axilla_ct_phantom

    import AxillaryLNDetect  # the scripted module file (its folder is on sys.path when loaded)

    if not any(WEIGHTS_DIR.glob("axillary-demo-*.safetensors")):
        from mednets.demo import DemoUnavailable

        raise DemoUnavailable("the AxillaryLNDetect demo weights are not built yet (no trained pair detects the nodes "
                              "of the phantoms so far; see AxillaryLNDetect/README.md)")
    started = time.monotonic()
    output_dir = Path(output_dir)
    case = axilla_ct_phantom(seed=DEMO_SEED, **PHANTOM_GRID)
    volume = Volume(case.image, spacing=case.spacing, directions_ras=case.extra["directions_ras"])
    slicer.mrmlScene.Clear()
    volume_node = mrml.new_volume_node(volume, slicer.mrmlScene, "CT axilla phantom")
    reference = mrml.new_point_list_node(volume.kji_to_ras(case.extra["centres_kji"]),
                                         descriptions=[f"diameter={d:.1f}" for d in case.extra["short_axis_mm"]],
                                         scene=slicer.mrmlScene, name="reference lymph nodes")
    logic = AxillaryLNDetect.AxillaryLNDetectLogic()
    points, segmentation = logic.run(volume_node, device="auto", progress=progress)
    metrics, table, _chart = logic.evaluate(volume_node, points, referencePoints=reference)
    seg_path = mrml.save_node(segmentation, output_dir / "axilla_phantom_detections.seg.nrrd")
    csv_path = mrml.save_node(table, output_dir / "axilla_phantom_froc.csv")
    points_path = mrml.save_node(points, output_dir / "axilla_phantom_lymph_nodes.mrk.json")
    result = logic._results[points.GetID()]
    image = volume.array
    k = int(round(case.extra["centres_kji"][int(np.argmax(case.extra["short_axis_mm"]))][0])) \
        if len(case.extra["short_axis_mm"]) else image.shape[0] // 2
    axial = lambda array: array[k]  # noqa: E731
    labels = np.where(result.candidate_labels > 0, 1, np.where(result.voi_mask, 2, 0))
    colors = {1: (0.9, 0.85, 0.2), 2: (0.3, 0.6, 0.95), 3: (0.9, 0.2, 0.2)}
    window = (-300.0, 400.0)
    panels = [DemoPanel("CT axilla phantom (axial)", overlay_labels(axial(image), None, window=window), 1.0),
              DemoPanel("detections (yellow), VOI (blue)", overlay_labels(axial(image), axial(labels), colors, window),
                        1.0),
              DemoPanel("reference nodes (outline)", overlay_labels(axial(image), np.where(axial(case.labels) > 0, 3, 0),
                                                                    colors, window, outline_only=True), 1.0)]
    overall = metrics["all"]
    values = {"sensitivity @2 FP/vol": overall["sensitivity_at"][2.0],
              "sensitivity @6.7 FP/vol": overall["sensitivity_at"][6.7],
              "lymph nodes": float(overall["targets"]), "detected": float(overall["detected"])}
    return DemoResult(MODULE_NAME, "held-out CT axilla phantom through AxillaryLNDetectLogic.run + evaluate (FROC), "
                      "demo detector", values, panels, [seg_path, csv_path, points_path], time.monotonic() - started)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m AxillaryLNDetectLib.demo",
                                     description="Train the AxillaryLNDetect demo weights on CT axilla phantoms.")
    parser.add_argument("--train-weights", action="store_true", help="train and write both demo stages")
    parser.add_argument("--voi-iterations", type=int, default=VOI_ITERATIONS)
    parser.add_argument("--ln-iterations", type=int, default=LN_ITERATIONS)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not args.train_weights:
        parser.print_help()
        return 0
    train_demo_weights(voi_iterations=args.voi_iterations, ln_iterations=args.ln_iterations, device=args.device)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
