"""Seg: the single-task segmentation network (section 5.2.2.1): input I_f, output S_f at three resolutions.

779,436 trainable parameters with 5 classes (background + prostate, seminal vesicles, rectum, bladder); fact from
moelmahdy/JRS-MTL/graphs/models/STL.py (ad938ce): isSeg takes the fixed image only, num_seg_classes=5.
"""

from __future__ import annotations

from typing import Sequence

from .base import STL_FILTERS, BaseNet

__all__ = ["SegNet"]


class SegNet(BaseNet):
    def __init__(self, num_classes: int = 5, filters: Sequence[int] = STL_FILTERS, upsample: str = "trilinear",
                 inputs: Sequence[str] = ("fixed",)) -> None:
        super().__init__(inputs=inputs, num_classes=num_classes, registration=False, filters=filters,
                         upsample=upsample)
