"""Soft Dice loss (V-Net style), the base of the Dice-based losses of the SlicerMedNets papers."""

from __future__ import annotations

from typing import Optional

import torch

from .targets import check_reduction, one_hot_like

__all__ = ["SoftDiceLoss"]

_ACTIVATIONS = ("sigmoid", "softmax", None)


class SoftDiceLoss(torch.nn.Module):
    """Soft Dice loss between predicted probabilities and a (one-hot) target.

    For each item b and channel c (or each channel, summed over the batch too, when ``batch=True``)::

        loss[b, c] = 1 - (2 * sum_x p[b,c,x] * t[b,c,x] + smooth_numerator)
                         / (sum_x p[b,c,x]^k + sum_x t[b,c,x]^k + smooth_denominator)

    where ``p`` are the probabilities (``input`` after ``activation``), ``t`` the one-hot target, x runs over the
    spatial positions, and k = 2 with ``squared_denominator=True`` (the V-Net form) or k = 1 (the linear form of
    MONAI's default and of nnU-Net's soft Dice). Equal to ``monai.losses.DiceLoss`` with the matching ``sigmoid``/
    ``softmax``, ``squared_pred``, ``smooth_nr``, ``smooth_dr``, ``batch`` and ``include_background`` settings.

    Sources: Milletari, Navab and Ahmadi, "V-Net: Fully Convolutional Neural Networks for Volumetric Medical Image
    Segmentation", 3DV 2016 (squared denominator); Isensee et al., "nnU-Net", Nature Methods 18, 2021 (linear form,
    batch Dice).

    Args:
        activation: applied to ``input`` over the channel axis first: "sigmoid" (independent channels, also binary
            single-channel outputs), "softmax" (mutually exclusive classes, needs C >= 2) or None (``input`` already
            holds probabilities).
        include_background: if False, channel 0 is left out (after the activation), which needs C >= 2.
        smooth_numerator: added to the numerator; with it, an empty prediction of an empty target scores loss 0.
        smooth_denominator: added to the denominator (avoids 0/0); must be > 0 or the loss can be NaN.
        squared_denominator: sum squares of ``p`` and ``t`` in the denominator (V-Net) instead of the plain sums.
        batch: compute one Dice per channel over the whole batch (sums over B as well) instead of one per item.
        reduction: "mean" (mean over the loss terms), "sum", or "none" (shape (B, C'), or (C',) when ``batch``,
            with C' = C, or C - 1 without the background).

    Shapes:
        input: (B, C, *spatial) logits (with an activation) or probabilities; any number of spatial axes.
        target: one-hot / per-channel masks / soft labels of ``input``'s shape, class indices (B, 1, *spatial) or
            (B, *spatial) with an integer dtype, or for C = 1 a foreground mask (B, *spatial).
        output: a scalar for "mean" and "sum".
    """

    def __init__(
        self,
        activation: Optional[str] = None,
        include_background: bool = True,
        smooth_numerator: float = 1e-5,
        smooth_denominator: float = 1e-5,
        squared_denominator: bool = False,
        batch: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        if smooth_numerator < 0 or smooth_denominator < 0:
            raise ValueError(f"smoothing terms must be >= 0, got smooth_numerator={smooth_numerator} and "
                             f"smooth_denominator={smooth_denominator}")
        self.activation = activation
        self.include_background = include_background
        self.smooth_numerator = float(smooth_numerator)
        self.smooth_denominator = float(smooth_denominator)
        self.squared_denominator = squared_denominator
        self.batch = batch
        self.reduction = check_reduction(reduction)

    def _probabilities(self, input: torch.Tensor) -> torch.Tensor:
        if self.activation == "sigmoid":
            return torch.sigmoid(input)
        if self.activation == "softmax":
            if input.shape[1] < 2:
                raise ValueError("activation='softmax' needs at least 2 channels (a softmax over one channel is "
                                 "always 1); use activation='sigmoid' for a single-channel binary output")
            return torch.softmax(input, dim=1)
        return input

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.ndim < 3:
            raise ValueError(f"input must have shape (B, C, *spatial) with at least one spatial axis, "
                             f"got {tuple(input.shape)}")
        probabilities = self._probabilities(input)
        target = one_hot_like(input, target)
        if not self.include_background:
            if input.shape[1] < 2:
                raise ValueError("include_background=False needs at least 2 channels; with one channel there is "
                                 "nothing left to score")
            probabilities, target = probabilities[:, 1:], target[:, 1:]
        axes = ([0] if self.batch else []) + list(range(2, input.ndim))
        intersection = torch.sum(probabilities * target, dim=axes)
        if self.squared_denominator:
            probabilities, target = probabilities * probabilities, target * target
        total = torch.sum(probabilities, dim=axes) + torch.sum(target, dim=axes)
        loss = 1.0 - (2.0 * intersection + self.smooth_numerator) / (total + self.smooth_denominator)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def extra_repr(self) -> str:
        return (f"activation={self.activation!r}, include_background={self.include_background}, "
                f"smooth_numerator={self.smooth_numerator}, smooth_denominator={self.smooth_denominator}, "
                f"squared_denominator={self.squared_denominator}, batch={self.batch}, reduction={self.reduction!r}")
