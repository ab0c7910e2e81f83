"""Spatial transformer for registration networks: warp images and label maps by a dense displacement field (torch).

Conventions (all functions): tensors are (B, C, D, H, W) = array axes (K, J, I) of a Slicer volume. A displacement field
``dvf`` is (B, 3, d, h, w); channel c is the displacement along array axis c (0 = K/D, 1 = J/H, 2 = I/W) in voxels of
the image being sampled. The output grid point p (an index of the dvf) lies at input index ``offset + stride * p``
(per axis), so a network whose valid convolutions shrink the patch can be warped on its own output grid; the warped
value at p is ``image(offset + stride * p + dvf(p))``. Outside the image the border value is repeated.

* :func:`sampling_points` -> absolute voxel coordinates (B, 3, d, h, w);
* :func:`sample` samples an image at such points (trilinear or nearest);
* :func:`warp_image` (trilinear), :func:`warp_labels` (nearest, or one-hot warped trilinearly then arg-max), and
  :func:`warp_one_hot` (soft warped one-hot probabilities, differentiable: the input of a warped-contour Dice loss).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F

__all__ = ["sampling_points", "sample", "warp_image", "warp_one_hot", "warp_labels", "identity_grid"]

IntOrSeq = Union[int, Sequence[int]]


def _triple(value: IntOrSeq, name: str):
    if isinstance(value, (int, float)):
        return (value, value, value)
    value = tuple(value)
    if len(value) != 3:
        raise ValueError(f"{name} needs 1 or 3 values, got {value}")
    return value


def identity_grid(shape: Sequence[int], offset: IntOrSeq = 0, stride: IntOrSeq = 1, device=None,
                  dtype=torch.float32) -> torch.Tensor:
    """Voxel coordinates (1, 3, *shape) of an output grid: ``offset + stride * index`` per axis."""
    offset, stride = _triple(offset, "offset"), _triple(stride, "stride")
    axes = [torch.arange(int(n), device=device, dtype=dtype) * float(s) + float(o)
            for n, o, s in zip(shape, offset, stride)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0).unsqueeze(0)


def sampling_points(dvf: torch.Tensor, offset: IntOrSeq = 0, stride: IntOrSeq = 1) -> torch.Tensor:
    """Absolute sampling coordinates ``offset + stride * p + dvf(p)`` (B, 3, d, h, w)."""
    if dvf.dim() != 5 or dvf.shape[1] != 3:
        raise ValueError(f"dvf must be (B, 3, d, h, w), got {tuple(dvf.shape)}")
    return dvf + identity_grid(dvf.shape[2:], offset, stride, dvf.device, dvf.dtype)


def sample(image: torch.Tensor, points: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``image`` (B, C, D, H, W) at voxel coordinates ``points`` (B, 3, d, h, w) -> (B, C, d, h, w).

    ``mode`` "bilinear" is trilinear interpolation in 3D (torch's name), "nearest" picks the nearest voxel."""
    if image.dim() != 5:
        raise ValueError(f"image must be (B, C, D, H, W), got {tuple(image.shape)}")
    sizes = torch.tensor(image.shape[2:], dtype=points.dtype, device=points.device).view(1, 3, 1, 1, 1)
    normalised = 2.0 * points / (sizes - 1).clamp(min=1) - 1.0  # align_corners=True: -1 / +1 are voxel centres
    grid = normalised.permute(0, 2, 3, 4, 1).flip(-1)  # grid_sample wants (x, y, z) = (W, H, D) last
    if grid.shape[0] != image.shape[0]:
        grid = grid.expand(image.shape[0], *grid.shape[1:])
    return F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode="border", align_corners=True)


def warp_image(image: torch.Tensor, dvf: torch.Tensor, offset: IntOrSeq = 0, stride: IntOrSeq = 1) -> torch.Tensor:
    """Trilinear warp of an intensity image."""
    return sample(image, sampling_points(dvf, offset, stride), "bilinear")


def warp_one_hot(labels: torch.Tensor, dvf: torch.Tensor, num_classes: int, offset: IntOrSeq = 0,
                 stride: IntOrSeq = 1) -> torch.Tensor:
    """Warp the one-hot encoding of ``labels`` (B, 1, D, H, W) (integer values) trilinearly -> (B, K, d, h, w).

    The result sums to 1 over the classes at every point and is differentiable with respect to ``dvf``."""
    if labels.dim() != 5 or labels.shape[1] != 1:
        raise ValueError(f"labels must be (B, 1, D, H, W), got {tuple(labels.shape)}")
    one_hot = F.one_hot(labels[:, 0].long().clamp(0, num_classes - 1), num_classes).permute(0, 4, 1, 2, 3)
    return sample(one_hot.to(dvf.dtype), sampling_points(dvf, offset, stride), "bilinear")


def warp_labels(labels: torch.Tensor, dvf: torch.Tensor, num_classes: int = 0, method: str = "one_hot",
                offset: IntOrSeq = 0, stride: IntOrSeq = 1) -> torch.Tensor:
    """Warp a label map (B, 1, D, H, W) -> integer labels (B, 1, d, h, w).

    ``method`` "nearest": nearest-neighbour sampling; "one_hot": one-hot channels warped trilinearly, then arg-max
    (smoother boundaries; needs ``num_classes``, or takes max label + 1)."""
    if method == "nearest":
        out = sample(labels.to(dvf.dtype), sampling_points(dvf, offset, stride), "nearest")
        return out.round().to(torch.int64)
    if method != "one_hot":
        raise ValueError("method must be 'nearest' or 'one_hot'")
    k = int(num_classes) or int(labels.max().item()) + 1
    return warp_one_hot(labels, dvf, k, offset, stride).argmax(dim=1, keepdim=True)
