"""Input checks, HU windows and the global-image geometry of AneurysmSeg (numpy only: importable without PyTorch).

HU windows (paper, Supplemental "Input Transformation"; official code ``core.py`` ``_normalize``): each window
[lo, hi] gives one channel ``(clip(HU, lo, hi) - lo) / (hi - lo)``; the defaults are [0, 100], [100, 200], [200, 800].

Global image (paper: "resized from the original CTA image to 96x96x96 while keeping the same aspect ratio (with
zero-padding)"): the volume is padded symmetrically with its minimum (air, 0 in every window) to the aspect ratio of
the global image and resized to it; :class:`GlobalGeometry` maps a patch's voxel box onto the global image (inclusive
box ``(d0, d1, h0, h1, w0, w1)``, the convention of the official ``GlobalLocalizer.get_position_bbox``). Like the
official code the aspect ratio is that of the voxel grid (not of the physical extent).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from mednets.image import Volume

__all__ = ["MAX_VOXELS", "InputError", "IntensityWarning", "check_input_volume", "hu_windows", "GlobalGeometry"]

#: Largest input accepted (voxels): 1024 x 1024 x 1024 as float32 HU plus a probability map fits in 12 GB of memory.
MAX_VOXELS = 1024 * 1024 * 1024

DEFAULT_WINDOWS: Tuple[Tuple[float, float], ...] = ((0.0, 100.0), (100.0, 200.0), (200.0, 800.0))


class InputError(ValueError):
    """The input image cannot be segmented as it is; the message says why and what to do."""


class IntensityWarning(UserWarning):
    """The intensities do not look like a CT angiography in Hounsfield units (the result may be poor)."""


def check_input_volume(volume: Volume, min_size: int = 1) -> None:
    """Refuse what GLIA-Net cannot segment, warn about what it may segment badly.

    Raises :class:`InputError` for: a vector (RGB) image, a 2D image, a spacing that is zero or not finite, a volume
    larger than :data:`MAX_VOXELS`, NaN or infinite voxels, a constant (or empty) image. Warns
    (:class:`IntensityWarning`) when the values do not look like CTA in HU: nothing below -200 (no air or fat around the
    head) or nothing above 150 (no contrast-filled vessels or bone). Oblique volumes are accepted (the network works
    on the voxel grid and the results are written on the same grid).
    """
    if volume.is_vector:
        raise InputError(f"the image has {volume.num_channels} components per voxel (RGB or vector image); "
                         "AneurysmSeg needs a single-component CT angiography volume in Hounsfield units")
    if volume.is_2d or min(volume.shape) < max(1, int(min_size)):
        raise InputError(f"the image is 2D or too thin ({volume.shape[0]} slices); AneurysmSeg segments 3D CT "
                         "angiography volumes: load the whole series")
    spacing = np.asarray(volume.spacing, dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"the image spacing {tuple(spacing)} is missing or zero; set the voxel size in the Volumes "
                         "module (Volume Information) before segmenting")
    if volume.array.size > MAX_VOXELS:
        raise InputError(f"the image has {volume.array.size:,} voxels, more than the {MAX_VOXELS:,} this module "
                         "processes at once; crop it to the head (Crop Volume module) first")
    array = volume.array
    finite = np.isfinite(array)
    if not finite.all():
        raise InputError(f"the image contains {int((~finite).sum()):,} NaN or infinite voxels; fix or mask them "
                         "first (e.g. with the Mask Volume module)")
    low, high = float(array.min()), float(array.max())
    if not high > low:
        raise InputError(f"the image is constant (every voxel is {low:g}); there is nothing to segment")
    if low > -200 or high < 150:
        warnings.warn(f"the image values run from {low:g} to {high:g}, which does not look like a CT angiography in "
                      "Hounsfield units (air near -1000, contrast-filled vessels above 150); the result may be poor",
                      IntensityWarning, stacklevel=2)


def hu_windows(array: np.ndarray, windows: Sequence[Sequence[float]] = DEFAULT_WINDOWS,
               dtype=np.float32) -> np.ndarray:
    """One channel per HU window: ``(clip(x, lo, hi) - lo) / (hi - lo)``; returns ``(len(windows), *array.shape)``."""
    array = np.asarray(array)
    out = np.empty((len(windows),) + array.shape, dtype=dtype)
    for channel, (low, high) in enumerate(windows):
        low, high = float(low), float(high)
        if not high > low:
            raise ValueError(f"HU window [{low}, {high}] is empty")
        np.clip(array, low, high, out=out[channel], casting="unsafe")
        out[channel] -= low
        out[channel] *= 1.0 / (high - low)
    return out


@dataclass(frozen=True)
class GlobalGeometry:
    """How a volume of ``shape`` becomes the global image of ``size`` (aspect kept, symmetric padding).

    Attributes:
        shape: volume size (K, J, I).
        size: global image size.
        padded_shape: size after padding to the global image's aspect ratio.
        pad_before: padding (voxels) before the volume on each axis (the rest goes after it).
    """

    shape: Tuple[int, int, int]
    size: Tuple[int, int, int]
    padded_shape: Tuple[int, int, int]
    pad_before: Tuple[int, int, int]

    @classmethod
    def of(cls, shape: Sequence[int], size: Sequence[int] = (96, 96, 96)) -> "GlobalGeometry":
        shape = tuple(int(s) for s in shape)
        size = tuple(int(s) for s in size)
        if len(shape) != 3 or len(size) != 3 or min(shape) < 1 or min(size) < 1:
            raise ValueError(f"need 3D shapes, got {shape} and {size}")
        scale = min(n / o for n, o in zip(size, shape))  # the axis that fills the global image sets the scale
        padded = tuple(max(o, int(math.ceil(n / scale - 1e-6))) for n, o in zip(size, shape))
        before = tuple((p - o) // 2 for p, o in zip(padded, shape))
        return cls(shape, size, padded, before)

    @property
    def pad_after(self) -> Tuple[int, int, int]:
        return tuple(p - o - b for p, o, b in zip(self.padded_shape, self.shape, self.pad_before))

    def box(self, start: Sequence[int], extent: Sequence[int]) -> Tuple[int, int, int, int, int, int]:
        """Inclusive box ``(d0, d1, h0, h1, w0, w1)`` in the global image of the patch ``[start, start + extent)``."""
        out = []
        for axis in range(3):
            factor = self.size[axis] / self.padded_shape[axis]
            n = self.size[axis]
            first = int(round((int(start[axis]) + self.pad_before[axis]) * factor))
            last = int(round((int(start[axis]) + int(extent[axis]) + self.pad_before[axis]) * factor)) - 1
            first = min(max(first, 0), n - 1)
            out.extend([first, min(max(last, first), n - 1)])
        return tuple(out)  # type: ignore[return-value]

    def pad(self, array: np.ndarray, value: Optional[float] = None) -> np.ndarray:
        """``array`` (..., K, J, I) padded to :attr:`padded_shape` with ``value`` (default: its minimum)."""
        value = float(np.min(array)) if value is None else float(value)
        width = [(0, 0)] * (array.ndim - 3) + list(zip(self.pad_before, self.pad_after))
        return np.pad(array, width, mode="constant", constant_values=value)
