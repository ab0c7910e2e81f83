"""GLIA-Net: global positioning network + local segmentation network with gated skip connections.

Bo et al., "Toward human intervention-free clinical diagnosis of intracranial aneurysm via deep neural network",
Patterns 2 (2021) 100197: main text ("Global positioning network", "Local segmentation network") and Supplemental
Experimental Procedures ("Model Structure"). Layer details the paper leaves open are facts read from the authors'
official code (public repository MeteorsHub/GLIA-Net, files ``model/GLIA-Net.py``, ``model/global_positioning.py``,
``model/layers.py`` and ``configs/GLIA-Net.yaml``); this is an independent implementation with its own layout::

    residual bottleneck (in -> out): 1^3 conv to out/2, GN, LReLU, 3^3 conv, GN, LReLU, 1^3 conv to out,
        + shortcut (identity, or a 1^3 conv when in != out), then GN, LReLU      [fact from model/GLIA-Net.py]
    every convolution is bias-free except the gates, the global head's last layer and the output head;
    GroupNorm(4 groups), LeakyReLU(0.01)                                       [facts from model/layers.py, config]

    global feature generator (96^3 global image, 3 HU channels):
        8 @96, 16 @48 (max-pool 2), 32 @24 (max-pool 2), 64 @24, 128 @24    -> global feature map, stride 4
    ROI pooling: the patch's box (inclusive voxel box in the 96^3 global image) divided by 4, rounded, clipped to the
        feature map, the cropped features adaptive-max-pooled to 6^3          [fact from model/global_positioning.py]
    local feature generator: 64 @6, 32 @6                                      -> "global feature" (B, 32, 6, 6, 6)
    global head: 3^3 conv 32 -> 16, GN, LReLU, global max pool, 1^3 conv 16 -> 2 (with bias)  -> 2 logits
    gates (skips 0..2, not the bottleneck): adaptive-avg-pool of the global feature to the skip's size,
        1^3 conv 32 -> C (with bias), sigmoid; multiplied onto the skip

    local encoder (96^3 patch): 16 @96, 32 @48, 64 @24, 128 @12 (max-pool 2 before levels 1..3)
    local decoder: ConvTranspose3d(k3, s2, p1, output_padding 1, C -> C, no bias), concat gated skip, GN, LReLU,
        residual bottleneck -> 64, 32, 16
    output head: 3^3 conv 16 -> 2 with bias (the official code's output layer; the paper only says "a final
        convolution layer whose output channel is 2")

With the paper's configuration the network has 1,066,704 trainable parameters, the count of the official model class
(``GLIANet(in_channels=3, out_channels=2, with_global=True, f_maps=[16, 32, 64, 128], norm_type="gn")``), measured by
running that class (see the module README). :func:`convert_official_state_dict` maps a checkpoint of the official code
onto this layout.
"""

from __future__ import annotations

import math
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GLIANet", "ResidualBottleneck", "convert_official_state_dict", "GLOBAL_IMAGE_SIZE",
           "GLOBAL_FEATURE_STRIDE", "ROI_POOL_SIZE"]

#: The global image is the whole CTA resized (aspect kept, zero padded) to this size (paper, Supplemental "Input
#: Transformation"); patch boxes are given in its voxel coordinates.
GLOBAL_IMAGE_SIZE = 96
#: Stride of the global feature map (two max-pools) [fact from model/global_positioning.py].
GLOBAL_FEATURE_STRIDE = 4
#: ROI pooling output size (paper: "reshaped to 6x6x6").
ROI_POOL_SIZE = 6


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with ``groups`` groups (4 in the paper configuration, where every width is a multiple of 4); reduced
    to the largest common divisor for narrow variants (e.g. 2 channels in the small demo network)."""
    return nn.GroupNorm(math.gcd(int(groups), int(channels)), channels)


class ResidualBottleneck(nn.Module):
    """1-3-1 bottleneck residual block; the sum is normalised and activated (post-activation)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 4, slope: float = 0.01) -> None:
        super().__init__()
        mid = out_channels // 2
        self.reduce = nn.Conv3d(in_channels, mid, 1, bias=False)
        self.reduce_norm = _norm(mid, groups)
        self.spatial = nn.Conv3d(mid, mid, 3, padding=1, bias=False)
        self.spatial_norm = _norm(mid, groups)
        self.expand = nn.Conv3d(mid, out_channels, 1, bias=False)
        self.out_norm = _norm(out_channels, groups)
        self.shortcut = nn.Conv3d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None
        self.slope = float(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        y = F.leaky_relu(self.reduce_norm(self.reduce(x)), self.slope)
        y = F.leaky_relu(self.spatial_norm(self.spatial(y)), self.slope)
        return F.leaky_relu(self.out_norm(self.expand(y) + identity), self.slope)


class _Level(nn.Module):
    """Optional 2x max-pool followed by one residual bottleneck (the paper's "encode block")."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, groups: int, slope: float) -> None:
        super().__init__()
        self.downsample = bool(downsample)
        self.block = ResidualBottleneck(in_channels, out_channels, groups, slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            x = F.max_pool3d(x, 2)
        return self.block(x)


class _UpLevel(nn.Module):
    """Transposed convolution (x2), concatenation with the gated skip, GN, LReLU, residual bottleneck."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, groups: int, slope: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(in_channels, in_channels, 3, stride=2, padding=1, output_padding=1, bias=False)
        self.norm = _norm(in_channels + skip_channels, groups)
        self.block = ResidualBottleneck(in_channels + skip_channels, out_channels, groups, slope)
        self.slope = float(slope)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.up(x), skip], dim=1)
        return self.block(F.leaky_relu(self.norm(x), self.slope))


class _GlobalHead(nn.Module):
    """Patch-level aneurysm classifier on the global feature: conv 3^3, GN, LReLU, global max pool, 1^3 conv."""

    def __init__(self, channels: int, classes: int, groups: int, slope: float) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels // 2, 3, padding=1, bias=False)
        self.norm = _norm(channels // 2, groups)
        self.classifier = nn.Conv3d(channels // 2, classes, 1)
        self.slope = float(slope)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.norm(self.conv(feature)), self.slope)
        x = F.adaptive_max_pool3d(x, 1)
        return self.classifier(x).flatten(1)


class _Gate(nn.Module):
    """sigmoid(conv 1^3(adaptive-avg-pool(global feature to the skip's size))): the skip-connection gate."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, out_channels, 1)

    def forward(self, feature: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return torch.sigmoid(self.conv(F.adaptive_avg_pool3d(feature, tuple(int(s) for s in size))))


class GLIANet(nn.Module):
    """GLIA-Net (paper defaults: 3 HU-window channels in, 2 classes out, widths 16/32/64/128, GN 4 groups).

    Args:
        in_channels: input channels (3 HU windows).
        out_channels: segmentation classes (2: background, aneurysm; softmax).
        widths: local encoder widths (the decoder mirrors the first three).
        global_channels: width of the global feature (32 = 2 x widths[0] in the official code); the global
            feature generator has widths c/4, c/2, c, 2c, 4c, the local feature generator 2c, c.
        global_classes: logits of the global head (2, softmax).
        groups: GroupNorm groups (4).
        negative_slope: LeakyReLU slope (0.01).
        with_global: False gives the plain local network (the paper's ablation "w/o global positioning network").

    Forward:
        ``model(local, global_image, boxes)`` -> ``(segmentation_logits (B, out, *local), global_logits (B, 2))``;
        ``local`` (B, C, D, H, W) with sizes multiples of 8, ``global_image`` (B, C, 96, 96, 96) or a precomputed
        global feature map (pass ``global_features=``), ``boxes`` (B, 6) float/int: inclusive voxel box of the
        patch in the global image, ``(d0, d1, h0, h1, w0, w1)`` (the official code's convention).
        Without the global branch ``model(local)`` returns the segmentation logits only.
    """

    size_factor = 8

    def __init__(self, in_channels: int = 3, out_channels: int = 2, widths: Sequence[int] = (16, 32, 64, 128),
                 global_channels: int = 32, global_classes: int = 2, groups: int = 4,
                 negative_slope: float = 0.01, with_global: bool = True) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2:
            raise ValueError(f"widths needs at least two levels, got {widths}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.widths = widths
        self.with_global = bool(with_global)
        self.size_factor = 2 ** (len(widths) - 1)
        self.output_activation = "softmax"
        slope = float(negative_slope)
        self.encoder = nn.ModuleList(
            _Level(in_channels if i == 0 else widths[i - 1], w, i > 0, groups, slope) for i, w in enumerate(widths))
        self.decoder = nn.ModuleList(
            _UpLevel(widths[i], widths[i - 1], widths[i - 1], groups, slope) for i in range(len(widths) - 1, 0, -1))
        self.head = nn.Conv3d(widths[0], out_channels, 3, padding=1)
        if self.with_global:
            c = int(global_channels)
            g_widths = (c // 4, c // 2, c, 2 * c, 4 * c)
            g_down = (False, True, True, False, False)
            self.global_encoder = nn.ModuleList(
                _Level(in_channels if i == 0 else g_widths[i - 1], w, g_down[i], groups, slope)
                for i, w in enumerate(g_widths))
            self.roi_features = nn.ModuleList([_Level(4 * c, 2 * c, False, groups, slope),
                                               _Level(2 * c, c, False, groups, slope)])
            self.global_head = _GlobalHead(c, global_classes, groups, slope)
            self.gates = nn.ModuleList(_Gate(c, w) for w in widths[:-1])

    # ------------------------------------------------------------------------------------------------ global branch
    def global_feature_map(self, global_image: torch.Tensor) -> torch.Tensor:
        """Global feature map (B, 4c, 24, 24, 24) of the resized whole image (B, C, 96, 96, 96)."""
        x = global_image
        for level in self.global_encoder:
            x = level(x)
        return x

    @staticmethod
    def roi_pool(feature_map: torch.Tensor, boxes: torch.Tensor, stride: int = GLOBAL_FEATURE_STRIDE,
                 size: int = ROI_POOL_SIZE) -> torch.Tensor:
        """Crop each sample's box (global-image voxels, inclusive) from the feature map and max-pool it to size^3.

        Boxes are divided by ``stride`` and rounded half to even (torch.round), starts clipped to [0, n-1], ends to
        [start, n-1] [fact from model/global_positioning.py]. ``feature_map`` may have batch 1 (shared by all boxes).
        """
        boxes = torch.round(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 6) / stride).to(torch.int64)
        shape = feature_map.shape[2:]
        pooled = []
        for index, box in enumerate(boxes.tolist()):
            source = feature_map[index if feature_map.shape[0] > 1 else 0]
            slices = []
            for axis in range(3):
                n = int(shape[axis])
                start = min(max(box[2 * axis], 0), n - 1)
                end = min(max(box[2 * axis + 1], start), n - 1)
                slices.append(slice(start, end + 1))
            pooled.append(F.adaptive_max_pool3d(source[(slice(None), *slices)], size))
        return torch.stack(pooled)

    def global_feature(self, boxes: torch.Tensor, global_image: Optional[torch.Tensor] = None,
                       global_features: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The patch's global feature (B, c, 6, 6, 6) from the global image or a precomputed feature map."""
        if global_features is None:
            if global_image is None:
                raise ValueError("GLIA-Net needs the global image (or its feature map) and the patch boxes")
            global_features = self.global_feature_map(global_image)
        x = self.roi_pool(global_features, boxes.to(global_features.device) if torch.is_tensor(boxes) else boxes)
        for level in self.roi_features:
            x = level(x)
        return x

    # ------------------------------------------------------------------------------------------------ forward
    def check_input(self, local: torch.Tensor) -> None:
        if local.dim() != 5 or local.shape[1] != self.in_channels:
            raise ValueError(f"GLIA-Net expects (B, {self.in_channels}, D, H, W) input, got {tuple(local.shape)}")
        bad = [s for s in local.shape[2:] if s % self.size_factor]
        if bad:
            raise ValueError(f"GLIA-Net input sizes must be multiples of {self.size_factor}, got "
                             f"{tuple(local.shape[2:])}")

    @staticmethod
    def pack(local: torch.Tensor, global_image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """One tensor (B, 2C + 1, *patch) holding patch, global image and box, for training engines that pass a
        single input tensor to the model: channels ``[0, C)`` the patch, ``[C, 2C)`` the global image (same size as
        the patch), channel 2C holds the six box values in its first row. ``model(packed)`` unpacks it."""
        if local.shape[2:] != global_image.shape[2:]:
            raise ValueError(f"packing needs the patch and the global image of the same size, got "
                             f"{tuple(local.shape[2:])} and {tuple(global_image.shape[2:])}")
        plane = torch.zeros((local.shape[0], 1) + tuple(local.shape[2:]), dtype=local.dtype, device=local.device)
        plane.view(local.shape[0], -1)[:, :6] = torch.as_tensor(boxes, dtype=local.dtype, device=local.device)
        return torch.cat([local, global_image.to(local.dtype), plane], dim=1)

    def forward(self, local: torch.Tensor, global_image: Optional[torch.Tensor] = None,
                boxes: Optional[torch.Tensor] = None, global_features: Optional[torch.Tensor] = None):
        packed = 2 * self.in_channels + 1
        if (self.with_global and global_image is None and boxes is None and global_features is None
                and local.dim() == 5 and local.shape[1] == packed):
            c = self.in_channels
            boxes = local[:, 2 * c].reshape(local.shape[0], -1)[:, :6].round()
            local, global_image = local[:, :c], local[:, c:2 * c]
        self.check_input(local)
        feature = None
        if self.with_global:
            if boxes is None:
                raise ValueError("GLIA-Net needs the patch boxes in the global image (boxes=)")
            feature = self.global_feature(boxes, global_image, global_features)
        x = local
        skips: List[torch.Tensor] = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        skips.pop()
        if feature is not None:
            skips = [gate(feature, skip.shape[2:]) * skip for gate, skip in zip(self.gates, skips)]
        for level in self.decoder:
            x = level(x, skips.pop())
        logits = self.head(x)
        if feature is None:
            return logits
        return logits, self.global_head(feature)


# ------------------------------------------------------------------------------------------- official checkpoints

_BLOCK_PARTS = {"conv1": "reduce", "bn1": "reduce_norm", "conv2": "spatial", "bn2": "spatial_norm",
                "conv3": "expand", "bn3": "out_norm", "res_conv": "shortcut"}

# Official key layout: facts from MeteorsHub/GLIA-Net model/GLIA-Net.py (encoder_blocks, decoder_blocks,
# localizer_adaptor, localizer_loss, output_conv) and model/global_positioning.py (global_localizer.feature_generator
# .encode_block1..5, global_localizer.localizer_generator.encode_block1..2). Each rule: pattern -> function of the
# match giving our key prefix; the parameter name (weight/bias) follows.
_PARAM = r"\.(weight|bias)"
_BLOCK = r"\.(conv1|bn1|conv2|bn2|conv3|bn3|res_conv)" + _PARAM
_RULES = (
    (r"encoder_blocks\.(\d+)\.residual_block1" + _BLOCK, lambda m: f"encoder.{m[1]}.block.{_BLOCK_PARTS[m[2]]}"),
    (r"decoder_blocks\.(\d+)\.residual_blocks\.residual_block1" + _BLOCK,
     lambda m: f"decoder.{m[1]}.block.{_BLOCK_PARTS[m[2]]}"),
    (r"decoder_blocks\.(\d+)\.de_conv" + _PARAM, lambda m: f"decoder.{m[1]}.up"),
    (r"decoder_blocks\.(\d+)\.bn" + _PARAM, lambda m: f"decoder.{m[1]}.norm"),
    (r"output_conv" + _PARAM, lambda m: "head"),
    (r"global_localizer\.feature_generator\.encode_block(\d+)\.residual_block1" + _BLOCK,
     lambda m: f"global_encoder.{int(m[1]) - 1}.block.{_BLOCK_PARTS[m[2]]}"),
    (r"global_localizer\.localizer_generator\.encode_block(\d+)\.residual_block1" + _BLOCK,
     lambda m: f"roi_features.{int(m[1]) - 1}.block.{_BLOCK_PARTS[m[2]]}"),
    (r"localizer_adaptor\.(\d+)\.conv" + _PARAM, lambda m: f"gates.{m[1]}.conv"),
    (r"localizer_loss\.conv1" + _PARAM, lambda m: "global_head.conv"),
    (r"localizer_loss\.bn1" + _PARAM, lambda m: "global_head.norm"),
    (r"localizer_loss\.conv2" + _PARAM, lambda m: "global_head.classifier"),
)


def _official_to_ours(key: str) -> Optional[str]:
    for pattern, prefix in _RULES:
        match = re.fullmatch(pattern, key)
        if match is not None:
            return f"{prefix(match)}.{match.groups()[-1]}"
    return None


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Map a state dict of the official GLIA-Net code onto :class:`GLIANet`'s keys.

    Accepts the model's ``state_dict()``, a checkpoint dict holding it under ``"model_state_dict"`` (the official
    release format) and keys prefixed by ``module.`` (``DataParallel``). Tensors are kept as they are (same shapes,
    same meaning). Raises ``KeyError`` naming the keys it cannot place (e.g. a BatchNorm checkpoint with running
    statistics, or another network).
    """
    if "model_state_dict" in state_dict and isinstance(state_dict["model_state_dict"], Mapping):
        state_dict = state_dict["model_state_dict"]
    converted: Dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        name = key[len("module."):] if key.startswith("module.") else key
        ours = _official_to_ours(name)
        if ours is None:
            unknown.append(key)
        else:
            converted[ours] = value
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise KeyError(f"not a GroupNorm GLIA-Net checkpoint of the official code: cannot map {shown}")
    return converted
