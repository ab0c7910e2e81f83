"""3D U-Net baseline of the OrganCombo paper (Cicek et al. 2016), extended to one sigmoid channel per organ.

Cicek, Abdulkadir, Lienkamp, Brox and Ronneberger, "3D U-Net: Learning Dense Volumetric Segmentation from Sparse
Annotation", MICCAI 2016 (section 2): three resolution steps down and up; each analysis level has two 3x3x3
convolutions, the second doubling the channels (32-64, 64-128, 128-256, bottom 256-512), each followed by batch
normalisation and ReLU, then 2x2x2 max-pooling; each synthesis level has a 2x2x2 up-convolution with stride 2 (keeping
the channels), concatenation with the same-resolution analysis features, and two 3x3x3 convolutions (256, 128, 64);
a final 1x1x1 convolution gives the outputs. Cicek et al. use valid convolutions and 3 softmax classes; here, as in the
OrganCombo paper (Taghanaki et al., CMIG 2019, section 3, "we extend 3D U-Net ... from binary to multi-class"), the
convolutions are 'same'-padded, every convolution (up-convolution and head included) is followed by batch
normalisation, weights are Glorot-uniform and the head has one sigmoid channel per organ::

    encoder  32-64 | pool 128-... : (32, 64), (64, 128), (128, 256), bottom (256, 512)
    decoder  upconv 512 ++ 256 -> (256, 256); upconv 256 ++ 128 -> (128, 128); upconv 128 ++ 64 -> (64, 64)
    head     conv 1^3 -> out_channels, BN, sigmoid

Trainable parameters (3D, 1 input channel): 19,075,727 for 5 organs, 19,075,459 for 1 output. The paper's Table 2
gives 12,226,243 for its 3D U-Net; no configuration consistent with Cicek et al.'s description reproduces that number
(see NETWORKS_NOTES.md); ``upsampling="nearest"`` (parameter-free up-sampling, as in the proposed network) gives
16,320,527 / 16,320,259. Input spatial sizes must be multiples of ``2 ** (num_levels - 1)`` (8).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import (ConvStack, OutputHead, SigmoidSegmentationNet, UpConvNorm, glorot_uniform_init_, level_widths,
                     max_pool_type)

__all__ = ["UNet3D", "UPSAMPLING_MODES"]

#: "transpose": 2x2x2 up-convolution with stride 2 (Cicek et al.); "nearest": parameter-free nearest up-sampling.
UPSAMPLING_MODES = ("transpose", "nearest")


class UNet3D(SigmoidSegmentationNet):
    """3D U-Net (Cicek et al. 2016) with skip connections, batch normalisation and a sigmoid multi-organ head.

    Args:
        spatial_dims: 3, or 2 for a 2D U-Net of the same layout (3x3 kernels, 2x2 pooling).
        in_channels: image channels.
        out_channels: organs, one sigmoid channel each; no background channel.
        base_channels: width of the first convolution; analysis level ``l`` has widths ``(b * 2^l, b * 2^(l+1))``
            and synthesis level ``l`` two convolutions of ``b * 2^(l+1)``.
        num_levels: resolution levels including the bottom one (``num_levels - 1`` poolings).
        upsampling: one of :data:`UPSAMPLING_MODES`.
        bias: biases in all convolutions.
        final_norm: batch-normalise the 1x1 head's logits (the OrganCombo paper's "BN after each convolution").

    Shapes:
        input (B, in_channels, *spatial) with every spatial size a multiple of ``size_factor = 2 ** (num_levels - 1)``;
        :meth:`logits` and ``forward`` (probabilities in [0, 1]) return (B, out_channels, *spatial).
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 5, base_channels: int = 32,
                 num_levels: int = 4, upsampling: str = "transpose", bias: bool = True,
                 final_norm: bool = True) -> None:
        super().__init__()
        if upsampling not in UPSAMPLING_MODES:
            raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}")
        widths = level_widths(base_channels, num_levels)
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.size_factor = 2 ** (num_levels - 1)
        self.upsampling = upsampling

        self.encoder = nn.ModuleList()
        skip_channels = []
        channels = in_channels
        for width in widths:
            level = ConvStack(spatial_dims, channels, (width, 2 * width), bias=bias)
            self.encoder.append(level)
            channels = level.out_channels
            skip_channels.append(channels)
        self.pool = max_pool_type(spatial_dims)(2)
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for width, skip in zip(reversed(widths[:-1]), reversed(skip_channels[:-1])):
            if upsampling == "transpose":
                self.ups.append(UpConvNorm(spatial_dims, channels, channels, factor=2, bias=bias))
            else:
                self.ups.append(nn.Upsample(scale_factor=2, mode="nearest"))
            level = ConvStack(spatial_dims, channels + skip, (2 * width, 2 * width), bias=bias)
            self.decoder.append(level)
            channels = level.out_channels
        self.head = OutputHead(spatial_dims, channels, out_channels, norm=final_norm)
        glorot_uniform_init_(self)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid outputs (B, out_channels, *spatial)."""
        self.check_input(x)
        skips = []
        for index, level in enumerate(self.encoder):
            if index:
                x = self.pool(x)
            x = level(x)
            skips.append(x)
        skips.pop()  # the bottom level feeds the decoder directly
        for up, level in zip(self.ups, self.decoder):
            x = level(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)
