"""How the robustness suite drives each module: a small valid input, its bad variants, the Logic call and the CLI call.

Everything module-specific of ``test_robustness.py`` lives here, so the test bodies are the same for all five modules.
Valid inputs are tiny (a few thousand voxels) and the weights are the module's bundled demo weights or
small untrained checkpoints written here: the bad-input cases fail before
inference, and the few cases that must run inference (valid input, oblique grid, cancel) stay fast.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["OrganCombo", "AxillaryLNDetect", "AneurysmSeg", "AdaptiveRecontour", "NucleiMaskylo"]


def module_dir(name: str) -> Path:
    return ROOT / name


def ensure_on_path(name: str) -> None:
    for folder in (module_dir(name), module_dir(name) / "Testing" / "Python"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


def oblique_directions() -> np.ndarray:
    """Rotation of 30 degrees about the S axis then 20 degrees about R (columns: RAS directions of i, j, k)."""
    a, b = np.radians(30.0), np.radians(20.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


@dataclass
class Adapter:
    """One module as the suite sees it."""

    name: str
    #: 3 for volumes, 2 for single-slice images; 1 (greyscale) or 3 (RGB) components.
    spatial_dims: int = 3
    channels: int = 1
    #: Cases the module does not apply to, with the reason shown in the table.
    not_applicable: Dict[str, str] = field(default_factory=dict)

    @property
    def lib(self) -> str:
        return f"{self.name}Lib"

    # --------------------------------------------------------------------------------------------------- inputs
    def valid_array(self) -> np.ndarray:
        rng = np.random.default_rng(0)
        if self.channels == 3:  # an H&E-like RGB tile, one slice
            image = rng.integers(120, 230, size=(1, 64, 64, 3)).astype(np.uint8)
            image[0, 20:36, 20:36] = (90, 40, 140)  # a purple "nucleus"
            return image
        if self.name == "OrganCombo":  # PET-like uptake (>= 0)
            image = rng.gamma(2.0, 0.5, size=(32, 32, 32)).astype(np.float32)
            image[8:16, 8:16, 8:16] += 8.0
            return image
        shape = (32, 48, 48) if self.name == "AxillaryLNDetect" else (32, 32, 32)
        image = rng.normal(0.0, 40.0, size=shape).astype(np.float32)  # soft tissue in HU
        image[:, :, :4] = -1000.0  # air
        image[10:20, 10:20, 10:20] = 300.0  # contrast / bone
        return image

    def spacing(self) -> Sequence[float]:
        return (1.0, 1.0, 1.0) if self.channels == 3 else (4.0, 4.0, 4.0) if self.name != "AneurysmSeg" else (
            1.0, 1.0, 1.0)

    # ---------------------------------------------------------------------------------------------------- logic
    def logic(self, slicer_runtime) -> Any:
        module = slicer_runtime.load_module(module_dir(self.name) / f"{self.name}.py")
        ensure_on_path(self.name)
        return getattr(module, f"{self.name}Logic")()

    def context_nodes(self, scene) -> Dict[str, Any]:
        """Nodes the module needs besides the image under test (AdaptiveRecontour: the planning CT and contours)."""
        if self.name != "AdaptiveRecontour":
            return {}
        from mednets import mrml
        from mednets.image import Volume

        from AdaptiveRecontour import SEGMENT_NAMES

        planning = mrml.new_volume_node(Volume(self.valid_array(), spacing=self.spacing()), scene, "Planning CT")
        labels = np.zeros((32, 32, 32), np.uint8)
        labels[10:20, 10:20, 10:20] = 1
        labels[4:8, 12:18, 12:18] = 2
        segments = [(1, SEGMENT_NAMES[0], (1.0, 0.0, 0.0)), (2, SEGMENT_NAMES[1], (0.0, 1.0, 0.0))]
        contours = mrml.new_segmentation_node(labels, planning, segments, scene=scene, name="Planning contours")
        return {"planning": planning, "contours": contours}

    def run(self, logic, inputNode, context: Dict[str, Any], model: Any, cancel: Optional[Callable] = None):
        """The Logic's blocking run on CPU; returns the output nodes."""
        if self.name == "AdaptiveRecontour":
            outputs = logic.run(context["planning"], context["contours"], inputNode, model=model, device="cpu",
                                cancel=cancel)
        else:
            outputs = logic.run(inputNode, model=model, device="cpu", cancel=cancel)
        if isinstance(outputs, dict):
            return [node for node in outputs.values() if node is not None]
        if isinstance(outputs, (tuple, list)):
            return [node for node in outputs if node is not None]
        return [outputs]

    # ------------------------------------------------------------------------------------------------------ CLI
    def cli_main(self) -> Callable[[List[str]], int]:
        ensure_on_path(self.name)
        return importlib.import_module(f"{self.lib}.cli").main

    def cli_input_name(self) -> str:
        return "input.tif" if self.channels == 3 else "input.nrrd"

    def cli_output_name(self) -> str:
        return {"AxillaryLNDetect": "detections.json", "NucleiMaskylo": "labels.tif"}.get(self.name, "labels.nrrd")

    def write_context_files(self, folder: Path) -> Dict[str, Path]:
        if self.name != "AdaptiveRecontour":
            return {}
        from mednets.image import Volume
        from mednets.io import write_volume

        planning = write_volume(Volume(self.valid_array(), spacing=self.spacing()), folder / "planning.nrrd")
        labels = np.zeros((32, 32, 32), np.uint8)
        labels[10:20, 10:20, 10:20] = 1
        label = write_volume(Volume(labels, spacing=self.spacing()), folder / "planning_label.nrrd")
        return {"planning": planning, "label": label}

    def cli_argv(self, inputPath: Path, outputPath: Path, context: Dict[str, Path], model: Optional[str]) -> List[str]:
        if self.name == "AdaptiveRecontour":
            argv = ["predict", "--planning", str(context["planning"]), "--planning-label", str(context["label"]),
                    "--daily", str(inputPath), "--output", str(outputPath), "--device", "cpu"]
        else:
            argv = ["predict", "--input", str(inputPath), "--output", str(outputPath), "--device", "cpu"]
        if model is not None:
            argv += ["--model", str(model)]
        return argv

    # -------------------------------------------------------------------------------------------------- weights
    def weights(self, folder: Path) -> Path:
        """A valid weights file of this module (the file the CLI's and Logic's ``model`` accept)."""
        ensure_on_path(self.name)
        folder.mkdir(parents=True, exist_ok=True)
        if self.name == "OrganCombo":
            from OrganComboWidgetTest import writeSmallCheckpoint
            return writeSmallCheckpoint(folder / "organcombo-tiny.safetensors")
        if self.name == "AneurysmSeg":
            from AneurysmSegWidgetTest import writeSmallCheckpoint
            return writeSmallCheckpoint(folder / "aneurysmseg-tiny.safetensors")
        if self.name == "NucleiMaskylo":
            from NucleiMaskyloWidgetTest import writeSmallCheckpoint
            return writeSmallCheckpoint(folder / "nucleimaskylo-tiny.safetensors")
        if self.name == "AxillaryLNDetect":
            from AxillaryLNDetectLib.demo import make_test_detector
            detector = make_test_detector(folder)
            for stage in ("voi", "ln"):  # a private copy of the pair: the cases damage one file of it
                shutil.copyfile(getattr(detector, stage).path, folder / f"tiny-{stage}.safetensors")
            return folder / "tiny-ln.safetensors"
        if self.name == "AdaptiveRecontour":
            import torch

            from AdaptiveRecontourLib import build_model
            from AdaptiveRecontourLib.configs import get_config
            from AdaptiveRecontourLib.training import checkpoint_metadata
            from mednets.checkpoints import save_checkpoint

            config = get_config("cpu_small", filters=(4, 6, 8), spacing_mm=3.0)
            torch.manual_seed(0)
            network = build_model(config.model, **config.architecture_config())
            path = folder / "adaptiverecontour-tiny.safetensors"
            save_checkpoint(path, network, checkpoint_metadata(config, "untrained test network"))
            return path
        raise KeyError(self.name)

    def catalogue_with_wrong_checksums(self, folder: Path, weights: Path) -> Path:
        """A copy of the bundled catalogue (or a one-entry catalogue of ``weights``) whose SHA-256s are all wrong."""
        models = importlib.import_module(f"{self.lib}.models")
        default = getattr(models, "DEFAULT_MODEL", None) or importlib.import_module(f"{self.lib}.configs").DEFAULT_MODEL
        folder.mkdir(parents=True, exist_ok=True)
        if Path(models.CATALOGUE).is_file():
            data = json.loads(Path(models.CATALOGUE).read_text())
            for source in data["sources"]:
                shutil.copyfile(Path(models.CATALOGUE).parent / source["path"], folder / source["path"])
                source["sha256"] = "0" * 64
        else:
            shutil.copyfile(weights, folder / weights.name)
            data = {"format_version": 1, "sources": [{"name": default, "path": weights.name,
                                                      "sha256": "0" * 64, "module": self.name}]}
        path = folder / Path(models.CATALOGUE).name
        path.write_text(json.dumps(data))
        return path

    def use_catalogue(self, monkeypatch, path: Path) -> None:
        models = importlib.import_module(f"{self.lib}.models")
        monkeypatch.setattr(models, "CATALOGUE", path)
        if hasattr(models, "MODELS"):
            monkeypatch.setattr(models.MODELS, "catalogue_path", path)

    # ------------------------------------------------------------------------------------------------- training
    def add_training_cases(self, logic, scene, folder: Path) -> None:
        """Two tiny labelled cases (one for AdaptiveRecontour: a planning/daily pair), written to ``folder`` by the
        module's own 'Add current case to training set' (``Logic.addCaseToTrainingSet``) from nodes of ``scene``."""
        from mednets import mrml
        from mednets.image import Volume
        from mednets.phantoms import KJI_LPS_DIRECTIONS

        if self.name == "OrganCombo":
            from OrganComboLib.configs import get_config

            names = get_config("pet").class_names
            for seed in range(2):
                rng = np.random.default_rng(seed)
                image = rng.gamma(2.0, 0.5, size=(16, 16, 16)).astype(np.float32)
                labels = np.zeros((16, 16, 16), np.uint8)
                for organ in range(1, len(names) + 1):
                    k, j, i = rng.integers(2, 12, size=3)
                    labels[k:k + 3, j:j + 3, i:i + 3] = organ
                image += 4.0 * (labels > 0)
                node = mrml.new_volume_node(Volume(image, spacing=(4.0, 4.0, 4.0)), scene, f"PET {seed}")
                segments = [(value, name, (1.0, 0.0, 0.0)) for value, name in enumerate(names, start=1)]
                segmentation = mrml.new_segmentation_node(labels, node, segments, scene=scene, name=f"Organs {seed}")
                logic.addCaseToTrainingSet(node, segmentation, folder)
        elif self.name == "AxillaryLNDetect":
            from mednets.phantoms.axilla_ct import axilla_ct_phantom

            for seed in (21, 22):
                case = axilla_ct_phantom(seed=seed, shape=(32, 48, 96), spacing=(4.0, 4.0, 4.0),
                                         node_diameter_mm=(8.0, 20.0))
                volume = Volume(case.image, spacing=case.spacing, directions_ras=case.extra["directions_ras"])
                node = mrml.new_volume_node(volume, scene, f"Axilla {seed}")
                points = mrml.new_point_list_node(volume.kji_to_ras(case.extra["centres_kji"]),
                                                  descriptions=[f"diameter={d:.1f}" for d in
                                                                case.extra["short_axis_mm"]],
                                                  scene=scene, name=f"Reference nodes {seed}")
                logic.addCaseToTrainingSet(node, points, folder)
        elif self.name == "AneurysmSeg":
            from AneurysmSegLib.configs import ANEURYSM
            from mednets.phantoms.cta_head import cta_head_phantom
            from mednets.terminology import segment_specs

            for seed in (1, 2):
                phantom = cta_head_phantom(shape=(32, 40, 40), spacing=(2.0, 2.0, 2.0), seed=seed,
                                           aneurysm_diameter_mm=(6.0, 10.0))
                volume = Volume(phantom.image, spacing=phantom.spacing, directions_ras=KJI_LPS_DIRECTIONS)
                node = mrml.new_volume_node(volume, scene, f"CTA {seed}")
                segmentation = mrml.new_segmentation_node((phantom.labels == 1).astype(np.uint8), node,
                                                          segment_specs([ANEURYSM]), scene=scene,
                                                          name=f"Aneurysm {seed}")
                logic.addCaseToTrainingSet(node, segmentation, folder)
        elif self.name == "NucleiMaskylo":
            from mednets.phantoms.he_nuclei import he_nuclei_phantom

            for seed in (60, 61):
                phantom = he_nuclei_phantom(seed, shape=(64, 64))
                node = mrml.new_volume_node(Volume(phantom.image[None]), scene, f"Tile {seed}", node_class="vector")
                labels = mrml.new_volume_node(phantom.labels[None].astype(np.int32), scene, f"Nuclei {seed}",
                                              node_class="label", reference_node=node)
                logic.addCaseToTrainingSet(node, labels, folder)
        elif self.name == "AdaptiveRecontour":
            testClass = sys.modules["AdaptiveRecontour"].AdaptiveRecontourTest
            planning, planningSegmentation, daily, dailySegmentation = testClass.phantomNodes(seed=904)
            logic.addCaseToTrainingSet(planning, planningSegmentation, daily, dailySegmentation, folder)
        else:
            raise KeyError(self.name)

    def train(self, logic, folder: Path, output: Path, cancel: Optional[Callable] = None) -> Any:
        """The Logic's blocking training on CPU with the tiny settings of the module's own training tests."""
        if self.name == "OrganCombo":
            changes = dict(patch_size=(16, 16, 16), window_size=(16, 16, 16), window_stride=(16, 16, 16),
                           patches_per_organ=1, background_patches=1, batch_size=1)
            return logic.train(folder, output, iterations=4, validationFraction=0.5, device="cpu",
                               configChanges=changes, modelOverrides={"base_channels": 2}, cancel=cancel)
        if self.name == "AxillaryLNDetect":
            changes = {"model_overrides": {"widths": (2, 4, 8)}, "input_size": 48, "inference_size": 64,
                       "stage1_spacing": 8.0, "stage2_spacing": 4.0, "voi_opening_size": 3, "shell_size": 3,
                       "training": {"iterations": 2, "batch_size": 2, "foreground_fraction": 0.5,
                                    "optimizer": {"name": "adam", "lr": 1e-3},
                                    "schedule": {"name": "plateau", "factor": 0.5, "patience": 10},
                                    "validate_every": 2, "early_stopping_patience": 50, "monitor": "jaccard",
                                    "mode": "max", "augmentation": {"rotation_sd_deg": 5.0, "zoom_range": 0.2,
                                                                    "flip_sagittal": True, "noise_sd_hu": 5.0}}}
            return logic.train(folder, output, iterations=2, device="cpu", configChanges=changes, cancel=cancel)
        if self.name == "AneurysmSeg":
            changes = dict(model_overrides={"widths": (4, 8, 16, 32), "global_channels": 8}, patch_size=(16, 16, 16),
                           global_size=(16, 16, 16), window_overlap=(8, 8, 8), jitter=4, batch_size=2)
            return logic.train(folder, output, iterations=4, validateEvery=2, device="cpu", configChanges=changes,
                               cancel=cancel)
        if self.name == "NucleiMaskylo":
            return logic.train(folder, output, iterations=2, device="cpu", cancel=cancel,
                               recipe={"micro_batch": 2, "batch_size": 2, "tile_size": 64})
        if self.name == "AdaptiveRecontour":
            return logic.train(folder, output, iterations=2, device="cpu", cancel=cancel, filters=(4, 6, 8),
                               patch_size=48)
        raise KeyError(self.name)

    def limit_voxels(self, monkeypatch, limit: int) -> None:
        """Lower the module's largest accepted input (instead of allocating gigabytes)."""
        inputs = importlib.import_module(f"{self.lib}.inputs")
        monkeypatch.setattr(inputs, "MAX_VOXELS", limit)


ADAPTERS = {
    "OrganCombo": Adapter("OrganCombo"),
    "AxillaryLNDetect": Adapter("AxillaryLNDetect"),
    "AneurysmSeg": Adapter("AneurysmSeg"),
    "AdaptiveRecontour": Adapter("AdaptiveRecontour"),
    "NucleiMaskylo": Adapter("NucleiMaskylo", spatial_dims=2, channels=3, not_applicable={
        "zero_spacing": "2D pixels; the pixel size is an optional separate setting (--pixel-size-um)",
        "oblique": "2D microscopy image: no patient orientation",
        "too_large": "whole-slide images are read and segmented tile by tile: no size limit by design",
    }),
}
