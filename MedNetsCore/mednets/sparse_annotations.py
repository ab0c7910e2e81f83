"""Training masks from sparse point annotations (centre + diameter), for detection networks such as AxillaryLNDetect.

Altun et al., "Feasibility of end-to-end trainable two-stage U-Net for detection of axillary lymph nodes in
contrast-enhanced CT based scans on sparse annotations", sections 2.2-2.3 and Appendix A:

* :func:`sphere_instances` / :func:`sphere_mask`: spheres around annotated centres (LN masks from centre point and
  short-axis diameter; VOI spheres of 5 cm radius);
* :func:`voi_mask`: the stage-1 target: union of 5 cm spheres around the LN centres, air (< -600 HU) and bone
  (> 300 HU) removed by thresholding, smoothed by a morphological opening with a spherical 11x11x11 kernel;
* :func:`shell_mask` ("shell masking"): the external morphological gradient of the LN mask (dilation with an
  11x11x11 octagon-type kernel minus the mask), whose voxels get weight 0 because the spheres do not cover the real,
  non-spherical nodes;
* :func:`size_normalised_weights`: voxel weights ``|LN_mean| / |LN|`` inside each node so every node contributes
  equally to a weighted cross-entropy (Appendix A, eq. 5), 1 in the background, 0 in the shell.

All arrays are in array-axis order (K, J, I for Slicer volumes); centres are continuous voxel indices in that order and
``spacing`` gives the voxel size per axis in mm. numpy/scipy only.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "spherical_kernel",
    "octagon_kernel",
    "sphere_instances",
    "sphere_mask",
    "voi_mask",
    "shell_mask",
    "size_normalised_weights",
    "detection_weights",
]


def _check_size(size: int) -> int:
    if isinstance(size, bool) or int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {size!r}")
    return int(size)


def spherical_kernel(size: int = 11, ndim: int = 3) -> np.ndarray:
    """Digital ball of diameter ``size`` voxels: offsets ``x`` with ``|x|^2 <= r^2``, ``r = (size - 1) / 2``.

    The 11x11x11 kernel (r = 5) has 515 voxels.
    """
    size = _check_size(size)
    r = (size - 1) // 2
    grid = np.ogrid[tuple(slice(-r, r + 1) for _ in range(ndim))]
    return sum(g * g for g in grid) <= r * r


def octagon_kernel(size: int = 11, ndim: int = 3) -> np.ndarray:
    """Digital octagon (3D: a cube with cut edges and corners) of width ``size`` voxels.

    The classical octagonal approximation of a ball: ``r = (size - 1) / 2`` successive dilations of a single voxel,
    alternating the full 3^n neighbourhood (cube) and the 2n-neighbourhood (cross), starting with the cube; i.e. the
    Minkowski sum of ``ceil(r / 2)`` cubes and ``floor(r / 2)`` crosses. In 2D this gives the octagons of
    ``skimage.morphology.octagon``-style kernels; 3x3x3 is the full cube (27 voxels), 5x5x5 has 81 voxels
    (125 minus the 44 offsets with two or three coordinates equal to +-2).
    """
    size = _check_size(size)
    r = (size - 1) // 2
    kernel = np.zeros((size,) * ndim, dtype=bool)
    kernel[(r,) * ndim] = True
    cube = np.ones((3,) * ndim, dtype=bool)
    cross = ndimage.generate_binary_structure(ndim, 1)
    for step in range(r):
        kernel = ndimage.binary_dilation(kernel, structure=cube if step % 2 == 0 else cross)
    return kernel


def _centres_array(centres: Sequence[Sequence[float]], ndim: int) -> np.ndarray:
    array = np.asarray(centres, dtype=np.float64).reshape(-1, ndim) if len(centres) else np.zeros((0, ndim))
    if not np.all(np.isfinite(array)):
        raise ValueError("annotation centres must be finite")
    return array


def sphere_instances(shape: Sequence[int], centres: Sequence[Sequence[float]], diameters_mm: Sequence[float],
                     spacing: Optional[Sequence[float]] = None, dtype=np.int32) -> np.ndarray:
    """Label map with sphere ``n + 1`` around ``centres[n]`` (voxel indices) of diameter ``diameters_mm[n]``.

    A voxel belongs to a sphere when the physical distance between its centre and the annotated centre is at most
    the radius; where spheres overlap the later annotation wins. A sphere smaller than a voxel still marks the voxel
    nearest to its centre (when inside the image), so no annotation disappears.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    spacing = np.asarray(spacing if spacing is not None else (1.0,) * ndim, dtype=np.float64)
    centres_array = _centres_array(centres, ndim)
    diameters = np.asarray(diameters_mm, dtype=np.float64).reshape(-1)
    if len(diameters) != len(centres_array):
        raise ValueError(f"{len(centres_array)} centres but {len(diameters)} diameters")
    if np.any(~np.isfinite(diameters)) or np.any(diameters <= 0):
        raise ValueError(f"diameters must be positive, got {diameters.tolist()}")
    labels = np.zeros(shape, dtype=dtype)
    for index, (centre, diameter) in enumerate(zip(centres_array, diameters), start=1):
        radius = diameter / 2.0
        reach = np.ceil(radius / spacing).astype(int) + 1
        low = np.maximum(np.floor(centre).astype(int) - reach, 0)
        high = np.minimum(np.ceil(centre).astype(int) + reach + 1, shape)
        if np.any(high <= low):
            continue
        grids = np.ogrid[tuple(slice(lo, hi) for lo, hi in zip(low, high))]
        distance2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
        inside = distance2 <= radius * radius
        region = labels[tuple(slice(lo, hi) for lo, hi in zip(low, high))]
        region[inside] = index
        nearest = np.rint(centre).astype(int)
        if not inside.any() and np.all(nearest >= 0) and np.all(nearest < np.asarray(shape)):
            labels[tuple(nearest)] = index
    return labels


def sphere_mask(shape: Sequence[int], centres: Sequence[Sequence[float]], diameters_mm: Sequence[float],
                spacing: Optional[Sequence[float]] = None) -> np.ndarray:
    """Boolean union of the spheres of :func:`sphere_instances`."""
    return sphere_instances(shape, centres, diameters_mm, spacing) > 0


def voi_mask(image_hu: np.ndarray, centres: Sequence[Sequence[float]], spacing: Optional[Sequence[float]] = None,
             radius_mm: float = 50.0, air_below: float = -600.0, bone_above: float = 300.0,
             opening_size: int = 11) -> np.ndarray:
    """Stage-1 (VOI localisation) target of Altun et al., sec. 2.2 / Fig. 4 (b-d).

    1. spheres of ``radius_mm`` (5 cm) around every annotated centre (voxel indices);
    2. voxels with ``image < air_below`` (air, -600 HU) or ``image > bone_above`` (bone, 300 HU) removed;
    3. binary opening with :func:`spherical_kernel` of ``opening_size`` voxels (11; 1 disables the opening).

    Returns a boolean mask of ``image_hu``'s shape (empty without annotations).
    """
    image_hu = np.asarray(image_hu)
    if not np.issubdtype(image_hu.dtype, np.number):
        raise TypeError("image_hu must be a numeric array")
    if radius_mm <= 0:
        raise ValueError(f"radius_mm must be > 0, got {radius_mm}")
    centres_array = _centres_array(centres, image_hu.ndim)
    spheres = sphere_mask(image_hu.shape, centres_array, [2.0 * radius_mm] * len(centres_array), spacing)
    mask = spheres & (image_hu >= air_below) & (image_hu <= bone_above)
    if _check_size(opening_size) > 1 and mask.any():
        mask = ndimage.binary_opening(mask, structure=spherical_kernel(opening_size, image_hu.ndim))
    return mask


def shell_mask(foreground: np.ndarray, size: int = 11, kernel: str = "octagon") -> np.ndarray:
    """External morphological gradient: ``dilate(foreground, kernel) & ~foreground`` ("shell masking", sec. 2.3).

    ``kernel`` is "octagon" (:func:`octagon_kernel`, the paper's choice) or "sphere" (:func:`spherical_kernel`),
    ``size`` its width in voxels (11).
    """
    foreground = np.asarray(foreground).astype(bool)
    if kernel == "octagon":
        structure = octagon_kernel(size, foreground.ndim)
    elif kernel == "sphere":
        structure = spherical_kernel(size, foreground.ndim)
    else:
        raise ValueError(f"kernel must be 'octagon' or 'sphere', got {kernel!r}")
    if not foreground.any():
        return np.zeros_like(foreground)
    return ndimage.binary_dilation(foreground, structure=structure) & ~foreground


def size_normalised_weights(instances: np.ndarray, mean_size: Optional[float] = None) -> np.ndarray:
    """Weights ``|LN_mean| / |LN|`` on the voxels of each instance, 1 elsewhere (Altun et al., Appendix A, eq. 5).

    ``|LN|`` is the voxel count of the instance, ``|LN_mean|`` ``mean_size`` (e.g. the mean over the training set)
    or, when None, the mean voxel count of the instances present. Each instance then has total weight
    ``|LN_mean|``, whatever its size.
    """
    instances = np.asarray(instances)
    weights = np.ones(instances.shape, dtype=np.float32)
    ids, counts = np.unique(instances[instances > 0], return_counts=True)
    if len(ids) == 0:
        return weights
    mean = float(counts.mean()) if mean_size is None else float(mean_size)
    if not mean > 0:
        raise ValueError(f"mean_size must be > 0, got {mean_size}")
    lookup = np.ones(int(instances.max()) + 1, dtype=np.float64)
    lookup[ids] = mean / counts
    inside = instances > 0
    weights[inside] = lookup[instances[inside]].astype(np.float32)
    return weights


def detection_weights(instances: np.ndarray, shell_size: int = 11, normalise: bool = True,
                      mean_size: Optional[float] = None, shell: bool = True) -> np.ndarray:
    """Stage-2 voxel weights: size-normalised inside the nodes (or 1), 0 on the shell, 1 in the background."""
    instances = np.asarray(instances)
    weights = size_normalised_weights(instances, mean_size) if normalise else np.ones(instances.shape, np.float32)
    if shell and shell_size > 1:
        weights[shell_mask(instances > 0, shell_size)] = 0.0
    return weights
