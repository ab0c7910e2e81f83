"""V-Net baseline of the OrganCombo paper (Milletari et al. 2016), extended to one sigmoid channel per organ.

Milletari, Navab and Ahmadi, "V-Net: Fully Convolutional Neural Networks for Volumetric Medical Image Segmentation",
3DV 2016 (section 2, Fig. 2): five stages of 16, 32, 64, 128 and 256 channels with 1, 2, 3, 3 and 3 convolutions of
5x5x5 ('same'-padded); every stage learns a residual function (its input is added to the output of its last
convolution); between stages a 2x2x2 convolution with stride 2 halves the resolution and doubles the channels; the
right part mirrors the left with 2x2x2 de-convolutions (stride 2), whose output is concatenated with the
same-resolution left-part features, giving stages of 256, 128, 64 and 32 channels with 3, 3, 2 and 1 convolutions;
PReLU non-linearities; a final 1x1x1 convolution gives the outputs. As in the OrganCombo paper (Taghanaki et al., CMIG
2019, section 3) every convolution is followed by batch normalisation, weights are Glorot-uniform, and the head has one
sigmoid channel per organ instead of V-Net's two-class softmax::

    stage 1  conv5 1->16 (+ input)                         | down 2 -> 32
    stage 2  2 x conv5 32 (+ residual)                    | down 2 -> 64
    stage 3  3 x conv5 64                                 | down 2 -> 128
    stage 4  3 x conv5 128                                | down 2 -> 256
    stage 5  3 x conv5 256                                | up 2 -> 128
    right 4  [128 ++ 128] 3 x conv5 256 (+ residual)      | up 2 -> 64
    right 3  [64 ++ 64]   3 x conv5 128                   | up 2 -> 32
    right 2  [32 ++ 32]   2 x conv5 64                    | up 2 -> 16
    right 1  [16 ++ 16]   1 x conv5 32 -> head conv 1^3 -> out_channels, BN, sigmoid

Each convolution is conv -> BN -> PReLU, except a stage's last one, whose PReLU comes after the residual sum (as in the
public V-Net re-implementations). Stage 1's residual is the input image tiled along the channels to 16 (V-Net adds the
single-channel input to all 16 channels; with several input channels they are repeated cyclically). Trainable
parameters (3D, 1 input channel): 65,182,195 for 1 output, 65,182,335 for 5 organs. The paper's Table 2 gives
84,938,241 for its V-Net; no configuration consistent with Milletari et al.'s description reproduces that number (see
NETWORKS_NOTES.md). Input spatial sizes must be multiples of ``2 ** (len(convolutions) - 1)`` (16).
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from .blocks import ConvNormAct, OutputHead, SigmoidSegmentationNet, UpConvNorm, glorot_uniform_init_, level_widths

__all__ = ["VNet", "VNetStage"]


class VNetStage(nn.Module):
    """``num_convs`` 5^3 convolutions (conv -> BN -> PReLU) at constant width, plus the stage input (residual).

    The last convolution's PReLU is applied after the residual sum. Trainable parameters:
    ``num_convs * (k^d * c * c + c + 2c + c)`` (weights, bias, BN, PReLU), with ``c_in`` instead of ``c`` for the
    first convolution's input.

    Shapes:
        input (B, in_channels, *spatial) -> output (B, width, *spatial); a residual whose channel count differs from
        ``width`` is tiled along the channels (stage 1 only).
    """

    def __init__(self, spatial_dims: int, in_channels: int, width: int, num_convs: int, kernel_size: int = 5,
                 bias: bool = True) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"a V-Net stage needs at least one convolution, got {num_convs}")
        convs = []
        channels = in_channels
        for index in range(num_convs):
            last = index == num_convs - 1
            convs.append(ConvNormAct(spatial_dims, channels, width, kernel_size, bias=bias,
                                     activation=None if last else "prelu"))
            channels = width
        self.convs = nn.Sequential(*convs)
        self.activation = nn.PReLU(width)
        self.width = int(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        if residual.shape[1] != self.width:
            repeats = -(-self.width // residual.shape[1])
            residual = residual.repeat(1, repeats, *([1] * (x.ndim - 2)))[:, :self.width]
        return self.activation(self.convs(x) + residual)


class VNet(SigmoidSegmentationNet):
    """V-Net (Milletari et al. 2016) with batch normalisation and a sigmoid multi-organ head.

    Args:
        spatial_dims: 3, or 2 for a 2D V-Net of the same layout (5x5 kernels, 2x2 strided convolutions).
        in_channels: image channels.
        out_channels: organs, one sigmoid channel each; no background channel.
        base_channels: width of stage 1; stage ``l`` has ``b * 2^l`` channels and right stage ``l`` ``2 b * 2^l``.
        convolutions: convolutions per left stage (its length is the number of stages); right stage ``l`` repeats
            left stage ``l``'s count.
        kernel_size: edge of the stage convolutions (5 in V-Net).
        bias: biases in all convolutions.
        final_norm: batch-normalise the 1x1 head's logits (the OrganCombo paper's "BN after each convolution").

    Shapes:
        input (B, in_channels, *spatial) with every spatial size a multiple of
        ``size_factor = 2 ** (len(convolutions) - 1)``; :meth:`logits` and ``forward`` (probabilities in [0, 1])
        return (B, out_channels, *spatial).
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 5, base_channels: int = 16,
                 convolutions: Sequence[int] = (1, 2, 3, 3, 3), kernel_size: int = 5, bias: bool = True,
                 final_norm: bool = True) -> None:
        super().__init__()
        convolutions = tuple(int(n) for n in convolutions)
        widths = level_widths(base_channels, len(convolutions))
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.size_factor = 2 ** (len(convolutions) - 1)

        self.left = nn.ModuleList()
        self.down = nn.ModuleList()
        channels = in_channels
        for index, (width, num_convs) in enumerate(zip(widths, convolutions)):
            if index:
                self.down.append(ConvNormAct(spatial_dims, channels, width, kernel_size=2, stride=2, bias=bias,
                                             activation="prelu"))
                channels = width
            self.left.append(VNetStage(spatial_dims, channels, width, num_convs, kernel_size, bias=bias))
            channels = width
        self.up = nn.ModuleList()
        self.right = nn.ModuleList()
        for width, num_convs in zip(reversed(widths[:-1]), reversed(convolutions[:-1])):
            self.up.append(UpConvNorm(spatial_dims, channels, width, factor=2, bias=bias, activation="prelu"))
            self.right.append(VNetStage(spatial_dims, 2 * width, 2 * width, num_convs, kernel_size, bias=bias))
            channels = 2 * width
        self.head = OutputHead(spatial_dims, channels, out_channels, norm=final_norm)
        glorot_uniform_init_(self)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid outputs (B, out_channels, *spatial)."""
        self.check_input(x)
        features: List[torch.Tensor] = []
        for index, stage in enumerate(self.left):
            if index:
                x = self.down[index - 1](x)
            x = stage(x)
            features.append(x)
        features.pop()  # the bottom stage feeds the right part directly
        for up, stage in zip(self.up, self.right):
            x = stage(torch.cat([up(x), features.pop()], dim=1))
        return self.head(x)
