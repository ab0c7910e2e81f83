"""Input checks of OrganCombo (numpy only: importable before PyTorch is installed)."""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from mednets.image import Volume
from mednets.inputs import InputError, IntensityWarning, check_image

from .configs import OrganComboConfig

__all__ = ["MAX_VOXELS", "InputError", "IntensityWarning", "check_input_volume", "min_max_normalize"]

#: Largest input accepted (voxels): 1024 x 1024 x 512, about 2 GB as float32 per organ channel of probabilities.
MAX_VOXELS = 1024 * 1024 * 512


def check_input_volume(volume: Volume, config: Optional[OrganComboConfig] = None) -> None:
    """Refuse what the network cannot segment, warn about what it may segment badly.

    Without ``config`` only the checks that hold for every model run (no dimensionality or modality checks), so bad
    input is refused before any model is loaded.

    Raises :class:`InputError` (see :func:`mednets.inputs.check_image`) for: a vector (RGB) image, a 2D image for a 3D
    configuration or a 3D volume for a 2D one, a spacing that is zero or not finite, a volume larger than
    :data:`MAX_VOXELS`, NaN or infinite voxels, a constant (or empty) image. Warns (:class:`IntensityWarning`) when PET
    intensities are negative (CT-like values).
    """
    name = config.title if config is not None else "OrganCombo"
    check_image(volume, name, spatial_dims=None if config is None else config.spatial_dims, channels=1,
                max_voxels=MAX_VOXELS)
    low = float(volume.array.min())
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
