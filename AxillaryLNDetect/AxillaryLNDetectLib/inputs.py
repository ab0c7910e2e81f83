"""Input checks and reference annotations of AxillaryLNDetect (numpy only: importable before PyTorch is installed)."""

from __future__ import annotations

import re
import warnings
from typing import List, Optional, Sequence

import numpy as np

from mednets.image import Volume

__all__ = ["MAX_VOXELS", "InputError", "IntensityWarning", "check_input_volume", "parse_diameter_mm",
           "DEFAULT_REFERENCE_DIAMETER_MM"]

#: Largest input accepted (voxels): 1024 x 1024 x 1024.
MAX_VOXELS = 1024 * 1024 * 1024
#: Short-axis diameter assumed for a reference point whose description gives none (mm).
DEFAULT_REFERENCE_DIAMETER_MM = 10.0


class InputError(ValueError):
    """The input cannot be processed as it is; the message says why and what to do."""


class IntensityWarning(UserWarning):
    """The intensities do not look like CT in Hounsfield units (the result may be poor)."""


def check_input_volume(volume: Volume) -> None:
    """Refuse what the detector cannot process, warn about what it may process badly.

    Raises :class:`InputError` for: a vector (RGB) image, a 2D image (one slice), NaN or infinite voxels, a constant
    image, a missing/zero/non-finite spacing, and a volume larger than :data:`MAX_VOXELS`. Warns
    (:class:`IntensityWarning`) when the values do not look like CT in HU (no air below -500 HU or a range narrower
    than 500 HU, e.g. an MRI or a normalised image).
    """
    if volume.is_vector:
        raise InputError(f"the image has {volume.num_channels} components per voxel (RGB or vector image); "
                         "AxillaryLNDetect needs a single-component CT volume")
    if volume.is_2d or min(volume.shape) < 2:
        raise InputError(f"the image has shape {volume.shape} (K, J, I): a single slice or a line; AxillaryLNDetect "
                         "detects lymph nodes in 3D CT volumes, load the whole series")
    spacing = np.asarray(volume.spacing, dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"the image spacing {tuple(spacing)} is missing or zero; set the voxel size in the Volumes "
                         "module (Volume Information) first")
    if volume.array.size > MAX_VOXELS:
        raise InputError(f"the image has {volume.array.size:,} voxels, more than the {MAX_VOXELS:,} this module "
                         "processes at once; crop it to the chest (Crop Volume module)")
    array = volume.array
    finite = np.isfinite(array)
    if not finite.all():
        raise InputError(f"the image contains {int((~finite).sum()):,} NaN or infinite voxels; fix or mask them first")
    low, high = float(array.min()), float(array.max())
    if not high > low:
        raise InputError(f"the image is constant (every voxel is {low:g}); there is nothing to detect")
    if low > -500 or high - low < 500:
        warnings.warn(f"the intensities range from {low:g} to {high:g}, which does not look like CT in Hounsfield "
                      "units (air is about -1000 HU); the detector may miss lymph nodes", IntensityWarning,
                      stacklevel=2)


_DIAMETER_PATTERN = re.compile(r"(?:diameter|short[ _-]?axis(?:_mm)?|size|d)\s*[=:]\s*([0-9]+(?:\.[0-9]*)?)",
                               re.IGNORECASE)
_NUMBER_PATTERN = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*(?:mm)?\s*$", re.IGNORECASE)


def parse_diameter_mm(description: Optional[str], default: Optional[float] = DEFAULT_REFERENCE_DIAMETER_MM
                      ) -> Optional[float]:
    """Short-axis diameter (mm) from a markups point description.

    Accepted: a bare number (``"12.5"``, ``"12.5 mm"``) or ``key=value`` / ``key: value`` with key ``diameter``,
    ``short_axis``, ``short axis``, ``short_axis_mm``, ``size`` or ``d`` (e.g. this module's own output
    ``"confidence=0.93; short_axis_mm=8.1"``). Returns ``default`` when none is found; raises ValueError for a
    non-positive value.
    """
    text = (description or "").strip()
    match = _DIAMETER_PATTERN.search(text) or _NUMBER_PATTERN.match(text)
    if not match:
        return default
    value = float(match.group(1))
    if not value > 0:
        raise ValueError(f"a lymph-node diameter must be > 0 mm, got {value:g} in {description!r}")
    return value


def parse_diameters(descriptions: Sequence[str], default: float = DEFAULT_REFERENCE_DIAMETER_MM) -> List[float]:
    """:func:`parse_diameter_mm` for each description."""
    return [float(parse_diameter_mm(text, default)) for text in descriptions]


__all__.append("parse_diameters")
