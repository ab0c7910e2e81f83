"""AxillaryLNDetect: two-stage 3D U-Net detection of axillary lymph nodes in contrast-enhanced CT.

Altun, Chlebus, Jacobs, Meine, van Ginneken and Hahn, "Feasibility of end-to-end trainable two-stage U-Net for
detection of axillary lymph nodes in contrast-enhanced CT based scans on sparse annotations" (SPIE Medical Imaging).

Both stages (VOI localisation at 3 mm, lymph-node detection at 1 mm inside the VOI) use the same network,
``build_model("unet3d_3level")``: the three-level valid-convolution 3D U-Net of Fig. 3 (72^3 in, 32^3 out, softmax over
``out_channels`` classes, 2 by default).

Importing this package is cheap: the network module (and torch) is imported by :func:`build_model`.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Tuple

__all__ = ["MODEL_NAMES", "PAPER_DEFAULTS", "PAPER_PARAMETERS", "build_model"]

#: Names accepted by :func:`build_model`.
MODEL_NAMES: Tuple[str, ...] = ("unet3d_3level",)

#: The paper's configuration: one CT channel in, two softmax classes out, dropout 0.25 (random initialisation).
PAPER_DEFAULTS: Dict[str, Any] = {"in_channels": 1, "out_channels": 2, "dropout": 0.25}

#: Trainable parameters stated in the paper (Fig. 3); the default network has 8,468,642 (see unet3d_3level).
PAPER_PARAMETERS = 8_516_034

_CLASSES = {"unet3d_3level": ("unet3d_3level", "UNet3Level")}


def build_model(name: str = "unet3d_3level", **overrides: Any):
    """Build one of :data:`MODEL_NAMES` (a ``torch.nn.Module`` in training mode).

    ``overrides`` go to the constructor: ``in_channels``, ``out_channels``, ``widths`` (level 1, level 2, bottleneck),
    ``up_channels`` ("half"/"same"), ``up_norm``, ``head_norm``, ``dropout``.

    Raises:
        ValueError: ``name`` is not one of :data:`MODEL_NAMES` or a bad override value.
        TypeError: an override the network does not take.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in _CLASSES:
        raise ValueError(f"unknown AxillaryLNDetect model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    module_name, class_name = _CLASSES[key]
    cls = getattr(importlib.import_module(f".{module_name}", __name__), class_name)
    kwargs = dict(PAPER_DEFAULTS)
    kwargs.update(overrides)
    return cls(**kwargs)
