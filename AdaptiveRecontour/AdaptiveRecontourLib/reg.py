"""Reg: the single-task registration network (section 5.2.2.2): input I_f (+) I_m, output the DVF.

779,733 trainable parameters: two input channels, a 3-channel DVF head per resolution. Trained with NCC + 0.5 bending
energy (Eq. 5.4). (The TF1 STL.py adds S_m to the registration input by default; the paper's Reg baseline does not,
section 5.4.2, and its count 779,733 is the two-channel network.)
"""

from __future__ import annotations

from typing import Sequence

from .base import STL_FILTERS, BaseNet

__all__ = ["RegNet"]


class RegNet(BaseNet):
    def __init__(self, filters: Sequence[int] = STL_FILTERS, upsample: str = "trilinear",
                 inputs: Sequence[str] = ("fixed", "moving"), num_classes: int = 0) -> None:
        if num_classes:
            raise ValueError("RegNet has no segmentation output; use 'dense' for both")
        super().__init__(inputs=inputs, num_classes=0, registration=True, filters=filters, upsample=upsample)
