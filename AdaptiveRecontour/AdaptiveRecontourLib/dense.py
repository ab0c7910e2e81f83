"""Dense parameter sharing (section 5.2.3.2, Fig. 5.1a): one network, I_m (+) I_f (+) S_m in, S_f and DVF out.

781,164 trainable parameters: every layer shared, only the 1x1x1 heads are task-specific (fact from
moelmahdy/JRS-MTL/graphs/models/Dense.py at ad938ce: a segmentation and a registration head on each of the three
resolutions, filters [23, 45, 91]).
"""

from __future__ import annotations

from typing import Sequence

from .base import STL_FILTERS, BaseNet

__all__ = ["DenseNet"]


class DenseNet(BaseNet):
    uses_contour_loss = True

    def __init__(self, num_classes: int = 5, filters: Sequence[int] = STL_FILTERS, upsample: str = "trilinear",
                 inputs: Sequence[str] = ("fixed", "moving", "moving_seg")) -> None:
        super().__init__(inputs=inputs, num_classes=num_classes, registration=True, filters=filters,
                         upsample=upsample)
