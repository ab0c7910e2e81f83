"""The paper's three task configurations (PET whole body, MRI prostate, ultrasound left ventricle) as data.

Every number below comes from Taghanaki et al., "Combo loss: handling input and output imbalance in multi-organ
segmentation", Computerized Medical Imaging and Graphics 75 (2019), section 3 ("Implementation details") unless noted:

* PET: 100 random 80x80x80 sub-volumes per organ and 100 background sub-volumes per training volume; sliding window
  with stride 20x20x20 at test time; no resampling; beta = 0.4 (false positives penalised more).
* MRI prostate: whole volumes of 48x256x256 voxels (resampled to 1 x 1 x 3 mm), batch 2; beta = 0.6.
* Ultrasound left-ventricular myocardium: whole volumes of 128x128x128 voxels at 2 mm, batch 2; beta = 0.7.
* All: ADADELTA (lr 1, rho 0.95, eps 1e-8, no decay), Glorot initialisation, BN after each convolution, sigmoid output
  without a background channel, alpha = 0.5, threshold 0.5, min-max intensity normalisation (over the training set,
  then every sub-volume to [0, 1] by its own min and max), best epoch chosen on the validation set.

Shapes and spacings are in ARRAY-AXIS order (K, J, I) like the rest of mednets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from mednets.terminology import SegmentClass, standard_class

__all__ = ["MODULE_NAME", "DEFAULT_MODEL", "OrganComboConfig", "CONFIGS", "get_config", "config_from_dict"]

#: The module the weights belong to (checked when loading weights).
MODULE_NAME = "OrganCombo"
#: Name of the bundled demo weights in the model catalogue.
DEFAULT_MODEL = "organcombo-pet-demo"


@dataclass(frozen=True)
class OrganComboConfig:
    """One task: what the network segments and how it is trained and applied.

    Attributes:
        name: configuration key (``"pet"``, ``"mri"``, ``"ultrasound"``).
        title: shown to the user.
        modality: DICOM modality of the input (``"PT"``, ``"MR"``, ``"US"``).
        classes: output channels, in order (sigmoid, one per organ, no background).
        model: network name for :func:`OrganComboLib.build_model`.
        model_overrides: extra arguments for ``build_model`` (e.g. smaller widths for demo weights).
        spatial_dims: 3, or 2 for 2D images (ultrasound frames).
        patch_size: training sub-volume size; ``None`` trains on whole volumes (MRI, ultrasound).
        window_size: inference window (the training sub-volume size); ``None`` runs on the whole volume.
        window_stride: sliding-window stride (paper: 20 for PET).
        threshold: probability threshold t of the max-aggregation rule.
        target_spacing: resample to this spacing before the network (``None``: keep the input grid, PET).
        alpha, beta: Combo loss weights.
        patches_per_organ / background_patches: sub-volumes drawn per training volume and epoch.
        batch_size: patches per optimizer step.
        optimizer: optimizer configuration (:func:`mednets.training.build_optimizer`).
        epochs: default number of epochs when training from Slicer or the CLI.
    """

    name: str
    title: str
    modality: str
    classes: Tuple[SegmentClass, ...]
    model: str = "combo_net"
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    spatial_dims: int = 3
    patch_size: Optional[Tuple[int, ...]] = (80, 80, 80)
    window_size: Optional[Tuple[int, ...]] = (80, 80, 80)
    window_stride: Tuple[int, ...] = (20, 20, 20)
    threshold: float = 0.5
    target_spacing: Optional[Tuple[float, ...]] = None
    alpha: float = 0.5
    beta: float = 0.5
    patches_per_organ: int = 100
    background_patches: int = 100
    batch_size: int = 2
    optimizer: Mapping[str, Any] = field(
        default_factory=lambda: {"name": "adadelta", "lr": 1.0, "rho": 0.95, "eps": 1e-8, "weight_decay": 0.0})
    epochs: int = 50

    @property
    def class_names(self) -> Tuple[str, ...]:
        return tuple(entry.name for entry in self.classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def window_overlap(self) -> Optional[Tuple[float, ...]]:
        """The stride as the ``overlap`` fraction of :func:`mednets.inference.sliding_window` (1 - stride/window)."""
        if self.window_size is None:
            return None
        return tuple(1.0 - stride / size for stride, size in zip(self.window_stride, self.window_size))

    @property
    def foreground_fraction(self) -> float:
        """Share of organ sub-volumes: 100 per organ against 100 background ones gives K / (K + 1)."""
        organs = self.patches_per_organ * self.num_classes
        return organs / (organs + self.background_patches)

    def patches_per_volume(self) -> int:
        return self.patches_per_organ * self.num_classes + self.background_patches

    def replace(self, **changes: Any) -> "OrganComboConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """Plain data for checkpoint metadata (class names/colours included)."""
        data = dataclasses.asdict(self)
        data["classes"] = [{"name": c.name, "color": list(c.color), "terminology": c.terminology()}
                           for c in self.classes]
        data["model_overrides"] = dict(self.model_overrides)
        data["optimizer"] = dict(self.optimizer)
        return data


PET = OrganComboConfig(
    name="pet", title="PET whole body (brain, heart, kidneys, bladder)", modality="PT",
    classes=(standard_class("brain"), standard_class("heart"), standard_class("left kidney"),
             standard_class("right kidney"), standard_class("urinary bladder", "bladder")),
    beta=0.4, batch_size=2)  # two GPUs with batch 1 each in the paper

MRI = OrganComboConfig(
    name="mri", title="MRI prostate", modality="MR", classes=(standard_class("prostate"),),
    patch_size=None, window_size=None, target_spacing=(3.0, 1.0, 1.0), beta=0.6, batch_size=4,
    patches_per_organ=0, background_patches=0)  # whole 48x256x256 volumes; two GPUs with batch 2 each

ULTRASOUND = OrganComboConfig(
    name="ultrasound", title="Ultrasound left-ventricular myocardium", modality="US",
    classes=(standard_class("left ventricular myocardium"),),
    patch_size=None, window_size=None, target_spacing=(2.0, 2.0, 2.0), beta=0.7, batch_size=4,
    patches_per_organ=0, background_patches=0)  # whole 128^3 volumes (2D frames work too: spatial_dims=2)

CONFIGS: Dict[str, OrganComboConfig] = {config.name: config for config in (PET, MRI, ULTRASOUND)}


def get_config(name: str) -> OrganComboConfig:
    """The configuration called ``name`` (case-insensitive); ``ValueError`` naming the valid ones otherwise."""
    key = str(name).strip().lower()
    if key not in CONFIGS:
        raise ValueError(f"unknown OrganCombo configuration {name!r}; choose one of {sorted(CONFIGS)}")
    return CONFIGS[key]


def config_from_dict(data: Mapping[str, Any]) -> OrganComboConfig:
    """Rebuild a configuration stored with :meth:`OrganComboConfig.to_dict` (e.g. in a checkpoint's metadata).

    Fields this version does not know are ignored; missing ones take the value of the named base configuration
    (``"pet"``, ``"mri"``, ``"ultrasound"``; PET when the name is unknown, e.g. a user's own task).
    """
    base = CONFIGS.get(str(data.get("name", "")).lower(), PET)
    changes: Dict[str, Any] = {}
    for item in dataclasses.fields(OrganComboConfig):
        if item.name not in data or item.name == "classes":
            continue
        value = data[item.name]
        if isinstance(value, list):
            value = tuple(value)
        changes[item.name] = value
    if data.get("classes"):
        changes["classes"] = tuple(SegmentClass.from_terminology(c["name"], c["color"], c["terminology"])
                                   for c in data["classes"])
    return dataclasses.replace(base, **changes)
