"""Building blocks of the JRS-MTL networks (Elmahdy et al., IEEE Access 2021; thesis chapter 5, section 5.2.1).

Layer facts (read, not copied, from moelmahdy/JRS-MTL at commit ad938ce, the TensorFlow 1 version that matches the
paper's parameter counts):

* fact from moelmahdy/JRS-MTL/graphs/models/custom_layers/Conv_LReLU_BN.py: one layer is a 3D convolution with bias,
  kernel initialiser N(0, 0.02), then LeakyReLU(0.2), then batch normalisation (decay 0.9, centre and scale: 2
  trainable parameters per channel); the 1x1x1 output convolutions have neither activation nor BN.
* fact from moelmahdy/JRS-MTL/graphs/models/STL.py: per level two valid 3x3x3 convolutions, then a stride-2 3x3x3
  convolution with TensorFlow "same" padding for the down-sampling; the decoder up-samples by 2 (Keras UpSampling3D,
  i.e. nearest) and concatenates [up-sampled, cropped skip]; skips are cropped by 4 (mid level) and 16 (fine level).

Up-sampling here defaults to trilinear, as the paper's text says (section 5.2.1); ``upsample="nearest"`` gives the TF1
code's behaviour. Neither has parameters, so the counts do not depend on it.

Output grids. For an input patch of n^3 voxels (n a multiple of 4, n >= 44) the three outputs have
(n/4 - 7)^3, (n/2 - 18)^3 and (n - 40)^3 voxels. Tracking which input voxel each output voxel is centred on (with the
TensorFlow "same" padding of the stride-2 convolutions: nothing before, one voxel after for even sizes) gives
``input index = offset + stride * output index`` with (offset, stride) = (20, 1) fine, (19, 2) mid, (17, 4) coarse.
:func:`output_grids` returns them; ground truths and warps at each resolution are sampled on these grids.
"""

from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvLReLUBN", "Head", "Encoder", "Decoder", "OutputGrid", "output_grids", "check_patch_size",
           "init_conv_normal_", "crop", "NETWORK_OUTPUTS"]

#: Keys of the dictionary every network returns: lists [fine, mid, coarse] of tensors, or absent.
NETWORK_OUTPUTS = ("seg", "dvf")

BN_EPS = 1e-3  # tf.contrib.layers.batch_norm default epsilon
BN_MOMENTUM = 0.1  # TF decay 0.9 (fact from Conv_LReLU_BN.py) == PyTorch momentum 0.1


class OutputGrid(NamedTuple):
    """Where one output resolution lies in the input patch: input index = offset + stride * output index."""

    offset: int
    stride: int
    size: int


def check_patch_size(n: int) -> int:
    n = int(n)
    if n % 4 != 0 or n < 44:
        raise ValueError(f"patch size must be a multiple of 4 and at least 44 voxels (got {n}); the paper uses 96")
    return n


def output_grids(n: int) -> List[OutputGrid]:
    """[fine, mid, coarse] output grids for an n^3 input (see the module docstring)."""
    n = check_patch_size(n)
    return [OutputGrid(20, 1, n - 40), OutputGrid(19, 2, n // 2 - 18), OutputGrid(17, 4, n // 4 - 7)]


def init_conv_normal_(module: nn.Module, std: float = 0.02) -> None:
    """Convolution kernels ~ N(0, std) (paper section 5.3.2), biases 0 (Keras default)."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def crop(x: torch.Tensor, c: int) -> torch.Tensor:
    """Crop ``c`` voxels from both sides of every spatial axis (Keras Cropping3D(c))."""
    if c == 0:
        return x
    return x[:, :, c:-c, c:-c, c:-c]


class ConvLReLUBN(nn.Module):
    """conv 3^3 (valid, or stride 2 with TF "same" padding) -> LeakyReLU(0.2) -> BN."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = int(stride)
        self.conv = nn.Conv3d(cin, cout, 3, stride=self.stride, padding=0, bias=True)
        self.act = nn.LeakyReLU(0.2)
        self.bn = nn.BatchNorm3d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            # TensorFlow "same" for kernel 3, stride 2: total pad = max(3 - (s % 2 or 2), 0); before = total // 2
            pads = []
            for s in reversed(x.shape[2:]):
                total = max(3 - (2 if s % 2 == 0 else 1), 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return self.bn(self.act(self.conv(x)))


class Head(nn.Module):
    """1x1x1 convolution (Fconv) in front of each deep-supervised output; no activation, no BN."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Encoder(nn.Module):
    """Down-sampling path. ``stages`` selects which of the three stages this module holds (SEDD splits after stage 1).

    Stage 0: conv f0, conv f0 (-> skip ``x1``), stride-2 conv f0.
    Stage 1: conv f1, conv f1 (-> skip ``x4``), stride-2 conv f1.
    Stage 2: conv f2, conv f2 (bottom ``x7``).
    """

    def __init__(self, cin: int, filters: Sequence[int], stages: Sequence[int] = (0, 1, 2)) -> None:
        super().__init__()
        f0, f1, f2 = (int(f) for f in filters)
        self.stages = tuple(stages)
        layers: Dict[str, nn.Module] = {}
        c = cin
        if 0 in self.stages:
            layers["c0"], layers["c1"], layers["down0"] = ConvLReLUBN(c, f0), ConvLReLUBN(f0, f0), ConvLReLUBN(f0, f0, 2)
            c = f0
        if 1 in self.stages:
            layers["c3"], layers["c4"], layers["down1"] = ConvLReLUBN(c, f1), ConvLReLUBN(f1, f1), ConvLReLUBN(f1, f1, 2)
            c = f1
        if 2 in self.stages:
            layers["c6"], layers["c7"] = ConvLReLUBN(c, f2), ConvLReLUBN(f2, f2)
        self.layers = nn.ModuleDict(layers)

    def stage(self, index: int, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Run one stage: returns (output, skip) (skip None for the bottom stage)."""
        L = self.layers
        if index == 0:
            skip = L["c1"](L["c0"](x))
            return L["down0"](skip), skip
        if index == 1:
            skip = L["c4"](L["c3"](x))
            return L["down1"](skip), skip
        return L["c7"](L["c6"](x)), None


class Decoder(nn.Module):
    """Up-sampling path: two levels, each up-sample x2, concatenate the cropped skip, conv, conv."""

    def __init__(self, filters: Sequence[int], upsample: str = "trilinear") -> None:
        super().__init__()
        f0, f1, f2 = (int(f) for f in filters)
        if upsample not in ("trilinear", "nearest"):
            raise ValueError("upsample must be 'trilinear' or 'nearest'")
        self.upsample = upsample
        self.c10, self.c11 = ConvLReLUBN(f2 + f1, f1), ConvLReLUBN(f1, f1)
        self.c14, self.c15 = ConvLReLUBN(f1 + f0, f0), ConvLReLUBN(f0, f0)

    def up(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample == "nearest":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)

    def level(self, index: int, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """index 0: mid level (skip x4 cropped by 4); index 1: fine level (skip x1 cropped by 16).

        ``x`` is already up-sampled (the cross-stitch network stitches between up-sampling and concatenation)."""
        if index == 0:
            return self.c11(self.c10(torch.cat([x, crop(skip, 4)], dim=1)))
        return self.c15(self.c14(torch.cat([x, crop(skip, 16)], dim=1)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
