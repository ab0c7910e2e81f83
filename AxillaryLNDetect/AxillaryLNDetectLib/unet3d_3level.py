"""Three-resolution-level 3D U-Net with valid convolutions (Altun et al., Fig. 3), used by both detection stages.

Altun, Chlebus, Jacobs, Meine, van Ginneken and Hahn, "Feasibility of end-to-end trainable two-stage U-Net for
detection of axillary lymph nodes in contrast-enhanced CT based scans on sparse annotations", section 2.1 and Fig. 3:

* three resolution levels, two unpadded ("valid") 3x3x3 convolutions per level; 2x2x2 max-pooling down, 2x2x2
  up-convolution with stride 2 up, skip connections by (centre-cropped) concatenation;
* batch normalisation after each convolution, ReLU non-linearity;
* dropout before each convolution of the bottleneck and of the up path (rate 0.25 when trained from random
  initialisation, 0.5 when fine-tuning the VOI network);
* the final layer is a 1x1x1 convolution followed by ReLU and softmax;
* input patch 72^3 -> output patch 32^3, approximate receptive field 44^3 voxels.

Sizes along each axis: 72 -(2 convs)-> 68 -pool-> 34 -> 30 -pool-> 15 -> 11 (bottleneck) -up-> 22 -> 18 -up-> 36 -> 32,
so 20 voxels are lost at each side (``output_crop``). Receptive field: 1 + 2*2 (level 1) + 1 (pool) + 2*2*2 (level 2)
+ 2 (pool) + 2*2*4 (bottleneck) + 2*2*2 (level 2 up) + 2*2 (level 1 up) = 44.

Channel widths are not given in the text (they are only drawn in Fig. 3, whose numbers the text does not reproduce).
The paper states 8,516,034 trainable parameters. A search over configurations (see README "Network") shows that the
count does not determine the widths: every regular family (widths doubling per level, decoder mirroring the encoder,
up-convolution keeping or halving the channels, with/without biases and batch-norm on the up-convolution and head)
misses it, while dozens of irregular width sets hit it exactly by coincidence. The default here is the closest regular
configuration:

    encoder (80, 80) | pool | (160, 160) | pool | bottleneck (320, 320)
    up-conv 2x2x2/2 320 -> 160, BN, ReLU; concat skip 160 -> (160, 160)
    up-conv 2x2x2/2 160 -> 80,  BN, ReLU; concat skip 80  -> (80, 80); head 1x1x1 80 -> 2, ReLU, softmax

with 8,468,642 trainable parameters (0.56 % below the paper). The irregular set ``EXACT_COUNT_OVERRIDES``
(widths 104/188/200, up-convolutions keeping the channels without BN, BN on the head) gives exactly 8,516,034 and is
kept only to document that the count is reachable; it is not claimed to be the authors' network.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["UNet3Level", "PAPER_PARAMETERS", "DEFAULT_PARAMETERS", "EXACT_COUNT_OVERRIDES", "UP_CHANNELS"]

#: Trainable parameters stated in the paper (Fig. 3 caption).
PAPER_PARAMETERS = 8_516_034
#: Trainable parameters of the default configuration (1 input channel, 2 classes).
DEFAULT_PARAMETERS = 8_468_642
#: An irregular configuration that hits the paper's count exactly (see the module docstring).
EXACT_COUNT_OVERRIDES: Dict[str, Any] = {
    "widths": (104, 188, 200), "up_channels": "same", "up_norm": False, "head_norm": True}
#: "half": the up-convolution halves the channels (e.g. 320 -> 160); "same": it keeps them.
UP_CHANNELS = ("half", "same")


def _conv_bn_relu(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    layers = []
    if dropout > 0:
        layers.append(nn.Dropout(p=dropout))
    layers += [nn.Conv3d(in_channels, out_channels, 3, padding=0), nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _centre_crop(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    slices = [slice(None), slice(None)]
    for size, target in zip(tensor.shape[2:], shape):
        start = (size - target) // 2
        slices.append(slice(start, start + target))
    return tensor[tuple(slices)]


class UNet3Level(nn.Module):
    """The paper's 3D U-Net (see the module docstring).

    Args:
        in_channels: image channels (1 for CT).
        out_channels: classes of the softmax (2: background, lymph node / VOI).
        widths: channels of the two convolutions of level 1, level 2 and the bottleneck.
        up_channels: one of :data:`UP_CHANNELS`.
        up_norm: batch normalisation (and ReLU) after each up-convolution.
        head_norm: batch normalisation after the 1x1x1 head (before its ReLU).
        dropout: rate of the dropout before each convolution of the bottleneck and the up path (paper: 0.25 from
            random initialisation, 0.5 when fine-tuning).

    Shapes:
        input (B, in_channels, n, n, n) with n a valid input size (:meth:`output_size`; 72 -> 32); ``forward`` returns
        softmax probabilities (B, out_channels, n - 40, ...); :meth:`logits` the pre-softmax scores (after the
        head's ReLU), suitable for ``torch.nn.functional.cross_entropy``.
    """

    #: Voxels lost at each side of each axis.
    output_crop = 20
    #: Approximate receptive field (voxels per axis).
    receptive_field = 44
    output_activation = "softmax"

    def __init__(self, in_channels: int = 1, out_channels: int = 2, widths: Sequence[int] = (80, 160, 320),
                 up_channels: str = "half", up_norm: bool = True, head_norm: bool = False,
                 dropout: float = 0.25) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be three positive channel numbers (level 1, level 2, bottleneck), "
                             f"got {widths}")
        if up_channels not in UP_CHANNELS:
            raise ValueError(f"up_channels must be one of {UP_CHANNELS}, got {up_channels!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if int(in_channels) < 1 or int(out_channels) < 2:
            raise ValueError(f"need in_channels >= 1 and out_channels >= 2 (softmax classes), "
                             f"got {in_channels}, {out_channels}")
        w1, w2, w3 = widths
        self.in_channels, self.out_channels, self.widths = int(in_channels), int(out_channels), widths
        self.dropout_rate = float(dropout)
        self.config: Dict[str, Any] = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                                       "widths": widths, "up_channels": up_channels, "up_norm": bool(up_norm),
                                       "head_norm": bool(head_norm), "dropout": self.dropout_rate}
        self.level1 = nn.Sequential(_conv_bn_relu(in_channels, w1, 0.0), _conv_bn_relu(w1, w1, 0.0))
        self.level2 = nn.Sequential(_conv_bn_relu(w1, w2, 0.0), _conv_bn_relu(w2, w2, 0.0))
        self.bottleneck = nn.Sequential(_conv_bn_relu(w2, w3, dropout), _conv_bn_relu(w3, w3, dropout))
        self.pool = nn.MaxPool3d(2)
        up2 = w3 // 2 if up_channels == "half" else w3
        self.up2 = self._up(w3, up2, up_norm)
        self.decoder2 = nn.Sequential(_conv_bn_relu(up2 + w2, w2, dropout), _conv_bn_relu(w2, w2, dropout))
        up1 = w2 // 2 if up_channels == "half" else w2
        self.up1 = self._up(w2, up1, up_norm)
        self.decoder1 = nn.Sequential(_conv_bn_relu(up1 + w1, w1, dropout), _conv_bn_relu(w1, w1, dropout))
        head = [nn.Conv3d(w1, out_channels, 1)]
        if head_norm:
            head.append(nn.BatchNorm3d(out_channels))
        head.append(nn.ReLU())
        self.head = nn.Sequential(*head)

    @staticmethod
    def _up(in_channels: int, out_channels: int, norm: bool) -> nn.Sequential:
        layers = [nn.ConvTranspose3d(in_channels, out_channels, 2, stride=2)]
        if norm:
            layers += [nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True)]
        return nn.Sequential(*layers)

    def set_dropout(self, rate: float) -> None:
        """Change the dropout rate (e.g. 0.5 when fine-tuning the VOI network for LN detection)."""
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {rate}")
        self.dropout_rate = float(rate)
        self.config["dropout"] = self.dropout_rate
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = self.dropout_rate

    # ----------------------------------------------------------------------------------------------------- sizes
    @staticmethod
    def output_size(input_size: int) -> Optional[int]:
        """Output size along one axis for ``input_size`` (``input_size - 40``), or None when it does not fit.

        Valid input sizes are ``44 + 4k`` (k >= 0): both poolings need even sizes and the bottleneck at least 4 voxels.
        """
        n = int(input_size)
        if n < 44 or (n - 44) % 4:
            return None
        return n - 2 * UNet3Level.output_crop

    @classmethod
    def valid_input_size(cls, minimum_output: int) -> int:
        """Smallest valid input size whose output is at least ``minimum_output`` voxels."""
        n = 44
        while True:
            out = cls.output_size(n)
            if out is not None and out >= minimum_output:
                return n
            n += 1

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5:
            raise ValueError(f"input must be (B, C, D, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"input has {x.shape[1]} channels, the network takes {self.in_channels}")
        bad = [s for s in x.shape[2:] if self.output_size(s) is None]
        if bad:
            raise ValueError(f"spatial sizes {tuple(x.shape[2:])} do not fit the valid-convolution U-Net; valid sizes "
                             f"are 44 + 4k (e.g. 72 -> output 32)")

    # --------------------------------------------------------------------------------------------------- forward
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Scores after the head's ReLU (B, out_channels, *output_size); softmax of these is :meth:`forward`."""
        self.check_input(x)
        skip1 = self.level1(x)
        skip2 = self.level2(self.pool(skip1))
        x = self.bottleneck(self.pool(skip2))
        x = self.up2(x)
        x = self.decoder2(torch.cat([x, _centre_crop(skip2, x.shape[2:])], dim=1))
        x = self.up1(x)
        x = self.decoder1(torch.cat([x, _centre_crop(skip1, x.shape[2:])], dim=1))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__.append("count_parameters")

