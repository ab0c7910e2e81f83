"""AneurysmSeg: GLIA-Net intracranial aneurysm segmentation on CT angiography.

Bo et al., "Toward human intervention-free clinical diagnosis of intracranial aneurysm via deep neural network",
Patterns 2 (2021) 100197; official code: public repository MeteorsHub/GLIA-Net (read for facts, cited in comments).

Importing this package is cheap: torch and the network module are imported by :func:`build_model` and
:func:`convert_official_state_dict`.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Mapping, Tuple

__all__ = ["MODEL_NAMES", "PAPER_DEFAULTS", "OFFICIAL_PARAMETER_COUNT", "build_model", "convert_official_state_dict"]

#: Names accepted by :func:`build_model`.
MODEL_NAMES: Tuple[str, ...] = ("glia_net",)

#: The paper's configuration: 3 HU-window channels in, 2 softmax classes out, local widths 16/32/64/128, global
#: feature 32 channels, GroupNorm with 4 groups, LeakyReLU 0.01.
PAPER_DEFAULTS: Dict[str, Any] = {"in_channels": 3, "out_channels": 2, "widths": (16, 32, 64, 128),
                                  "global_channels": 32, "groups": 4, "negative_slope": 0.01, "with_global": True}

#: Trainable parameters of the official model class with the paper's configuration (measured, see README).
OFFICIAL_PARAMETER_COUNT = 1_066_704

_CLASSES = {"glia_net": ("glia_net", "GLIANet")}


def build_model(name: str = "glia_net", **overrides: Any):
    """Build one of :data:`MODEL_NAMES` (a ``torch.nn.Module`` in training mode) with :data:`PAPER_DEFAULTS`.

    ``overrides`` go to the constructor (``widths``, ``global_channels``, ``with_global``, ...).

    Raises:
        ValueError: ``name`` is not one of :data:`MODEL_NAMES`.
        TypeError: an override the network does not take.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in _CLASSES:
        raise ValueError(f"unknown AneurysmSeg model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    module_name, class_name = _CLASSES[key]
    cls = getattr(importlib.import_module(f".{module_name}", __name__), class_name)
    kwargs = dict(PAPER_DEFAULTS)
    kwargs.update(overrides)
    return cls(**kwargs)


def convert_official_state_dict(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """Map a checkpoint of the official GLIA-Net code onto ``build_model("glia_net")``'s keys (see glia_net.py)."""
    from .glia_net import convert_official_state_dict as convert

    return convert(state_dict)
