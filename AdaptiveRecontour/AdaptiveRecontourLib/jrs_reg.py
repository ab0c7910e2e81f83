"""JRS-reg (section 5.2.3.1): the registration network trained with the joint loss of Eq. 5.6.

Same layers as :class:`~.reg.RegNet`; its loss adds the DSC of the warped planning contours (DSC-R). The paper's
final JRS-reg takes I_f (+) I_m (+) S_m (section 5.4.2), hence three input channels by default (780,354 parameters;
the paper prints no count for JRS-reg). ``inputs=("fixed", "moving")`` gives Reg's 779,733.
"""

from __future__ import annotations

from typing import Sequence

from .base import STL_FILTERS
from .reg import RegNet

__all__ = ["JRSRegNet"]


class JRSRegNet(RegNet):
    uses_contour_loss = True

    def __init__(self, filters: Sequence[int] = STL_FILTERS, upsample: str = "trilinear",
                 inputs: Sequence[str] = ("fixed", "moving", "moving_seg"), num_classes: int = 0) -> None:
        super().__init__(filters=filters, upsample=upsample, inputs=inputs, num_classes=num_classes)
