"""Task and training configurations as data (paper recipe and a small CPU configuration).

Paper recipe (section 5.3): 1 mm isotropic voxels, affine pre-registration, HU clipped to [-1000, 1000]; RAdam with a
fixed learning rate of 1e-4; 200K iterations; batch 2, doubled by swapping fixed and moving patches; 96^3 patches
sampled equally from the targets (prostate, seminal vesicles), the organs at risk (bladder, rectum) and the torso;
deep-supervision losses weighted 1/3 each; bending energy weight 0.5 (fixed); loss weighting homoscedastic for
JRS-reg, Dense and SEDD, equal for Cross-stitch (section 5.4.3); the Cross-stitch segmentation path is the final
output (Tables 5.3/5.4).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["SEGMENT_NAMES", "segment_classes", "MODULE_NAME", "RecontourConfig", "CONFIGS", "get_config", "config_from_dict", "DEFAULT_MODEL",
           "STRUCTURES", "TARGET_LABELS", "OAR_LABELS"]

MODULE_NAME = "AdaptiveRecontour"
DEFAULT_MODEL = "adaptiverecontour-pelvis-demo"

#: label value -> structure (the network's classes; 0 is background).
STRUCTURES: Dict[int, str] = {1: "prostate", 2: "seminal_vesicles", 3: "rectum", 4: "bladder"}
TARGET_LABELS = (1, 2)
OAR_LABELS = (3, 4)


@dataclass
class RecontourConfig:
    model: str = "cross_stitch"
    filters: Optional[Tuple[int, int, int]] = None  # None: the paper's filters of the chosen network
    upsample: str = "trilinear"
    num_classes: int = 5
    patch_size: int = 96
    spacing_mm: float = 1.0
    hu_clip: Tuple[float, float] = (-1000.0, 1000.0)
    affine_preregistration: bool = True
    # loss
    bending_weight: float = 0.5
    weighting: str = "equal"  # equal | homoscedastic | dwa
    deep_supervision: Tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)  # fine, mid, coarse
    dice_smooth: float = 1.0  # voxels added to numerator and denominator of DSC-R / DSC-S (ours: the paper gives none)
    dice_batch: bool = True  # one Dice ratio per structure over the batch (ours: fewer absent-structure terms)
    # training
    optimizer: Dict[str, Any] = field(default_factory=lambda: {"name": "radam", "lr": 1e-4})
    schedule: Dict[str, Any] = field(default_factory=lambda: {"name": "constant"})  # paper: fixed learning rate
    bn_recalibration_batches: int = 16  # precise-BN statistics after training and before each validation (ours)
    iterations: int = 200_000
    batch_size: int = 2
    swap_fixed_moving: bool = True
    sampling: Dict[str, float] = field(default_factory=lambda: {"target": 1.0, "oar": 1.0, "torso": 1.0})
    # inference
    inference_patch_size: int = 96  # tiles at inference (valid convolutions: any multiple of 4 >= 44 works)
    output: str = "segmentation"  # segmentation (Seg head) | registration (warped planning contours)
    contour_warp: str = "one_hot"  # one_hot (trilinear one-hot + arg-max) | nearest
    largest_component: bool = True

    def architecture_config(self) -> Dict[str, Any]:
        cfg: Dict[str, Any] = {"upsample": self.upsample}
        if self.filters is not None:
            cfg["filters"] = [int(f) for f in self.filters]
        if self.model not in ("reg", "jrs_reg"):
            cfg["num_classes"] = int(self.num_classes)
        return cfg

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def config_from_dict(data: Mapping[str, Any]) -> RecontourConfig:
    names = {f.name for f in dataclasses.fields(RecontourConfig)}
    kwargs = {k: v for k, v in dict(data).items() if k in names}
    for key in ("filters", "hu_clip", "deep_supervision"):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(kwargs[key])
    return RecontourConfig(**kwargs)


def _paper(model: str, weighting: str) -> RecontourConfig:
    return RecontourConfig(model=model, weighting=weighting,
                           output="registration" if model in ("reg", "jrs_reg") else "segmentation")


#: Named configurations. ``paper_<net>`` follow section 5.3; ``cpu_small`` is the reduced one used for the demo
#: weights and the learning test (narrow filters, 64^3 patches at 3 mm, learning rate 3e-3 to learn in minutes).
CONFIGS: Dict[str, RecontourConfig] = {
    "paper_seg": _paper("seg", "equal"),
    "paper_reg": _paper("reg", "equal"),
    "paper_jrs_reg": _paper("jrs_reg", "homoscedastic"),
    "paper_dense": _paper("dense", "homoscedastic"),
    "paper_sedd": _paper("sedd", "homoscedastic"),
    "paper_cross_stitch": _paper("cross_stitch", "equal"),
    "cpu_small": RecontourConfig(model="cross_stitch", filters=(8, 16, 32), patch_size=64, spacing_mm=3.0,
                                 optimizer={"name": "radam", "lr": 3e-3}, iterations=400),
    # JRS-reg at CPU scale: the configuration of the learning test and the demo weights (48^3 patches at 3 mm, RAdam
    # lr 1e-2: at 3e-3 the displacements grew too slowly to matter within a CPU budget; 1000 iterations).
    "cpu_jrs_reg": RecontourConfig(model="jrs_reg", filters=(8, 16, 32), patch_size=64, spacing_mm=3.0,
                                   optimizer={"name": "radam", "lr": 1e-2}, iterations=1000, weighting="equal",
                                   output="registration"),
}


def get_config(name: str = "paper_cross_stitch", **overrides: Any) -> RecontourConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown configuration {name!r}; valid: {', '.join(CONFIGS)}")
    return dataclasses.replace(CONFIGS[name], **overrides)


def segment_classes():
    """Segment name, colour and SNOMED CT terminology of each structure, label order 1..4 (torch-free).

    Colours as the paper's Fig. 5.7 (prostate yellow, seminal vesicles green, rectum blue, bladder red)."""
    from mednets.terminology import ANATOMICAL_STRUCTURE, Code, SegmentClass

    def rgb(r, g, b):
        return (r / 255.0, g / 255.0, b / 255.0)

    return [SegmentClass("prostate", rgb(230, 200, 60), ANATOMICAL_STRUCTURE, Code("SCT", "41216001", "Prostate")),
            SegmentClass("seminal vesicles", rgb(80, 190, 80), ANATOMICAL_STRUCTURE,
                         Code("SCT", "64739004", "Seminal vesicle")),
            SegmentClass("rectum", rgb(70, 110, 220), ANATOMICAL_STRUCTURE, Code("SCT", "34402009", "Rectum")),
            SegmentClass("urinary bladder", rgb(220, 60, 60), ANATOMICAL_STRUCTURE,
                         Code("SCT", "89837001", "Urinary bladder"))]


#: Segment names in label order 1..4 (what the planning segmentation's segments must be called; case-insensitive).
SEGMENT_NAMES = ("prostate", "seminal vesicles", "rectum", "urinary bladder")
