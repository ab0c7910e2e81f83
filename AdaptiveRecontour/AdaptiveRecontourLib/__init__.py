"""AdaptiveRecontour networks: JRS-MTL, joint registration and segmentation by multi-task learning.

Elmahdy et al., "Joint Registration and Segmentation via Multi-Task Learning for Adaptive Radiotherapy of Prostate
Cancer", IEEE Access 2021 (thesis chapter 5). Six networks (section 5.2), built by :func:`build_model`:

========================  ==========================================  ============================
name                      inputs -> outputs                           trainable parameters
========================  ==========================================  ============================
``seg``                   I_f -> S_f                                  779,436 (paper)
``reg``                   I_f (+) I_m -> DVF                          779,733 (paper)
``jrs_reg``               I_f (+) I_m (+) S_m -> DVF (joint loss)     780,354 (not printed)
``dense``                 I_f (+) I_m (+) S_m -> S_f, DVF             781,164 (paper)
``sedd``                  I_f (+) I_m (+) S_m -> S_f, DVF             722,936 (paper)
``cross_stitch``          I_f || I_f (+) I_m (+) S_m -> S_f, DVF      779,576 (paper "779,000")
========================  ==========================================  ============================

Importing this package is cheap: torch and the networks are imported by :func:`build_model`.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Tuple

__all__ = ["MODEL_NAMES", "PAPER_PARAMETERS", "SEGMENT_NAMES", "build_model"]

#: Names accepted by :func:`build_model`.
MODEL_NAMES: Tuple[str, ...] = ("seg", "reg", "jrs_reg", "dense", "sedd", "cross_stitch")

#: Trainable parameter counts (section 5.2; cross_stitch: exact count of the TF1 definition, paper rounds to 779,000).
PAPER_PARAMETERS: Dict[str, int] = {"seg": 779_436, "reg": 779_733, "dense": 781_164, "sedd": 722_936,
                                    "cross_stitch": 779_576}

#: Label values of the segmentation output (index = label value; 0 is background).
SEGMENT_NAMES: Tuple[str, ...] = ("background", "prostate", "seminal_vesicles", "rectum", "bladder")

_CLASSES = {"seg": ("seg", "SegNet"), "reg": ("reg", "RegNet"), "jrs_reg": ("jrs_reg", "JRSRegNet"),
            "dense": ("dense", "DenseNet"), "sedd": ("sedd", "SEDDNet"),
            "cross_stitch": ("cross_stitch", "CrossStitchNet")}


def build_model(name: str, **overrides: Any):
    """Build one of :data:`MODEL_NAMES` with the paper's defaults (5 classes, paper filters, N(0, 0.02) init).

    ``overrides`` go to the network's constructor: ``filters`` (three widths), ``num_classes``, ``upsample``
    ("trilinear" as in the paper's text, "nearest" as in the TF1 code), ``inputs`` (seg/reg/jrs_reg/dense/sedd) or
    ``seg_inputs``/``reg_inputs`` (cross_stitch).

    Raises:
        ValueError: ``name`` is not one of :data:`MODEL_NAMES`.
        TypeError: an override the network does not take.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in _CLASSES:
        raise ValueError(f"unknown AdaptiveRecontour model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    module_name, class_name = _CLASSES[key]
    cls = getattr(importlib.import_module(f".{module_name}", __name__), class_name)
    model = cls(**overrides)
    model.model_name = key
    return model
