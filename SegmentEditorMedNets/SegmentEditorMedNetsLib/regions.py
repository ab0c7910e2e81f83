"""Where the MedNets Segment Editor effect works: a box (a markups ROI) or the neighbourhood of a clicked point.

Everything here is NumPy on :class:`mednets.image.Volume` grids (array axes K, J, I; physical coordinates RAS, mm);
no Slicer, no torch. The effect crops the source volume to :func:`box_of_roi` / :func:`box_around_point`, runs a
module's network on the crop, then keeps what :func:`inside_roi` / :func:`component_at_point` allow and pastes the
result back onto the whole grid with :func:`paste`.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from scipy import ndimage

from mednets.image import Volume

__all__ = ["Box", "box_of_roi", "box_around_point", "inside_roi", "component_at_point", "paste"]

#: ``(start, stop)`` voxel indices in array-axis order (K, J, I); stop is exclusive.
Box = Tuple[Tuple[int, int, int], Tuple[int, int, int]]


def _roi_corners(center_ras: Sequence[float], size_mm: Sequence[float], axes_ras: np.ndarray) -> np.ndarray:
    """The 8 corners (RAS) of a box with the given centre, edge lengths along its axes, and axes (columns)."""
    half = np.asarray(size_mm, dtype=float) / 2.0
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
    return np.asarray(center_ras, dtype=float) + (signs * half) @ np.asarray(axes_ras, dtype=float).T


def _clip_box(volume: Volume, low: np.ndarray, high: np.ndarray, what: str) -> Box:
    """The voxels whose centres lie within the continuous index range ``low..high`` (clipped to the image)."""
    start = np.maximum(np.ceil(low - 1e-6).astype(int), 0)
    stop = np.minimum(np.floor(high + 1e-6).astype(int) + 1, volume.shape)
    if np.any(stop <= start):
        raise ValueError(f"the {what} does not overlap the image")
    return tuple(int(v) for v in start), tuple(int(v) for v in stop)


def box_of_roi(volume: Volume, center_ras: Sequence[float], size_mm: Sequence[float],
               axes_ras: np.ndarray = np.eye(3)) -> Box:
    """The voxel box (clipped to the image) that holds a markups ROI (centre, size along its axes, axes as the
    columns of a 3x3 matrix in RAS; a rotated ROI gets its bounding box). ``ValueError`` if it misses the image."""
    if np.any(np.asarray(size_mm, dtype=float) <= 0):
        raise ValueError(f"the box has a zero or negative size ({list(size_mm)} mm)")
    corners = volume.ras_to_kji(_roi_corners(center_ras, size_mm, axes_ras))
    return _clip_box(volume, corners.min(axis=0), corners.max(axis=0), "box")


def box_around_point(volume: Volume, point_ras: Sequence[float], radius_mm: float) -> Box:
    """The voxel box (clipped to the image) of the cube of half-edge ``radius_mm`` centred on ``point_ras``."""
    if radius_mm <= 0:
        raise ValueError(f"the neighbourhood radius must be positive, got {radius_mm} mm")
    return box_of_roi(volume, point_ras, [2.0 * radius_mm] * 3, volume.directions_ras)


def _centres_ras(crop: Volume) -> np.ndarray:
    k, j, i = np.meshgrid(*[np.arange(n) for n in crop.shape], indexing="ij")
    return crop.kji_to_ras(np.stack([k.ravel(), j.ravel(), i.ravel()], axis=1)).reshape(*crop.shape, 3)


def inside_roi(crop: Volume, center_ras: Sequence[float], size_mm: Sequence[float],
               axes_ras: np.ndarray = np.eye(3)) -> np.ndarray:
    """Boolean ``crop.shape`` mask of the voxels whose centres lie inside the (possibly rotated) ROI."""
    local = (_centres_ras(crop) - np.asarray(center_ras, dtype=float)) @ np.asarray(axes_ras, dtype=float)
    return np.all(np.abs(local) <= np.asarray(size_mm, dtype=float) / 2.0 + 1e-6, axis=-1)


def component_at_point(mask: np.ndarray, crop: Volume, point_ras: Sequence[float], radius_mm: float) -> np.ndarray:
    """The connected component of ``mask`` (26-connectivity) at the clicked point, else the nearest one whose
    closest voxel is within ``radius_mm`` of it; empty when there is none. ``mask`` lies on ``crop``'s grid."""
    components, count = ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return np.zeros(crop.shape, dtype=bool)
    distances = np.linalg.norm(_centres_ras(crop) - np.asarray(point_ras, dtype=float), axis=-1)
    nearest = ndimage.minimum(distances, components, index=np.arange(1, count + 1))
    best = int(np.argmin(nearest))
    if nearest[best] > radius_mm:
        return np.zeros(crop.shape, dtype=bool)
    return components == best + 1


def paste(mask: np.ndarray, box: Box, shape: Sequence[int]) -> np.ndarray:
    """``mask`` (the box's shape) placed into an all-False array of the whole image's ``shape``."""
    whole = np.zeros(tuple(shape), dtype=bool)
    (k0, j0, i0), (k1, j1, i1) = box
    whole[k0:k1, j0:j1, i0:i1] = mask
    return whole
