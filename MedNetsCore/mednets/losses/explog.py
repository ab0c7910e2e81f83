"""GLIA-Net losses: exponential-logarithmic Dice, pyramid-weighted exponential cross-entropy, and the total loss.

Bo et al., "Toward human intervention-free clinical diagnosis of intracranial aneurysm via deep neural network",
Patterns 2 (2021), Experimental Procedures ("Local segmentation network") and Supplemental Figure S4; the exponential
logarithmic loss is Wong et al., MICCAI 2018. Details the paper leaves open are facts read from the authors' official
code (MeteorsHub/GLIA-Net ``utils/losses.py``: ``ExpLoss``, ``get_pyramid_weights``; ``core.py``)::

    Dice term   L_dice = (-ln((2 sum(p y) + s) / (sum(y) + sum(p) + s)))^gamma_dice      per item, then mean
                with p the aneurysm probability, smooth s = 1, -ln(...) clamped at >= 1e-8 before the power
    CE term     L_ce = mean_x( w(x) * (ce(x))^gamma_ce )                                 per item, then mean
                with ce(x) the softmax cross-entropy of voxel x, clamped at >= 1e-8 before the power, and w the
                pyramid weight (the weight multiplies the powered cross-entropy, as in the official code and in the
                paper's formula ``E(w_p (-(y ln y^ + (1-y) ln(1-y^)))^gamma)``)
    local       L_local = w_dice L_dice + w_ce L_ce          paper 0.8 / 0.2 (official training config 0.2 / 0.8)
    total       L_total = w_global CE(global logits, patch label) + w_local L_local          paper 0.1 / 1.0

Pyramid weights (paper Fig. S4, official ``get_pyramid_weights``): the label map is eroded step by step by a 3x3x3
minimum filter (voxels outside the patch do not erode it) while the remaining mask has more than ``size_threshold / 20``
voxels; the label and all its erosions are summed into S. Aneurysm voxels get ``lo + (hi - lo) * S / max(S)``
(``(lo, hi) = (3, 20)``), background voxels ``negative_weight`` (1.0). Targets with more than ``size_threshold`` (400)
voxels get the fixed weight ``(lo + hi) / 2`` = 11.5. The paper applies the rule per target ("we only compute pyramid
weights for small targets less than 400 voxels"), the official code per patch (all aneurysm voxels of the patch
together): ``per_target=True`` (default) follows the paper, ``False`` the code.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .targets import check_reduction

__all__ = ["pyramid_weights", "ExpLogDiceLoss", "PyramidCrossEntropyLoss", "ExpLogLoss", "GLIANetLoss"]


def _erode(mask: torch.Tensor) -> torch.Tensor:
    """3x3x3 (or 3x3) minimum filter of a float 0/1 mask (*spatial); voxels outside the array do not count."""
    pool = F.max_pool3d if mask.dim() == 3 else F.max_pool2d
    return -pool(-mask.unsqueeze(0), 3, stride=1, padding=1).squeeze(0)


def _pyramid_sum(mask: torch.Tensor, stop_voxels: float) -> torch.Tensor:
    """The label plus its successive erosions, eroding while more than ``stop_voxels`` voxels remain."""
    total = mask.clone()
    current = mask
    while float(current.sum()) > stop_voxels:
        current = _erode(current)
        total = total + current
    return total


def pyramid_weights(target: torch.Tensor, size_threshold: int = 400, weight_range: Sequence[float] = (3.0, 20.0),
                    negative_weight: float = 1.0, per_target: bool = True,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Voxel weights (B, *spatial) of ``dtype`` of a binary target (B, H, W), (B, D, H, W) or (B, 1, D, H, W).

    See the module doc for the rule.

    Computed without gradients on the target's device (components are found with scipy on the CPU when
    ``per_target``).
    """
    if target.dim() == 5 and target.shape[1] == 1:
        target = target[:, 0]
    if target.dim() not in (3, 4):
        raise ValueError(f"target must be (B, *spatial) with 2 or 3 spatial axes, got {tuple(target.shape)}")
    low, high = (float(v) for v in weight_range)
    if not high >= low:
        raise ValueError(f"weight_range must be (low, high) with low <= high, got {tuple(weight_range)}")
    stop = float(size_threshold) / 20.0
    with torch.no_grad():
        labels = (target > 0).to(dtype)
        weights = torch.full_like(labels, float(negative_weight))
        for index in range(labels.shape[0]):
            item = labels[index]
            if not bool(item.any()):
                continue
            if per_target:
                from scipy import ndimage

                components, count = ndimage.label(item.cpu().numpy() > 0, structure=np.ones((3,) * item.dim()))
                boxes = ndimage.find_objects(components)
                for number, box in enumerate(boxes, start=1):
                    # the component alone in its box grown by one voxel (inside the patch): background around it
                    # erodes it, the patch border does not
                    box = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(box, item.shape))
                    part = torch.from_numpy(components[box] == number).to(item.device, dtype)
                    values = _component_weights(part, size_threshold, stop, low, high)
                    region = weights[index][box]
                    weights[index][box] = torch.where(part > 0, values, region)
            else:
                weights[index] = torch.where(item > 0, _component_weights(item, size_threshold, stop, low, high),
                                             weights[index])
    return weights


def _component_weights(mask: torch.Tensor, size_threshold: int, stop: float, low: float, high: float) -> torch.Tensor:
    if float(mask.sum()) > size_threshold:
        return torch.full_like(mask, (low + high) / 2.0)
    summed = _pyramid_sum(mask, stop)
    return low + (high - low) * summed / summed.max()


def _foreground_probability(input: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "softmax":
        return torch.softmax(input, dim=1)[:, 1]
    if activation == "sigmoid":
        return torch.sigmoid(input[:, 1])
    raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def _binary_target(target: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    if target.dim() == input.dim():
        if target.shape[1] != 1:
            raise ValueError(f"target must be (B, *spatial) or (B, 1, *spatial), got {tuple(target.shape)}")
        target = target[:, 0]
    if target.shape != input.shape[:1] + input.shape[2:]:
        raise ValueError(f"target {tuple(target.shape)} does not match input {tuple(input.shape)}")
    if target.is_floating_point():
        target = target.round()
    target = target.long()
    if bool(((target < 0) | (target > 1)).any()):
        raise ValueError("target must hold class indices 0 (background) and 1 (aneurysm)")
    return target


class ExpLogDiceLoss(torch.nn.Module):
    """``(-ln Dice)^gamma`` per item on the aneurysm channel of 2-class logits (B, 2, *spatial).

    Args:
        gamma: exponent (0.3).
        smooth: added to numerator and denominator (1.0).
        activation: "softmax" (the network's probability, paper) or "sigmoid" (sigmoid of the aneurysm logit,
            official code).
        reduction: "mean" over items, "sum" or "none" (B,).
    """

    def __init__(self, gamma: float = 0.3, smooth: float = 1.0, activation: str = "softmax",
                 reduction: str = "mean") -> None:
        super().__init__()
        self.gamma, self.smooth, self.activation = float(gamma), float(smooth), str(activation)
        self.reduction = check_reduction(reduction)
        _foreground_probability(torch.zeros(1, 2, 1), self.activation)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _binary_target(target, input).to(input.dtype)
        prob = _foreground_probability(input, self.activation)
        axes = tuple(range(1, prob.dim()))
        dice = (2.0 * (prob * target).sum(axes) + self.smooth) / ((prob + target).sum(axes) + self.smooth)
        return _reduce((-torch.log(dice)).clamp_min(1e-8) ** self.gamma, self.reduction)


class PyramidCrossEntropyLoss(torch.nn.Module):
    """``mean_x w(x) * ce(x)^gamma`` per item; ``w`` given or computed by :func:`pyramid_weights` from the target.

    Args:
        gamma: exponent (0.3).
        size_threshold, weight_range, negative_weight, per_target: pyramid settings (400, (3, 20), 1.0, True).
        pyramid: False uses weight 1 everywhere (when no weight map is given).
        reduction: "mean" over items, "sum" or "none" (B,).
    """

    def __init__(self, gamma: float = 0.3, size_threshold: int = 400, weight_range: Sequence[float] = (3.0, 20.0),
                 negative_weight: float = 1.0, per_target: bool = True, pyramid: bool = True,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.gamma = float(gamma)
        self.size_threshold = int(size_threshold)
        self.weight_range: Tuple[float, float] = (float(weight_range[0]), float(weight_range[1]))
        self.negative_weight = float(negative_weight)
        self.per_target = bool(per_target)
        self.pyramid = bool(pyramid)
        self.reduction = check_reduction(reduction)

    def forward(self, input: torch.Tensor, target: torch.Tensor,
                weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        target = _binary_target(target, input)
        ce = F.cross_entropy(input, target, reduction="none").clamp_min(1e-8) ** self.gamma
        if weight is None and self.pyramid:
            weight = pyramid_weights(target, self.size_threshold, self.weight_range, self.negative_weight,
                                     self.per_target, dtype=ce.dtype)
        if weight is not None:
            if weight.dim() == ce.dim() + 1:
                weight = weight[:, 0]
            ce = ce * weight.to(ce.dtype)
        return _reduce(ce.flatten(1).mean(1), self.reduction)


class ExpLogLoss(torch.nn.Module):
    """GLIA-Net's local loss ``w_dice * ExpLogDice + w_ce * PyramidCE`` (paper weights 0.8 / 0.2, gammas 0.3)."""

    def __init__(self, dice_weight: float = 0.8, ce_weight: float = 0.2, dice_gamma: float = 0.3,
                 ce_gamma: float = 0.3, smooth: float = 1.0, activation: str = "softmax", size_threshold: int = 400,
                 weight_range: Sequence[float] = (3.0, 20.0), negative_weight: float = 1.0, per_target: bool = True,
                 pyramid: bool = True) -> None:
        super().__init__()
        self.dice_weight, self.ce_weight = float(dice_weight), float(ce_weight)
        self.dice = ExpLogDiceLoss(dice_gamma, smooth, activation)
        self.ce = PyramidCrossEntropyLoss(ce_gamma, size_threshold, weight_range, negative_weight, per_target,
                                          pyramid)
        self._last: Dict[str, float] = {}

    def forward(self, input: torch.Tensor, target: torch.Tensor,
                weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        dice = self.dice(input, target)
        ce = self.ce(input, target, weight)
        self._last = {"dice": float(dice.detach()), "cross_entropy": float(ce.detach())}
        return self.dice_weight * dice + self.ce_weight * ce

    @property
    def last_values(self) -> Dict[str, float]:
        return dict(self._last)


class GLIANetLoss(torch.nn.Module):
    """Total GLIA-Net loss ``w_global * CE(global logits, patch label) + w_local * ExpLogLoss``.

    ``forward(segmentation_logits (B, 2, *spatial), global_logits (B, 2), target (B, *spatial)[, global_target (B,),
    weight])``; without ``global_target`` a patch is positive when it has more than ``global_min_voxels`` aneurysm
    voxels (official: > 3). ``global_logits=None`` gives the local loss only (network without global branch).
    """

    def __init__(self, global_weight: float = 0.1, local_weight: float = 1.0, global_min_voxels: int = 3,
                 **local_options) -> None:
        super().__init__()
        self.global_weight, self.local_weight = float(global_weight), float(local_weight)
        self.global_min_voxels = int(global_min_voxels)
        self.local = ExpLogLoss(**local_options)
        self._last: Dict[str, float] = {}

    def global_labels(self, target: torch.Tensor) -> torch.Tensor:
        return ((target > 0).flatten(1).sum(1) > self.global_min_voxels).long()

    def forward(self, input: torch.Tensor, global_logits: Optional[torch.Tensor], target: torch.Tensor,
                global_target: Optional[torch.Tensor] = None, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        local = self.local(input, target, weight)
        total = self.local_weight * local
        values = {"local": float(local.detach()), **self.local.last_values}
        if global_logits is not None:
            if global_target is None:
                global_target = self.global_labels(_binary_target(target, input))
            glob = F.cross_entropy(global_logits, global_target.long().to(global_logits.device))
            total = total + self.global_weight * glob
            values["global"] = float(glob.detach())
        values["total"] = float(total.detach())
        self._last = values
        return total

    @property
    def last_values(self) -> Dict[str, float]:
        return dict(self._last)
