"""Checks every module makes on an input image before running a network (numpy only: importable without PyTorch).

A module calls :func:`check_image` with what it needs (greyscale or RGB, 2D or 3D, a size limit) and adds its own
modality checks (e.g. "does this look like CT in HU?") as :class:`IntensityWarning`. Errors are
:class:`InputError` (a ``ValueError``) whose message names the problem and what the user can do about it, in the words
of the Slicer user interface (Volumes module, Crop Volume module...).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from mednets.image import Volume

__all__ = ["InputError", "IntensityWarning", "check_image"]


class InputError(ValueError):
    """The input image cannot be processed as it is; the message says why and what to do."""


class IntensityWarning(UserWarning):
    """The intensities do not look like the expected modality (the result may be poor)."""


def check_image(volume: Volume, name: str, spatial_dims: Optional[int] = 3, channels: Optional[int] = 1,
                max_voxels: Optional[int] = None, what: str = "segment") -> None:
    """Refuse an image the network cannot process.

    Args:
        volume: the image (``(K, J, I)`` or ``(K, J, I, C)``; a single slice has K = 1).
        name: how the message names the tool ("OrganCombo", "the PET model"...).
        spatial_dims: 3 (volumes), 2 (single slices) or None (either).
        channels: 1 (greyscale), 3 (RGB) or None (any).
        max_voxels: largest number of voxels accepted (None: no limit).
        what: the verb of the messages ("segment", "detect lymph nodes in", ...).

    Raises :class:`InputError`, in this order, for: the wrong number of components (RGB where greyscale is expected
    or the reverse), a 2D image where volumes are expected or the reverse, a spacing that is zero or not finite, more
    than ``max_voxels`` voxels, NaN or infinite voxels, and a constant (or empty) image.
    """
    components = volume.num_channels if volume.is_vector else 1
    if channels == 1 and components != 1:
        raise InputError(f"the image has {components} components per voxel (RGB or vector image); {name} needs a "
                         "single-component (greyscale) volume")
    if channels is not None and channels != 1 and components != channels:
        kind = "an RGB" if channels == 3 else f"a {channels}-component"
        raise InputError(f"the image has {components} component(s) per voxel; {name} needs {kind} image")
    dims = 2 if volume.is_2d else 3
    if spatial_dims == 3 and dims == 2:
        raise InputError(f"the image is 2D (a single slice) but {name} needs 3D volumes; load the whole series")
    if spatial_dims == 2 and dims == 3:
        raise InputError(f"the image is a 3D volume but {name} works on 2D images (a single slice); choose a 3D "
                         "model or extract a slice")
    spacing = np.asarray(volume.spacing, dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"the image spacing {tuple(spacing)} is missing or zero; set the voxel size in the Volumes "
                         "module (Volume Information) first")
    voxels = int(np.prod(volume.shape))
    if max_voxels is not None and voxels > max_voxels:
        raise InputError(f"the image has {voxels:,} voxels, more than the {max_voxels:,} {name} processes at "
                         "once; crop it (Crop Volume module) or resample it to a coarser spacing")
    array = volume.array
    finite = np.isfinite(array)
    if not finite.all():
        raise InputError(f"the image contains {int((~finite).sum()):,} NaN or infinite voxels; fix or mask them "
                         "first (e.g. with the Mask Volume module)")
    if array.size == 0 or not float(array.max()) > float(array.min()):
        value = f"every voxel is {float(array.min()):g}" if array.size else "it has no voxels"
        raise InputError(f"the image is constant ({value}); there is nothing to {what.split()[0]}")
