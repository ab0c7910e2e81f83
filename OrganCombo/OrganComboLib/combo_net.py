"""The OrganCombo paper's proposed network: a plain encoder-decoder without skip connections.

Taghanaki et al., "Combo loss: Handling input and output imbalance in multi-organ segmentation", Computerized Medical
Imaging and Graphics 75, 2019: Fig. 1 (3x3x3 convolutions, 2x2x2 max-pooling, 2x2x2 up-sampling), Table 2 (no skip
connections, "regular" up-sampling, 13,997,827 parameters), section 3 (batch normalisation after each convolution
layer, Glorot initialisation, sigmoid output without a background channel).

The paper gives the layer types but not the widths. The configuration below is the one that reproduces Table 2's count
exactly (see NETWORKS_NOTES.md for the search): a 3D U-Net of Cicek et al. (MICCAI 2016) with its skip connections
removed and parameter-free up-sampling::

    encoder  level 0: conv 3^3 -> 32, conv -> 64          (full size)
             level 1: max-pool 2, conv -> 64,  conv -> 128
             level 2: max-pool 2, conv -> 128, conv -> 256
             bottom : max-pool 2, conv -> 256, conv -> 512  (1/8 size)
    decoder  up 2 (nearest), conv -> 256, conv -> 256
             up 2 (nearest), conv -> 128, conv -> 128
             up 2 (nearest), conv -> 64,  conv -> 64
    head     conv 1^3 -> out_channels, BN, sigmoid

Every 3^3 convolution has a bias and is followed by batch normalisation and ReLU. Trainable parameters (3D): 13,997,827
for 1 input and 1 output channel (Table 2's number; the BN after the head adds the last 2), 13,998,095 for the PET
configuration (1 input channel, 5 organs). Input spatial sizes must be multiples of ``2 ** (num_levels - 1)`` (8).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvStack, OutputHead, SigmoidSegmentationNet, glorot_uniform_init_, level_widths, max_pool_type

__all__ = ["ComboNet"]


class ComboNet(SigmoidSegmentationNet):
    """Encoder-decoder without skip connections (the Combo-loss paper's proposed network, Fig. 1).

    Args:
        spatial_dims: 3 (volumes) or 2 (e.g. single ultrasound frames); kernels become 3x3, pooling 2x2.
        in_channels: image channels (1 for PET).
        out_channels: organs, one sigmoid channel each (5 for the paper's PET task: brain, heart, left kidney,
            right kidney, bladder); no background channel.
        base_channels: width of the first convolution; level ``l`` has widths ``(b * 2^l, b * 2^(l+1))``.
        num_levels: resolution levels including the bottom one (``num_levels - 1`` poolings).
        bias: biases in the 3^3 convolutions (present in the paper's Keras/TensorFlow count).
        final_norm: batch-normalise the 1x1 head's logits (the paper's count includes it).

    Shapes:
        input (B, in_channels, *spatial) with every spatial size a multiple of ``size_factor = 2 ** (num_levels - 1)``;
        :meth:`logits` and ``forward`` (probabilities in [0, 1]) return (B, out_channels, *spatial).
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 5, base_channels: int = 32,
                 num_levels: int = 4, bias: bool = True, final_norm: bool = True) -> None:
        super().__init__()
        widths = level_widths(base_channels, num_levels)
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.size_factor = 2 ** (num_levels - 1)

        self.encoder = nn.ModuleList()
        channels = in_channels
        for width in widths:
            level = ConvStack(spatial_dims, channels, (width, 2 * width), bias=bias)
            self.encoder.append(level)
            channels = level.out_channels
        self.pool = max_pool_type(spatial_dims)(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.decoder = nn.ModuleList()
        for width in reversed(widths[:-1]):
            level = ConvStack(spatial_dims, channels, (2 * width, 2 * width), bias=bias)
            self.decoder.append(level)
            channels = level.out_channels
        self.head = OutputHead(spatial_dims, channels, out_channels, norm=final_norm)
        glorot_uniform_init_(self)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid outputs (B, out_channels, *spatial)."""
        self.check_input(x)
        for index, level in enumerate(self.encoder):
            if index:
                x = self.pool(x)
            x = level(x)
        for level in self.decoder:
            x = level(self.up(x))
        return self.head(x)
