"""Cross-stitch network (section 5.2.3.4, Fig. 5.1c, Eq. 5.5): two base networks joined by four cross-stitch units.

Facts from moelmahdy/JRS-MTL/graphs/models/CrossStitch.py at ad938ce:

* filters [16, 32, 64]; the segmentation stream takes the fixed image only, the registration stream
  I_f (+) I_m (+) S_m (three channels);
* units after the first stride-2 convolution (16 channels), after the second (32), after the first up-sampling
  (64, before the skip concatenation) and after the second up-sampling (32): 4 units;
* one unit holds a 2x2 matrix per channel (4 * channels parameters), initialised from a normal distribution with mean
  0.5 and standard deviation 0.25 truncated at two standard deviations; out_seg = a_ss * seg + a_sr * reg,
  out_reg = a_rs * seg + a_rr * reg, channel by channel.

Trainable parameters: 779,576 (779,000 in the two streams plus 576 in the units; the paper prints "779,000").
The official PyTorch version's cross-stitch forward fails; this one is exercised by the tests (forward, backward and
the units' gradients).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .base import MTL_FILTERS, JRSNetwork
from .blocks import Decoder, Encoder, Head, init_conv_normal_

__all__ = ["CrossStitchUnit", "CrossStitchNet"]


class CrossStitchUnit(nn.Module):
    """Channel-wise linear mixing of two feature maps (Eq. 5.5). ``alphas[c]`` = [[a_ss, a_sr], [a_rs, a_rr]]."""

    def __init__(self, channels: int, mean: float = 0.5, std: float = 0.25) -> None:
        super().__init__()
        self.alphas = nn.Parameter(torch.empty(int(channels), 2, 2))
        nn.init.trunc_normal_(self.alphas, mean=mean, std=std, a=mean - 2 * std, b=mean + 2 * std)

    def forward(self, seg: torch.Tensor, reg: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        a = self.alphas.view(1, -1, 2, 2, 1, 1, 1).to(seg.dtype)
        out_seg = a[:, :, 0, 0] * seg + a[:, :, 0, 1] * reg
        out_reg = a[:, :, 1, 0] * seg + a[:, :, 1, 1] * reg
        return out_seg, out_reg


class CrossStitchNet(JRSNetwork):
    tasks = ("seg", "dvf")
    uses_contour_loss = True

    def __init__(self, num_classes: int = 5, filters: Sequence[int] = MTL_FILTERS, upsample: str = "trilinear",
                 seg_inputs: Sequence[str] = ("fixed",),
                 reg_inputs: Sequence[str] = ("fixed", "moving", "moving_seg")) -> None:
        super().__init__()
        self.seg_inputs, self.reg_inputs = tuple(seg_inputs), tuple(reg_inputs)
        self.inputs = tuple(n for n in ("fixed", "moving", "moving_seg") if n in self.seg_inputs + self.reg_inputs)
        self.num_classes = int(num_classes)
        self.filters = tuple(int(f) for f in filters)
        f0, f1, f2 = self.filters
        self.seg_encoder, self.reg_encoder = Encoder(len(self.seg_inputs), self.filters), Encoder(
            len(self.reg_inputs), self.filters)
        self.seg_decoder, self.reg_decoder = Decoder(self.filters, upsample), Decoder(self.filters, upsample)
        self.seg_heads = nn.ModuleList([Head(f0, self.num_classes), Head(f1, self.num_classes),
                                        Head(f2, self.num_classes)])
        self.dvf_heads = nn.ModuleList([Head(f0, 3), Head(f1, 3), Head(f2, 3)])
        init_conv_normal_(self)
        # units created after the conv initialisation (their own initialiser)
        self.units = nn.ModuleList([CrossStitchUnit(f0), CrossStitchUnit(f1), CrossStitchUnit(f2), CrossStitchUnit(f1)])

    def forward(self, fixed: torch.Tensor, moving: Optional[torch.Tensor] = None,
                moving_seg: Optional[torch.Tensor] = None) -> Dict[str, List[torch.Tensor]]:
        s = self.gather(self.seg_inputs, fixed, moving, moving_seg)
        r = self.gather(self.reg_inputs, fixed, moving, moving_seg)
        s, s1 = self.seg_encoder.stage(0, s)
        r, r1 = self.reg_encoder.stage(0, r)
        s, r = self.units[0](s, r)
        s, s4 = self.seg_encoder.stage(1, s)
        r, r4 = self.reg_encoder.stage(1, r)
        s, r = self.units[1](s, r)
        s_bottom, _ = self.seg_encoder.stage(2, s)
        r_bottom, _ = self.reg_encoder.stage(2, r)
        s, r = self.units[2](self.seg_decoder.up(s_bottom), self.reg_decoder.up(r_bottom))
        s_mid, r_mid = self.seg_decoder.level(0, s, s4), self.reg_decoder.level(0, r, r4)
        s, r = self.units[3](self.seg_decoder.up(s_mid), self.reg_decoder.up(r_mid))
        s_fine, r_fine = self.seg_decoder.level(1, s, s1), self.reg_decoder.level(1, r, r1)
        return {"seg": [h(f) for h, f in zip(self.seg_heads, (s_fine, s_mid, s_bottom))],
                "dvf": [h(f) for h, f in zip(self.dvf_heads, (r_fine, r_mid, r_bottom))]}
