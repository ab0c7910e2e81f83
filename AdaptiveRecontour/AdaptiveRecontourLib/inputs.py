"""Input checks for the CT volumes (torch-free): clear errors before any model is loaded."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["InputError", "check_ct_volume", "MAX_VOXELS"]

#: Largest volume accepted after resampling to the working spacing (about 512 x 512 x 400 at 1 mm).
MAX_VOXELS = 512 * 512 * 400


class InputError(ValueError):
    """An input the pipeline cannot use; the message says why in plain words."""


def check_ct_volume(volume, what: str = "volume", working_spacing_mm: float = 1.0) -> None:
    array = np.asarray(volume.array)
    if volume.is_vector or array.ndim != 3:
        raise InputError(f"the {what} has several components per voxel (colour?); a greyscale CT is expected")
    if min(array.shape) < 2:
        raise InputError(f"the {what} is 2D (shape {array.shape}); a 3D CT is expected")
    if not np.all(np.isfinite(array)):
        raise InputError(f"the {what} contains NaN or infinite voxels")
    if float(array.max()) == float(array.min()):
        raise InputError(f"the {what} is constant: it contains no image")
    spacing = np.asarray(volume.spacing, dtype=float)
    if not np.all(spacing > 0):
        raise InputError(f"the {what} has a zero spacing")
    voxels = float(np.prod(np.asarray(array.shape) * spacing / float(working_spacing_mm)))
    if voxels > MAX_VOXELS:
        raise InputError(f"the {what} is too large ({voxels / 1e6:.0f} million voxels at {working_spacing_mm} mm); "
                         "crop it to the pelvis first (Crop Volume module)")
    lo, hi = np.percentile(array, [1, 99])
    if lo > -300 or hi < 0 or hi > 5000:
        warnings.warn(f"the {what} does not look like a CT in Hounsfield units (1st-99th percentile {lo:.0f} to "
                      f"{hi:.0f}); results may be meaningless")
