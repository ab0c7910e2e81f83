"""AxillaryLNDetect settings as data: the paper's configuration and a small CPU/demo configuration.

Numbers from Altun et al. (SPIE Medical Imaging), sections 2.1-2.4 and 3.2 unless marked "ours":

* stage 1 (VOI localisation): CT resampled to 3 mm isotropic (Lanczos-3); targets: 5 cm spheres around the LN
  centres, air (< -600 HU) and bone (> 300 HU) removed, opening with an 11^3 spherical kernel; Dice loss;
* stage 2 (LN detection): CT at 1 mm isotropic (Lanczos-3) inside the VOI; targets: spheres from centre and
  short-axis diameter, shell masking with an 11^3 octagon kernel, size-normalised weights, weighted categorical
  cross-entropy; optional initialisation from the VOI network (dropout 0.5 instead of 0.25 then);
* both: the 3-level valid U-Net, patches 72^3 in / 32^3 out, batches of 50 % foreground and 50 % background patches,
  Adam (lr 1e-3), validation every 100 iterations, learning rate halved after 10 validations without improvement,
  stop after 50, best model by Jaccard; augmentation: axial rotation N(0, 5 deg), zoom U(-0.2, 0.2) on all axes,
  sagittal flip, Gaussian noise N(0, 5 HU); thresholds 0.5 (Table 1) for the VOI and the LN candidates.
* ours (the paper does not say): intensity normalisation ``clip(HU, -1000, 1000) / 500``; inference windows of 116^3
  (76^3 output tiles) placed edge to edge without overlap (valid convolutions: every output voxel already sees its
  full receptive field, so there is no border effect to blend away); a 10 mm margin around each VOI component for the
  stage-2 crop; batch size 2.

Spacings are in mm, array-axis order (K, J, I); isotropic here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Tuple

__all__ = ["MODULE_NAME", "DEFAULT_MODEL", "AxillaryConfig", "CONFIGS", "get_config", "config_from_dict",
           "HU_CLIP", "HU_SCALE", "normalise_hu", "SEGMENT_VOI", "SEGMENT_LN"]

MODULE_NAME = "AxillaryLNDetect"
#: Name of the bundled demo detector (a pair of checkpoints, one per stage) in the model catalogue.
DEFAULT_MODEL = "axillary-demo"

#: Intensity normalisation (ours): clip to [-1000, 1000] HU, divide by 500.
HU_CLIP: Tuple[float, float] = (-1000.0, 1000.0)
HU_SCALE = 500.0

#: Segment names and colours of the outputs (lymph node: SNOMED CT 59441001 "Lymph node structure").
SEGMENT_LN = ("lymph node", (0.90, 0.85, 0.20))
SEGMENT_VOI = ("axillary VOI", (0.30, 0.60, 0.95))


def normalise_hu(array):
    """``clip(HU, -1000, 1000) / 500`` as float32 (numpy or torch)."""
    import numpy as np

    try:
        import torch
        if isinstance(array, torch.Tensor):
            return array.clamp(*HU_CLIP) / HU_SCALE
    except ImportError:  # pragma: no cover - torch-free import path
        pass
    return (np.clip(np.asarray(array, dtype=np.float32), *HU_CLIP) / HU_SCALE).astype(np.float32)


@dataclass(frozen=True)
class AxillaryConfig:
    """The two-stage detector: geometry, thresholds, mask generation and training recipe.

    Attributes:
        name / title: key and human-readable name.
        stage1_spacing / stage2_spacing: isotropic voxel size (mm) of the VOI and LN networks.
        input_size: training patch (network input) size (72 -> 32 output voxels).
        inference_size: sliding-window input size at inference (ours: the network is fully convolutional, so larger
            windows (116 -> 76) cut the share of recomputed borders; any 44 + 4k works).
        model_overrides: arguments of ``build_model("unet3d_3level")`` (widths, dropout).
        overlap / blend: sliding-window settings (ours).
        voi_threshold / ln_threshold: probability thresholds (0.5).
        voi_margin_mm: margin around each VOI component for the stage-2 crop (ours).
        voi_min_voxels: VOI components smaller than this (stage-1 voxels) are ignored.
        candidate_min_voxels: LN candidates smaller than this (stage-2 voxels) are dropped (1: keep all).
        voi_radius_mm / air_below_hu / bone_above_hu / voi_opening_size: VOI target generation (sec. 2.2).
        shell_size / size_normalised: stage-2 weights (sec. 2.3).
        dropout_scratch / dropout_finetune: 0.25 from random initialisation, 0.5 when starting from the VOI network.
        training: recipe as data (see module docstring); ``augmentation`` inside it.
    """

    name: str = "paper"
    title: str = "Altun et al. (paper configuration)"
    stage1_spacing: float = 3.0
    stage2_spacing: float = 1.0
    input_size: int = 72
    inference_size: int = 116
    model_overrides: Dict[str, Any] = field(default_factory=dict)
    overlap: float = 0.0
    blend: str = "constant"
    voi_threshold: float = 0.5
    ln_threshold: float = 0.5
    voi_margin_mm: float = 10.0
    voi_min_voxels: int = 8
    candidate_min_voxels: int = 1
    voi_radius_mm: float = 50.0
    air_below_hu: float = -600.0
    bone_above_hu: float = 300.0
    voi_opening_size: int = 11
    shell_size: int = 11
    size_normalised: bool = True
    dropout_scratch: float = 0.25
    dropout_finetune: float = 0.5
    training: Dict[str, Any] = field(default_factory=lambda: {
        "iterations": 100000, "batch_size": 2, "foreground_fraction": 0.5,
        "optimizer": {"name": "adam", "lr": 1e-3},
        "schedule": {"name": "plateau", "factor": 0.5, "patience": 10},
        "validate_every": 100, "early_stopping_patience": 50, "monitor": "jaccard", "mode": "max",
        "augmentation": {"rotation_sd_deg": 5.0, "zoom_range": 0.2, "flip_sagittal": True, "noise_sd_hu": 5.0},
    })

    @property
    def output_size(self) -> int:
        return int(self.input_size) - 40

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "AxillaryConfig":
        return dataclasses.replace(self, **changes)


#: The paper's configuration (full-size network), a small CPU configuration (ours: 4 mm / 2 mm, widths 8-16-32,
#: kernels scaled to the coarser voxels) and the phantom demo configuration of the demo weights and the learning test
#: (ours: stage 1 at 8 mm and stage 2 at 2 mm on 2 mm phantoms, widths 8-16-32, 52^3 patches (12^3 outputs), kernels
#: scaled to the coarser voxels (opening 3^3 at 8 mm, shell 5^3 at 2 mm, about the paper's 11 mm), the paper's
#: thresholds 0.5; 4 mm / widths 4-8-16 did not learn: a 10 mm node is 2-3 voxels there, see the README).
CONFIGS: Dict[str, AxillaryConfig] = {
    "paper": AxillaryConfig(),
    "cpu_small": AxillaryConfig(
        name="cpu_small", title="Small CPU configuration (phantom demo)", stage1_spacing=4.0, stage2_spacing=2.0,
        input_size=60, model_overrides={"widths": (8, 16, 32)}, voi_opening_size=7, shell_size=5, voi_min_voxels=4,
        training={"iterations": 400, "batch_size": 4, "foreground_fraction": 0.5,
                  "optimizer": {"name": "adam", "lr": 1e-3},
                  "schedule": {"name": "plateau", "factor": 0.5, "patience": 10},
                  "validate_every": 50, "early_stopping_patience": 50, "monitor": "jaccard", "mode": "max",
                  "augmentation": {"rotation_sd_deg": 5.0, "zoom_range": 0.2, "flip_sagittal": True,
                                   "noise_sd_hu": 5.0}}),
    "phantom_demo": AxillaryConfig(
        name="phantom_demo", title="Phantom demo (CPU, 2 mm phantoms)", stage1_spacing=8.0, stage2_spacing=2.0,
        input_size=52, inference_size=84, model_overrides={"widths": (8, 16, 32)}, voi_opening_size=3, shell_size=5,
        voi_min_voxels=1, voi_threshold=0.5, ln_threshold=0.5,
        training={"iterations": 1800, "batch_size": 4, "foreground_fraction": 0.5,
                  "optimizer": {"name": "adam", "lr": 1e-3},
                  "schedule": {"name": "plateau", "factor": 0.5, "patience": 10},
                  "validate_every": 300, "early_stopping_patience": 50, "monitor": "jaccard", "mode": "max",
                  "augmentation": {"rotation_sd_deg": 5.0, "zoom_range": 0.2, "flip_sagittal": True,
                                   "noise_sd_hu": 5.0}}),
}


def get_config(name: str = "paper") -> AxillaryConfig:
    try:
        return CONFIGS[str(name)]
    except KeyError:
        raise ValueError(f"unknown configuration {name!r}; choose one of {sorted(CONFIGS)}") from None


def config_from_dict(data: Mapping[str, Any]) -> AxillaryConfig:
    """Rebuild a configuration stored in checkpoint metadata (unknown keys are ignored, missing ones default)."""
    names = {f.name for f in dataclasses.fields(AxillaryConfig)}
    values = {key: value for key, value in dict(data).items() if key in names}
    if "model_overrides" in values and "widths" in values["model_overrides"]:
        overrides = dict(values["model_overrides"])
        overrides["widths"] = tuple(overrides["widths"])
        values["model_overrides"] = overrides
    return AxillaryConfig(**values)
