"""Building blocks shared by the OrganCombo networks (Combo-loss network, 3D U-Net and V-Net baselines).

Every block works in 2D or 3D (``spatial_dims``), uses 'same' padding, and follows the OrganCombo paper's rules for
all models (Taghanaki et al., "Combo loss: Handling input and output imbalance in multi-organ segmentation",
Computerized Medical Imaging and Graphics 75, 2019, section 3): batch normalisation after every convolution and
Glorot/Xavier uniform initialisation (Glorot and Bengio, AISTATS 2010) of the convolution weights, biases at zero.

The blocks are generic (nothing OrganCombo-specific beyond those defaults); they could move to ``mednets`` once a
second module needs them.
"""

from __future__ import annotations

from typing import Optional, Sequence, Type

import torch
from torch import nn

__all__ = [
    "SPATIAL_DIMS",
    "ACTIVATIONS",
    "conv_type",
    "conv_transpose_type",
    "norm_type",
    "max_pool_type",
    "ConvNormAct",
    "ConvStack",
    "UpConvNorm",
    "OutputHead",
    "SigmoidSegmentationNet",
    "glorot_uniform_init_",
    "check_input",
    "level_widths",
]

#: Supported numbers of spatial axes.
SPATIAL_DIMS = (2, 3)
#: Activation names accepted by :class:`ConvNormAct` (None: no activation).
ACTIVATIONS = ("relu", "prelu", None)

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in SPATIAL_DIMS:
        raise ValueError(f"spatial_dims must be one of {SPATIAL_DIMS}, got {spatial_dims!r}")
    return int(spatial_dims)


def conv_type(spatial_dims: int) -> Type[nn.Module]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return _CONV[_check_dims(spatial_dims)]


def conv_transpose_type(spatial_dims: int) -> Type[nn.Module]:
    """``nn.ConvTranspose2d`` or ``nn.ConvTranspose3d``."""
    return _CONV_T[_check_dims(spatial_dims)]


def norm_type(spatial_dims: int) -> Type[nn.Module]:
    """``nn.BatchNorm2d`` or ``nn.BatchNorm3d``."""
    return _NORM[_check_dims(spatial_dims)]


def max_pool_type(spatial_dims: int) -> Type[nn.Module]:
    """``nn.MaxPool2d`` or ``nn.MaxPool3d``."""
    return _POOL[_check_dims(spatial_dims)]


def _activation(name: Optional[str], channels: int) -> Optional[nn.Module]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "prelu":
        return nn.PReLU(channels)  # one slope per channel, as in V-Net (Milletari et al. 2016)
    return None


class ConvNormAct(nn.Sequential):
    """Convolution -> batch normalisation -> activation (the activation may be left out).

    The convolution has ``kernel_size`` along every spatial axis; with ``stride=1`` it is 'same'-padded (odd kernels
    only), so the spatial size is kept; with ``stride > 1`` it is unpadded (used as a learned down-sampling with
    ``kernel_size == stride``). Trainable parameters::

        k^d * c_in * c_out  (+ c_out bias)  + 2 * c_out  (BN gamma, beta)  (+ c_out PReLU slopes)

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: channel counts.
        kernel_size: kernel edge length.
        stride: convolution stride.
        bias: give the convolution a bias (redundant before BN, but part of the counts of Keras-built models).
        activation: "relu", "prelu" (one slope per channel) or None.

    Shapes:
        input (B, in_channels, *spatial) -> output (B, out_channels, *spatial / stride).
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 bias: bool = True, activation: Optional[str] = "relu") -> None:
        if stride == 1 and kernel_size % 2 == 0:
            raise ValueError(f"'same' padding needs an odd kernel_size, got {kernel_size}")
        padding = kernel_size // 2 if stride == 1 else 0
        layers = [conv_type(spatial_dims)(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                          bias=bias),
                  norm_type(spatial_dims)(out_channels)]
        act = _activation(activation, out_channels)
        if act is not None:
            layers.append(act)
        super().__init__(*layers)


class ConvStack(nn.Sequential):
    """Consecutive :class:`ConvNormAct` blocks with output widths ``widths`` (e.g. (32, 64): two 3x3x3 convolutions,
    the first to 32 channels, the second to 64, as in one 3D U-Net level).

    Shapes:
        input (B, in_channels, *spatial) -> output (B, widths[-1], *spatial).
    """

    def __init__(self, spatial_dims: int, in_channels: int, widths: Sequence[int], kernel_size: int = 3,
                 bias: bool = True, activation: Optional[str] = "relu") -> None:
        if not widths:
            raise ValueError("widths must name at least one convolution")
        blocks = []
        for width in widths:
            blocks.append(ConvNormAct(spatial_dims, in_channels, width, kernel_size, bias=bias, activation=activation))
            in_channels = width
        super().__init__(*blocks)
        self.out_channels = int(widths[-1])


class UpConvNorm(nn.Sequential):
    """Transposed convolution with kernel = stride = ``factor`` (exact ``factor``-fold up-sampling) -> BN (-> act).

    Trainable parameters: ``factor^d * c_in * c_out (+ c_out bias) + 2 * c_out (+ c_out PReLU slopes)``.

    Shapes:
        input (B, in_channels, *spatial) -> output (B, out_channels, *spatial * factor).
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, factor: int = 2, bias: bool = True,
                 activation: Optional[str] = None) -> None:
        layers = [conv_transpose_type(spatial_dims)(in_channels, out_channels, factor, stride=factor, bias=bias),
                  norm_type(spatial_dims)(out_channels)]
        act = _activation(activation, out_channels)
        if act is not None:
            layers.append(act)
        super().__init__(*layers)


class OutputHead(nn.Sequential):
    """Final 1x1(x1) convolution to one channel per organ, optionally followed by batch normalisation.

    The head returns logits; the sigmoid is applied by :class:`SigmoidSegmentationNet`. With ``norm=True`` (the
    OrganCombo paper's "batch normalization after each convolution layer" taken literally, which is what its Table 2
    parameter count of the proposed network implies) the logits are batch-normalised per channel; gamma and beta
    then set the logit scale and offset.

    Trainable parameters: ``c_in * c_out + c_out (+ 2 * c_out with norm)``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm: bool = True) -> None:
        layers = [conv_type(spatial_dims)(in_channels, out_channels, 1, bias=True)]
        if norm:
            layers.append(norm_type(spatial_dims)(out_channels))
        super().__init__(*layers)


def glorot_uniform_init_(module: nn.Module) -> nn.Module:
    """Glorot/Xavier uniform weights for every (transposed) convolution of ``module``, zero biases; in place.

    Weights are drawn from U(-a, a) with ``a = sqrt(6 / (fan_in + fan_out))``, where for a kernel with ``r`` elements
    ``fan_in = c_in * r`` and ``fan_out = c_out * r`` (Keras' ``glorot_uniform``, PyTorch's ``xavier_uniform_``).
    Batch-norm layers keep gamma = 1, beta = 0 and PReLU slopes their 0.25 start. Returns ``module``.
    """
    for sub in module.modules():
        if isinstance(sub, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.xavier_uniform_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
    return module


def check_input(x: torch.Tensor, spatial_dims: int, in_channels: int, size_factor: int, name: str) -> None:
    """Raise ValueError unless ``x`` is (B, in_channels, *spatial) with every spatial size a multiple of
    ``size_factor`` (the network's total down-sampling factor)."""
    if x.ndim != spatial_dims + 2 or x.shape[1] != in_channels:
        raise ValueError(f"{name} expects input of shape (B, {in_channels}, " + ", ".join(["N"] * spatial_dims)
                         + f") ({spatial_dims}D, {in_channels} channel(s)), got {tuple(x.shape)}")
    sizes = tuple(int(s) for s in x.shape[2:])
    if any(s == 0 or s % size_factor for s in sizes):
        raise ValueError(f"{name} needs every spatial size to be a positive multiple of its total down-sampling "
                         f"factor {size_factor}, got spatial size {sizes} (e.g. the paper's 80^3 patches, or pad/crop "
                         f"to a multiple of {size_factor})")


class SigmoidSegmentationNet(nn.Module):
    """Base of the OrganCombo networks: one sigmoid probability per organ and voxel (no background channel).

    Subclasses implement :meth:`logits` and set ``spatial_dims``, ``in_channels``, ``out_channels`` and
    ``size_factor`` (input spatial sizes must be multiples of it). ``forward`` returns probabilities in [0, 1];
    losses that prefer logits (numerically safer BCE) call :meth:`logits` directly; ``output_activation`` names the
    activation that ``forward`` applies to them.
    """

    output_activation = "sigmoid"
    spatial_dims: int
    in_channels: int
    out_channels: int
    size_factor: int

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities ``sigmoid(logits(x))``: (B, in_channels, *spatial) -> (B, out_channels, *spatial)."""
        return torch.sigmoid(self.logits(x))

    def check_input(self, x: torch.Tensor) -> None:
        check_input(x, self.spatial_dims, self.in_channels, self.size_factor, type(self).__name__)


def level_widths(base_channels: int, num_levels: int, growth: int = 2) -> Sequence[int]:
    """``base_channels * growth**l`` for l = 0 .. num_levels - 1."""
    if base_channels < 1 or num_levels < 2:
        raise ValueError(f"need base_channels >= 1 and num_levels >= 2, got {base_channels} and {num_levels}")
    return [base_channels * growth ** level for level in range(num_levels)]
