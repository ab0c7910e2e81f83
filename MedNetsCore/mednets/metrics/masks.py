"""Input checks shared by the segmentation metrics: binary masks, matching shapes, voxel spacing, foreground box.

Masks are numpy arrays (or anything :func:`numpy.asarray` accepts, e.g. CPU torch tensors) of any dimension, in
array-axis order (K, J, I for a Slicer volume). A boolean array is used as is. Any other dtype is accepted only when
every value is 0 or 1 (``1.0`` counts as 1); label maps and probabilities are refused with a message saying how to
binarise them (``labels == k``, ``probabilities >= 0.5``), because silently treating "nonzero" as foreground would hide
a wrong argument.
"""

from __future__ import annotations

from numbers import Real
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["Spacing", "as_binary_mask", "as_binary_pair", "normalize_spacing", "foreground_box"]

#: Voxel size in array-axis order (one value per axis), or a single number for isotropic voxels.
Spacing = Union[float, Sequence[float]]


def as_binary_mask(mask: object, name: str = "mask") -> np.ndarray:
    """Return ``mask`` as a C-contiguous boolean array; non-boolean input must contain only 0 and 1.

    Raises:
        ValueError: the array is 0-dimensional or holds values other than 0 and 1 (NaN included).
    """
    array = np.asarray(mask)
    if array.ndim == 0:
        raise ValueError(f"{name} must be an array with at least one axis, got a scalar")
    if array.dtype == bool:
        return np.ascontiguousarray(array)
    binary = array.astype(bool)
    if not np.array_equal(binary, array):
        stray = array[(array != 0) & (array != 1) | (array != array)].flat[0]
        raise ValueError(
            f"{name} must be binary (bool, or only the values 0 and 1), but it contains {stray!r} "
            f"(dtype {array.dtype}); select one label first (labels == k) or threshold probabilities "
            f"(probabilities >= 0.5)")
    return np.ascontiguousarray(binary)


def as_binary_pair(pred: object, ref: object) -> Tuple[np.ndarray, np.ndarray]:
    """Check that ``pred`` and ``ref`` are binary masks of the same shape and return them as boolean arrays.

    Raises:
        ValueError: the shapes differ (both are named) or a mask is not binary.
    """
    pred_shape, ref_shape = np.shape(pred), np.shape(ref)
    if pred_shape != ref_shape:
        raise ValueError(f"pred and ref must have the same shape, got pred {pred_shape} and ref {ref_shape}")
    return as_binary_mask(pred, "pred"), as_binary_mask(ref, "ref")


def normalize_spacing(spacing: Optional[Spacing], ndim: int) -> Tuple[float, ...]:
    """Return the voxel spacing as ``ndim`` positive floats in array-axis order.

    ``None`` means 1.0 along every axis; a single number means isotropic voxels of that size.

    Raises:
        ValueError: wrong number of values, or a value that is not finite and > 0.
    """
    if spacing is None:
        return (1.0,) * ndim
    values = (float(spacing),) * ndim if isinstance(spacing, Real) else tuple(float(s) for s in spacing)
    if len(values) != ndim:
        raise ValueError(
            f"spacing must have one value per array axis ({ndim}), got {len(values)} values: {values}")
    if not all(np.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing values must be finite and > 0, got {values}")
    return values


def foreground_box(mask: np.ndarray) -> Optional[List[Tuple[int, int]]]:
    """Tight bounding box of the nonzero voxels as ``[(start, stop), ...]`` per axis (stop exclusive); None if none.

    Cheap on large volumes: the first axis is bounded from a per-slab ``any`` (which stops at the first True voxel of
    each slab), then only the occupied slabs are projected onto the remaining axes.
    """
    mask = np.asarray(mask)
    if mask.dtype != bool:
        mask = mask != 0
    if mask.size == 0:
        return None
    occupied = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    if occupied.size == 0:
        return None
    box = [(int(occupied[0]), int(occupied[-1]) + 1)]
    if mask.ndim > 1:
        slab = mask[box[0][0]:box[0][1]]
        inner = foreground_box(slab.view(np.uint8).max(axis=0).view(bool))
        assert inner is not None  # the slab holds at least one True voxel
        box.extend(inner)
    return box
