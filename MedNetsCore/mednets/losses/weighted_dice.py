"""Voxel-weighted soft Dice loss (Altun et al., Appendix A, eq. 6).

    WeightedDice(y, p, w) = 1 - (2 sum_i w_i y_i p_i + eps) / (sum_i w_i (y_i + p_i) + eps)

Voxels of weight 0 are ignored; as the paper shows (eq. 7) any other constant weight cancels out, so for binary
(0/1) weights this is the plain soft Dice restricted to the weighted voxels. Computed per item and class over the
spatial axes, then averaged.
"""

from __future__ import annotations

from typing import Optional

import torch

from .targets import check_reduction, one_hot_like

__all__ = ["WeightedDiceLoss"]


class WeightedDiceLoss(torch.nn.Module):
    """Soft Dice with a per-voxel weight map (eq. 6 of Altun et al.).

    Args:
        activation: "softmax" (input are scores), or None (input are probabilities).
        include_background: keep class 0 (False leaves it out).
        eps: the numerator/denominator smoothing term.
        reduction: "mean", "sum" or "none" (B, C').

    Shapes:
        input (B, C, *spatial); target class indices (B, *spatial) / (B, 1, *spatial) or one-hot like ``input``;
        weight_map optional (B, *spatial) or (B, 1, *spatial), >= 0.
    """

    def __init__(self, activation: Optional[str] = "softmax", include_background: bool = False, eps: float = 1e-5,
                 reduction: str = "mean") -> None:
        super().__init__()
        if activation not in ("softmax", None):
            raise ValueError(f"activation must be 'softmax' or None, got {activation!r}")
        self.activation = activation
        self.include_background = bool(include_background)
        self.eps = float(eps)
        self.reduction = check_reduction(reduction)

    def forward(self, input: torch.Tensor, target: torch.Tensor,
                weight_map: Optional[torch.Tensor] = None) -> torch.Tensor:
        if input.ndim < 3 or input.shape[1] < 2:
            raise ValueError(f"input must be (B, C, *spatial) with C >= 2, got {tuple(input.shape)}")
        probabilities = torch.softmax(input, dim=1) if self.activation == "softmax" else input
        onehot = one_hot_like(input, target).to(probabilities.dtype)
        if weight_map is None:
            weights = torch.ones_like(probabilities[:, :1])
        else:
            weights = weight_map if weight_map.ndim == input.ndim else weight_map.unsqueeze(1)
            if weights.shape[0] != input.shape[0] or weights.shape[2:] != input.shape[2:]:
                raise ValueError(f"weight_map shape {tuple(weight_map.shape)} does not match input "
                                 f"{tuple(input.shape)}")
            if bool((weights < 0).any()):
                raise ValueError("weight_map must be >= 0")
            weights = weights.to(probabilities.dtype)
        if not self.include_background:
            probabilities, onehot = probabilities[:, 1:], onehot[:, 1:]
        axes = tuple(range(2, input.ndim))
        numerator = 2.0 * (weights * onehot * probabilities).sum(axes) + self.eps
        denominator = (weights * (onehot + probabilities)).sum(axes) + self.eps
        loss = 1.0 - numerator / denominator
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def extra_repr(self) -> str:
        return (f"activation={self.activation!r}, include_background={self.include_background}, eps={self.eps}, "
                f"reduction={self.reduction!r}")
