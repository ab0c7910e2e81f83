"""Input checks of OrganCombo (numpy only: importable before PyTorch is installed)."""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from mednets.image import Volume

from .configs import OrganComboConfig

__all__ = ["MAX_VOXELS", "InputError", "IntensityWarning", "check_input_volume", "min_max_normalize"]

#: Largest input accepted (voxels): 1024 x 1024 x 512, about 2 GB as float32 per organ channel of probabilities.
MAX_VOXELS = 1024 * 1024 * 512


class InputError(ValueError):
    """The input image cannot be segmented as it is; the message says why and what to do."""


class IntensityWarning(UserWarning):
    """The intensities do not look like the configured modality (the result may be poor)."""


def check_input_volume(volume: Volume, config: Optional[OrganComboConfig] = None) -> None:
    """Refuse what the network cannot segment, warn about what it may segment badly.

    Without ``config`` only the checks that hold for every model run (no dimensionality or modality checks), so bad
    input is refused before any model is loaded.

    Raises :class:`InputError` for: a vector (RGB) image, a 2D image for a 3D configuration or a 3D volume for a 2D
    one, NaN or infinite voxels, a constant (or empty) image, a spacing that is zero or not finite, and a volume larger
    than :data:`MAX_VOXELS`. Warns (:class:`IntensityWarning`) when PET intensities are negative (CT-like values).
    """
    name = config.title if config is not None else "OrganCombo"
    if volume.is_vector:
        raise InputError(f"the image has {volume.num_channels} components per voxel (RGB or vector image); {name} "
                         "needs a single-component (greyscale) volume")
    dims = 2 if volume.is_2d else 3
    if config is not None and config.spatial_dims == 3 and dims == 2:
        raise InputError(f"the image is 2D (a single slice) but {name} segments 3D volumes; load the whole series")
    if config is not None and config.spatial_dims == 2 and dims == 3:
        raise InputError(f"the image is a 3D volume but this {name} model segments 2D images; choose a 3D model or "
                         "extract a frame")
    spacing = np.asarray(volume.spacing, dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"the image spacing {tuple(spacing)} is missing or zero; set the voxel size in the Volumes "
                         "module (Volume Information) before segmenting")
    if volume.array.size > MAX_VOXELS:
        raise InputError(f"the image has {volume.array.size:,} voxels, more than the {MAX_VOXELS:,} this module "
                         "processes at once; crop it (Crop Volume module) or resample it to a coarser spacing")
    array = volume.array
    finite = np.isfinite(array)
    if not finite.all():
        raise InputError(f"the image contains {int((~finite).sum()):,} NaN or infinite voxels; fix or mask them "
                         "first (e.g. with the Mask Volume module)")
    low, high = float(array.min()), float(array.max())
    if not high > low:
        raise InputError(f"the image is constant (every voxel is {low:g}); there is nothing to segment")
    if config is not None and config.modality == "PT" and low < -100:
        warnings.warn(f"the image has strongly negative values (minimum {low:g}), which PET uptake (SUV or Bq/ml) "
                      "never has; is this a CT? The PET model may segment it poorly", IntensityWarning, stacklevel=2)


def min_max_normalize(array: np.ndarray, low: Optional[float] = None, high: Optional[float] = None) -> np.ndarray:
    """``(array - low) / (high - low)`` as float32 (low/high default to the array's min and max; constant -> 0)."""
    array = np.asarray(array, dtype=np.float32)
    low = float(array.min()) if low is None else float(low)
    high = float(array.max()) if high is None else float(high)
    if not high > low:
        return np.zeros_like(array)
    return (array - low) / (high - low)
