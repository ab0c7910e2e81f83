"""Target and reduction helpers shared by the segmentation losses (shape checks with plain-word errors)."""

from __future__ import annotations

import torch

__all__ = ["REDUCTIONS", "check_reduction", "check_class_indices", "class_indices", "one_hot_like"]

#: Accepted values of every loss's ``reduction`` argument.
REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of :data:`REDUCTIONS`, else raise ValueError."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_class_indices(target: torch.Tensor, num_classes: int) -> None:
    """Raise ValueError unless ``target`` has an integer dtype and values in [0, num_classes).

    The value check reads the target's min and max (one device synchronisation).
    """
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise ValueError(f"class-index targets must have an integer dtype, got {target.dtype}; convert them with "
                         f".long(), or pass one-hot targets of the input's shape")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"class-index targets must lie in [0, {num_classes - 1}] for {num_classes} classes, "
                         f"got values in [{int(target.min())}, {int(target.max())}]")


def class_indices(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Class-index target of shape (B, *spatial) for ``input`` (B, C, *spatial); accepts (B, 1, *spatial) too.

    Raises:
        ValueError: any other shape, a non-integer dtype or a value outside [0, C).
    """
    spatial = input.shape[2:]
    if target.ndim == input.ndim and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != input.shape[:1] + spatial:
        raise ValueError(f"class-index target must have shape (B, *spatial) = {tuple(input.shape[:1] + spatial)} or "
                         f"(B, 1, *spatial) for input {tuple(input.shape)}, got {tuple(target.shape)}")
    check_class_indices(target, input.shape[1])
    return target.long()


def one_hot_like(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Target as one-hot (B, C, *spatial) in ``input``'s dtype, for ``input`` of shape (B, C, *spatial).

    ``target`` may be:

    * one-hot (or a per-channel mask, or soft labels) of ``input``'s shape: used as is, cast to ``input``'s dtype;
    * class indices (B, 1, *spatial) or (B, *spatial), integer dtype, values in [0, C): converted to one-hot;
    * for a single-channel input (C = 1, binary segmentation), a foreground mask (B, *spatial).

    Raises:
        ValueError: another shape, or class indices with a non-integer dtype or out of range.
    """
    if target.shape == input.shape:
        return target.to(input.dtype)
    if input.shape[1] == 1 and target.shape == input.shape[:1] + input.shape[2:]:
        return target.unsqueeze(1).to(input.dtype)
    indices = class_indices(input, target)
    return torch.zeros_like(input).scatter_(1, indices.unsqueeze(1), 1.0)
