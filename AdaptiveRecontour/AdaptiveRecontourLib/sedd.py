"""SEDD, shared encoder double decoder (section 5.2.3.3, Fig. 5.1b): 722,936 trainable parameters.

Fact from moelmahdy/JRS-MTL/graphs/models/SEDD.py at ad938ce: filters [16, 32, 64]; the shared part is the first
level (conv, conv, stride-2 conv) and the two valid convolutions of the second level (whose output x4 is the mid skip);
from the second stride-2 convolution on, the segmentation and registration paths have their own layers, and both
decoders take the same shared skips x4 and x1. Input I_m (+) I_f (+) S_m.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from .base import MTL_FILTERS, JRSNetwork
from .blocks import ConvLReLUBN, Decoder, Head, init_conv_normal_

__all__ = ["SEDDNet"]


class _Branch(nn.Module):
    """One task's path after the shared encoder: stride-2 conv, two convs, the decoder and three heads."""

    def __init__(self, filters, out_channels: int, upsample: str) -> None:
        super().__init__()
        f0, f1, f2 = filters
        self.down1 = ConvLReLUBN(f1, f1, 2)
        self.c6, self.c7 = ConvLReLUBN(f1, f2), ConvLReLUBN(f2, f2)
        self.decoder = Decoder(filters, upsample)
        self.heads = nn.ModuleList([Head(f0, out_channels), Head(f1, out_channels), Head(f2, out_channels)])

    def forward(self, x4: torch.Tensor, x1: torch.Tensor) -> List[torch.Tensor]:
        bottom = self.c7(self.c6(self.down1(x4)))
        mid = self.decoder.level(0, self.decoder.up(bottom), x4)
        fine = self.decoder.level(1, self.decoder.up(mid), x1)
        return [h(f) for h, f in zip(self.heads, (fine, mid, bottom))]


class SEDDNet(JRSNetwork):
    tasks = ("seg", "dvf")
    uses_contour_loss = True

    def __init__(self, num_classes: int = 5, filters: Sequence[int] = MTL_FILTERS, upsample: str = "trilinear",
                 inputs: Sequence[str] = ("fixed", "moving", "moving_seg")) -> None:
        super().__init__()
        self.inputs = tuple(inputs)
        self.num_classes = int(num_classes)
        self.filters = tuple(int(f) for f in filters)
        f0, f1, f2 = self.filters
        cin = len(self.inputs)
        self.c0, self.c1, self.down0 = ConvLReLUBN(cin, f0), ConvLReLUBN(f0, f0), ConvLReLUBN(f0, f0, 2)
        self.c3, self.c4 = ConvLReLUBN(f0, f1), ConvLReLUBN(f1, f1)
        self.seg_branch = _Branch(self.filters, self.num_classes, upsample)
        self.dvf_branch = _Branch(self.filters, 3, upsample)
        init_conv_normal_(self)

    def forward(self, fixed: torch.Tensor, moving: Optional[torch.Tensor] = None,
                moving_seg: Optional[torch.Tensor] = None) -> Dict[str, List[torch.Tensor]]:
        x = self.gather(self.inputs, fixed, moving, moving_seg)
        x1 = self.c1(self.c0(x))
        x4 = self.c4(self.c3(self.down0(x1)))
        return {"seg": self.seg_branch(x4, x1), "dvf": self.dvf_branch(x4, x1)}
