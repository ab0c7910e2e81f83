"""The base network of section 5.2.1 (Fig. 5.1a): one encoder-decoder with heads for one or both tasks.

Seg, Reg, JRS-reg and Dense are this network with different inputs and heads (fact from
moelmahdy/JRS-MTL/graphs/models/STL.py and Dense.py at ad938ce: filters [23, 45, 91], heads on the bottom, mid and fine
features). Every network of this package returns a dict with

* ``"seg"``: [fine, mid, coarse] segmentation logits (B, num_classes, s, s, s), when the network segments;
* ``"dvf"``: [fine, mid, coarse] displacement fields (B, 3, s, s, s), when the network registers. Channels are the
  displacement in input voxels (mm after the 1 mm resampling) along the array axes (K, J, I) = torch (D, H, W),
  at the points of :func:`~.blocks.output_grids`; the warped moving image is ``moving(x + u(x))``.

Inputs are passed by name: ``fixed`` (daily CT, I_f), ``moving`` (planning CT, I_m), ``moving_seg`` (planning label map
S_m as one float channel of label indices, as the TF1 code feeds it), each (B, 1, n, n, n), n a multiple of 4, >= 44.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .blocks import Decoder, Encoder, Head, check_patch_size, init_conv_normal_, output_grids

__all__ = ["JRSNetwork", "BaseNet", "STL_FILTERS", "MTL_FILTERS", "INPUT_ORDER"]

#: Filters for Seg/Reg/JRS-reg/Dense ([16, 32, 64] * sqrt(2), section 5.3.2) and for SEDD/Cross-stitch.
STL_FILTERS: Tuple[int, int, int] = (23, 45, 91)
MTL_FILTERS: Tuple[int, int, int] = (16, 32, 64)

#: Channel order of a concatenated input (fact from STL.py: concatenate([fixed, moving]) then moving segmentation).
INPUT_ORDER: Tuple[str, ...] = ("fixed", "moving", "moving_seg")


class JRSNetwork(nn.Module):
    """Common interface: ``inputs`` (names of the input channels), ``tasks`` ("seg", "dvf"), ``num_classes``."""

    inputs: Tuple[str, ...] = ("fixed",)
    tasks: Tuple[str, ...] = ()
    num_classes: int = 5
    #: Whether the training loss includes the DSC of the warped moving contours (JRS-reg and all MTL networks).
    uses_contour_loss: bool = False

    def gather(self, names: Sequence[str], fixed: torch.Tensor, moving: Optional[torch.Tensor],
               moving_seg: Optional[torch.Tensor]) -> torch.Tensor:
        given = {"fixed": fixed, "moving": moving, "moving_seg": moving_seg}
        parts = []
        for name in names:
            t = given[name]
            if t is None:
                raise ValueError(f"{type(self).__name__} needs the input {name!r}")
            if t.dim() != 5 or t.shape[1] != 1:
                raise ValueError(f"input {name!r} must be (B, 1, n, n, n), got {tuple(t.shape)}")
            parts.append(t.to(fixed.dtype))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        shape = x.shape[2:]
        if len(set(shape)) != 1:
            raise ValueError(f"patches must be cubic, got {tuple(shape)}")
        check_patch_size(shape[0])
        return x

    @staticmethod
    def output_grids(n: int):
        return output_grids(n)


class BaseNet(JRSNetwork):
    """One encoder-decoder; ``num_classes`` > 0 adds segmentation heads, ``registration`` adds DVF heads."""

    def __init__(self, inputs: Sequence[str] = ("fixed",), num_classes: int = 5, registration: bool = False,
                 filters: Sequence[int] = STL_FILTERS, upsample: str = "trilinear") -> None:
        super().__init__()
        self.inputs = tuple(inputs)
        unknown = [n for n in self.inputs if n not in INPUT_ORDER]
        if unknown or not self.inputs:
            raise ValueError(f"inputs must be names from {INPUT_ORDER}, got {inputs}")
        self.num_classes = int(num_classes)
        self.filters = tuple(int(f) for f in filters)
        tasks = []
        f0, f1, f2 = self.filters
        self.encoder = Encoder(len(self.inputs), self.filters)
        self.decoder = Decoder(self.filters, upsample)
        if self.num_classes > 0:
            tasks.append("seg")
            self.seg_heads = nn.ModuleList([Head(f0, self.num_classes), Head(f1, self.num_classes),
                                            Head(f2, self.num_classes)])
        if registration:
            tasks.append("dvf")
            self.dvf_heads = nn.ModuleList([Head(f0, 3), Head(f1, 3), Head(f2, 3)])
        if not tasks:
            raise ValueError("a network needs a segmentation or a registration output")
        self.tasks = tuple(tasks)
        init_conv_normal_(self)

    def forward(self, fixed: torch.Tensor, moving: Optional[torch.Tensor] = None,
                moving_seg: Optional[torch.Tensor] = None) -> Dict[str, List[torch.Tensor]]:
        x = self.gather(self.inputs, fixed, moving, moving_seg)
        x, skip1 = self.encoder.stage(0, x)
        x, skip4 = self.encoder.stage(1, x)
        bottom, _ = self.encoder.stage(2, x)
        mid = self.decoder.level(0, self.decoder.up(bottom), skip4)
        fine = self.decoder.level(1, self.decoder.up(mid), skip1)
        out: Dict[str, List[torch.Tensor]] = {}
        feats = [fine, mid, bottom]
        if "seg" in self.tasks:
            out["seg"] = [h(f) for h, f in zip(self.seg_heads, feats)]
        if "dvf" in self.tasks:
            out["dvf"] = [h(f) for h, f in zip(self.dvf_heads, feats)]
        return out
