"""Cross-entropy with per-class weights and an optional per-voxel weight map (U-Net style)."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .targets import check_reduction, class_indices

__all__ = ["VoxelWeightedCrossEntropyLoss"]


class VoxelWeightedCrossEntropyLoss(torch.nn.Module):
    """Softmax cross-entropy weighted per class and per voxel.

    For every voxel x of every item, with class weight ``a[c]`` (1 without ``class_weights``) and voxel weight
    ``w[x]`` (1 without a weight map)::

        ce[x]     = -log softmax(input)[target[x], x]
        weight[x] = w[x] * a[target[x]]
        "none":  weight[x] * ce[x]                       shape (B, *spatial)
        "sum":   sum_x weight[x] * ce[x]
        "mean":  sum_x weight[x] * ce[x] / sum_x weight[x]     (0 when every weight is 0, never NaN)

    A voxel of weight 0 is ignored (it adds nothing to either sum). With a uniform weight map this is exactly
    ``torch.nn.functional.cross_entropy(input, target, weight=class_weights, reduction=...)``, whose weighted mean
    divides by the sum of the class weights in the same way.

    Source: Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015, eq. (1) (pixel-wise weight map w(x) in the cross-entropy).

    Args:
        class_weights: C non-negative weights, one per class, or None for 1.0 each.
        reduction: "mean" (weighted mean as above), "sum" or "none".

    Shapes:
        input: (B, C, *spatial) logits, C >= 2.
        target: (B, *spatial) or (B, 1, *spatial) class indices, integer dtype, values in [0, C).
        weight_map: optional (B, *spatial) or (B, 1, *spatial) non-negative weights.
    """

    class_weights: Optional[torch.Tensor]

    def __init__(
        self,
        class_weights: Optional[Union[Sequence[float], torch.Tensor]] = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32).flatten()
        if weights is not None and not (torch.isfinite(weights).all() and (weights >= 0).all()):
            raise ValueError(f"class_weights must be finite and >= 0, got {weights.tolist()}")
        self.register_buffer("class_weights", weights)

    def _voxel_weights(self, target: torch.Tensor, weight_map: Optional[torch.Tensor],
                       input: torch.Tensor) -> Optional[torch.Tensor]:
        """w[x] * a[target[x]] with shape (B, *spatial), or None when both are absent (all ones)."""
        weights = None
        if self.class_weights is not None:
            weights = self.class_weights.to(device=input.device, dtype=input.dtype)[target]
        if weight_map is not None:
            if weight_map.ndim == input.ndim and weight_map.shape[1] == 1:
                weight_map = weight_map[:, 0]
            if weight_map.shape != target.shape:
                raise ValueError(f"weight_map must have shape (B, *spatial) = {tuple(target.shape)}, "
                                 f"got {tuple(weight_map.shape)}")
            if bool((weight_map < 0).any()):
                raise ValueError("weight_map must be >= 0 everywhere (0 ignores a voxel)")
            weight_map = weight_map.to(device=input.device, dtype=input.dtype)
            weights = weight_map if weights is None else weights * weight_map
        return weights

    def forward(self, input: torch.Tensor, target: torch.Tensor,
                weight_map: Optional[torch.Tensor] = None) -> torch.Tensor:
        if input.ndim < 2 or input.shape[1] < 2:
            raise ValueError(f"input must be logits of shape (B, C, *spatial) with C >= 2 classes, "
                             f"got {tuple(input.shape)}; use a sigmoid loss for a single-channel output")
        target = class_indices(input, target)
        if self.class_weights is not None and self.class_weights.numel() != input.shape[1]:
            raise ValueError(f"class_weights has {self.class_weights.numel()} values but input has "
                             f"{input.shape[1]} classes")
        ce = F.cross_entropy(input, target, reduction="none")
        weights = self._voxel_weights(target, weight_map, input)
        weighted = ce if weights is None else weights * ce
        if self.reduction == "none":
            return weighted
        if self.reduction == "sum":
            return weighted.sum()
        if weights is None:
            return weighted.mean()
        total = weights.sum()
        return weighted.sum() / total.clamp_min(torch.finfo(total.dtype).tiny)

    def extra_repr(self) -> str:
        weights = None if self.class_weights is None else self.class_weights.tolist()
        return f"class_weights={weights}, reduction={self.reduction!r}"
