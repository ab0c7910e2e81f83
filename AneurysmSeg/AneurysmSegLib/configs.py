"""AneurysmSeg configurations as data: the paper's recipe (default), the official code's training config, and a
small CPU configuration for the phantom demo and the learning test.

Paper (Bo et al., Patterns 2021, Supplemental Experimental Procedures "Input Transformation" and "Training Details"):
three HU windows [0, 100], [100, 200], [200, 800] scaled to 0-1; 96^3 patches; global image = whole CTA resized to
96^3 keeping the aspect ratio (zero padding); sliding window with an overlap of 64 voxels; training patches half
positive (centre within 38 voxels of an aneurysm centre, random flips and rotations) and half negative (random
centres); Adam, learning rate 2e-4 decayed x0.95 every 10,000 steps, batch 3, about 200k steps; total loss 0.1 global
+ 1.0 local; local loss 0.8 exp-log Dice + 0.2 pyramid-weighted CE, both gamma 0.3; pyramid weights 3.0-20.0 (code:
computed for patches with at most 400 aneurysm voxels, fixed 11.5 above), negative voxels 1.0; probability threshold
0.5.

Where the official code (MeteorsHub/GLIA-Net configs/GLIA-Net.yaml, data_loader.py) differs, the paper is the default
and the official value is available as :data:`OFFICIAL_TRAINING` (see README, "Official code vs paper").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from mednets.terminology import MORPHOLOGICALLY_ALTERED_STRUCTURE, Code, SegmentClass

__all__ = ["MODULE_NAME", "DEFAULT_MODEL", "ANEURYSM", "AneurysmSegConfig", "PAPER", "OFFICIAL_TRAINING", "SMALL",
           "CONFIGS", "get_config", "config_from_dict", "scaled_overlap"]

MODULE_NAME = "AneurysmSeg"
DEFAULT_MODEL = "aneurysmseg-cta-demo"

#: The output segment: SNOMED CT "Aneurysm (morphologic abnormality)" in the morphologically altered category.
ANEURYSM = SegmentClass("aneurysm", (0.93, 0.18, 0.16), MORPHOLOGICALLY_ALTERED_STRUCTURE,
                        Code("SCT", "85659009", "Aneurysm"))


@dataclass(frozen=True)
class AneurysmSegConfig:
    """One GLIA-Net configuration (all sizes in voxels, array order K, J, I).

    Attributes:
        name, title: key and display name.
        model_overrides: arguments for ``build_model("glia_net", ...)`` (e.g. smaller widths for demo weights).
        hu_windows: HU intervals, one input channel each, scaled to [0, 1].
        patch_size: local patch (= inference window) size.
        window_overlap: sliding-window overlap in voxels (paper 64; official inference config 48).
        global_size: size of the resized global image.
        threshold: probability threshold of the segmentation.
        min_target_voxels: predicted components smaller than this are dropped from the per-target table and the
            segmentation (0 keeps everything; the official code ignores regions of <= 5 voxels when it looks for
            aneurysm centres).
        global_weight, local_weight: total loss = global_weight * CE(global) + local_weight * local.
        dice_weight, ce_weight, dice_gamma, ce_gamma: local loss weights and exponents.
        dice_activation: "softmax" (paper: the network's probability) or "sigmoid" (official: sigmoid of the
            aneurysm logit).
        pyramid_threshold, pyramid_range, negative_weight: pyramid-weighted CE settings.
        global_label_min_voxels: a patch is "positive" for the global head when it holds more than this many
            aneurysm voxels (official: > 3).
        optimizer: Adam settings (lr, weight_decay); lr_step, lr_gamma: StepLR schedule.
        batch_size, positive_fraction: patches per step and share of positive patches (1:1).
        jitter: maximum offset (voxels) of positive patch centres from the aneurysm centre (paper 38).
        flips, rotations: augmentations (random axis flips; random 90-degree rotations in-plane).
        noise_hu: standard deviation of Gaussian noise added to training patches (official: 1 HU).
        steps: default number of optimisation steps.
    """

    name: str = "paper"
    title: str = "GLIA-Net (paper configuration)"
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    hu_windows: Tuple[Tuple[float, float], ...] = ((0.0, 100.0), (100.0, 200.0), (200.0, 800.0))
    patch_size: Tuple[int, int, int] = (96, 96, 96)
    window_overlap: Tuple[int, int, int] = (64, 64, 64)
    global_size: Tuple[int, int, int] = (96, 96, 96)
    threshold: float = 0.5
    min_target_voxels: int = 0
    global_weight: float = 0.1
    local_weight: float = 1.0
    dice_weight: float = 0.8
    ce_weight: float = 0.2
    dice_gamma: float = 0.3
    ce_gamma: float = 0.3
    dice_activation: str = "softmax"
    pyramid_threshold: int = 400
    pyramid_range: Tuple[float, float] = (3.0, 20.0)
    negative_weight: float = 1.0
    global_label_min_voxels: int = 3
    optimizer: Mapping[str, Any] = field(default_factory=lambda: {"name": "adam", "lr": 2e-4, "weight_decay": 0.0})
    lr_step: int = 10_000
    lr_gamma: float = 0.95
    batch_size: int = 3
    positive_fraction: float = 0.5
    jitter: int = 38
    flips: bool = True
    rotations: bool = True
    noise_hu: float = 0.0
    steps: int = 200_000

    @property
    def classes(self) -> Tuple[SegmentClass, ...]:
        return (ANEURYSM,)

    @property
    def overlap_fraction(self) -> Tuple[float, ...]:
        """The overlap as the fraction :func:`mednets.inference.sliding_window` takes."""
        return tuple(min(max(o / p, 0.0), 0.99) for o, p in zip(self.window_overlap, self.patch_size))

    def replace(self, **changes: Any) -> "AneurysmSegConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["model_overrides"] = dict(self.model_overrides)
        data["optimizer"] = dict(self.optimizer)
        return data


PAPER = AneurysmSegConfig()

#: The official code's training/inference configuration (configs/GLIA-Net.yaml, inference_GLIA-Net.yaml,
#: data_loader.py): Dice/CE weights 0.2/0.8, Adam weight decay 1e-3, batch 1 per GPU, window step 48 (overlap 48),
#: positive-patch jitter int(0.3 * 96) = 28, flips only, N(0, 1) HU noise, sigmoid Dice input.
OFFICIAL_TRAINING = AneurysmSegConfig(
    name="official", title="GLIA-Net (official code's training config)", dice_weight=0.2, ce_weight=0.8,
    dice_activation="sigmoid", optimizer={"name": "adam", "lr": 2e-4, "weight_decay": 1e-3}, batch_size=1,
    window_overlap=(48, 48, 48), jitter=28, rotations=False, noise_hu=1.0)

#: Small CPU configuration of the phantom demo weights and the learning test: 24^3 patches, windows and global
#: image, widths 4/8/16/32 with an 8-channel global feature (67,536 parameters), a higher
#: learning rate for the short runs, and predicted regions of <= 10 voxels dropped (the official evaluation ignores
#: regions of <= 10 voxels, fact from MeteorsHub/GLIA-Net utils/metrics.py). Everything else is the paper's recipe.
SMALL = AneurysmSegConfig(
    name="small", title="GLIA-Net small (CPU demo on phantoms)",
    model_overrides={"widths": (4, 8, 16, 32), "global_channels": 8},
    patch_size=(24, 24, 24), window_overlap=(8, 8, 8), global_size=(24, 24, 24), jitter=8, batch_size=3,
    optimizer={"name": "adam", "lr": 3e-3, "weight_decay": 0.0}, lr_step=10_000, steps=400, min_target_voxels=10)

CONFIGS: Dict[str, AneurysmSegConfig] = {c.name: c for c in (PAPER, OFFICIAL_TRAINING, SMALL)}


def scaled_overlap(overlap: int, config: AneurysmSegConfig, reference: int = 96) -> Tuple[int, int, int]:
    """A window overlap given for the paper's 96-voxel windows, as the same fraction of ``config``'s windows."""
    overlap = int(overlap)
    if not 0 <= overlap < reference:
        raise ValueError(f"the overlap must be between 0 and {reference - 1} voxels, got {overlap}")
    return tuple(min(int(round(overlap * p / reference)), p - 1) for p in config.patch_size)


def get_config(name: str) -> AneurysmSegConfig:
    key = str(name).strip().lower()
    if key not in CONFIGS:
        raise ValueError(f"unknown AneurysmSeg configuration {name!r}; choose one of {sorted(CONFIGS)}")
    return CONFIGS[key]


def config_from_dict(data: Mapping[str, Any]) -> AneurysmSegConfig:
    """Rebuild a configuration stored with :meth:`AneurysmSegConfig.to_dict` (unknown fields are ignored)."""
    base = CONFIGS.get(str(data.get("name", "")).lower(), PAPER)
    changes: Dict[str, Any] = {}
    for item in dataclasses.fields(AneurysmSegConfig):
        if item.name in data:
            value = data[item.name]
            if isinstance(value, list):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            if item.name == "model_overrides" and isinstance(value, Mapping):
                value = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
            changes[item.name] = value
    return dataclasses.replace(base, **changes)
