"""Resampling of images onto new grids, and displacement fields as SimpleITK transforms (SimpleITK underneath).

Every function accepts a :class:`~mednets.image.Volume` or a ``SimpleITK.Image`` and returns the same kind.

Spacing is ALWAYS given in array-axis order, for both kinds of input: ``(sk, sj, si)`` = (z, y, x) for 3D images, the
order of ``image.array`` and of ``SimpleITK.GetArrayFromImage(image)``; (y, x) for a 2D SimpleITK image. This is the
reverse of ``SimpleITK.Image.GetSpacing()``.

Interpolators (``interpolator=``):

============== ============================================ ==========================================================
name           SimpleITK                                    use
============== ============================================ ==========================================================
linear         ``sitkLinear``                               intensities (default)
bspline        ``sitkBSpline`` (cubic B-spline)             smooth intensities, least blur; may overshoot
lanczos        ``sitkLanczosWindowedSinc``                  band-limited intensities; may overshoot (ringing)
nearest        ``sitkNearestNeighbor``                      label maps, RGB
label_gaussian ``sitkLabelGaussian``                        label maps: each output voxel takes the label with the
                                                            largest Gaussian-weighted vote (smooth label boundaries)
============== ============================================ ==========================================================

Output pixel type = input pixel type (a bool or float16 Volume comes back as uint8 or float32, the types SimpleITK
has). The label interpolators only ever output values present in the input (plus
``default_value`` outside it). The other interpolators compute in floating point; for integer inputs the result is
rounded to the nearest integer and clipped to the type's range (no wrap-around of overshoots).

Displacement fields: an array ``field`` of shape ``(K, J, I, 3)`` on the grid of a reference volume, in millimetres,
holding at each voxel centre ``p`` the displacement ``d(p)`` of the RESAMPLING convention: the transform maps ``p`` to
``p + d(p)``, i.e. an output (fixed) image at ``p`` samples the input (moving) image at ``p + d(p)``. This is how ITK's
``DisplacementFieldTransform`` works and how 3D Slicer stores a grid transform "from parent". The vectors are RAS
(default) or LPS (``coordinates="LPS"``, ITK's native frame).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
import SimpleITK as sitk

from mednets.image import Volume, convert_coordinates, coordinate_frame, sitk_geometry_from_ijk_to_ras

__all__ = [
    "INTERPOLATORS",
    "LABEL_INTERPOLATORS",
    "resample_to_spacing",
    "resample_to_reference",
    "displacement_field_to_sitk",
    "displacement_field_from_sitk",
]

ImageT = TypeVar("ImageT", Volume, sitk.Image)

#: Interpolator names accepted by the resampling functions.
INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
    "lanczos": sitk.sitkLanczosWindowedSinc,
    "nearest": sitk.sitkNearestNeighbor,
    "label_gaussian": sitk.sitkLabelGaussian,
}
#: Interpolators that keep a label map's values (no new label is invented).
LABEL_INTERPOLATORS = frozenset({"nearest", "label_gaussian"})


class _Grid:
    """A SimpleITK output grid: size, spacing, origin (x, y, z order / LPS) and row-major direction."""

    __slots__ = ("size", "spacing", "origin", "direction")

    def __init__(self, size: Sequence[int], spacing: Sequence[float], origin: Sequence[float],
                 direction: Sequence[float]) -> None:
        self.size = tuple(int(n) for n in size)
        self.spacing = tuple(float(s) for s in spacing)
        self.origin = tuple(float(v) for v in origin)
        self.direction = tuple(float(v) for v in direction)

    @classmethod
    def of(cls, image: Union[Volume, sitk.Image]) -> "_Grid":
        if isinstance(image, Volume):
            origin, spacing, direction = sitk_geometry_from_ijk_to_ras(image.ijk_to_ras)
            return cls(image.shape[::-1], spacing, origin, direction)
        if isinstance(image, sitk.Image):
            return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())
        raise TypeError(f"expected a mednets Volume or a SimpleITK Image, got {type(image).__name__}")

    @property
    def dimension(self) -> int:
        return len(self.size)


def _as_sitk(image: Union[Volume, sitk.Image]) -> sitk.Image:
    if isinstance(image, Volume):
        return image.to_sitk()
    if isinstance(image, sitk.Image):
        return image
    raise TypeError(f"expected a mednets Volume or a SimpleITK Image, got {type(image).__name__}")


def _like_input(result: sitk.Image, original: Union[Volume, sitk.Image]) -> Union[Volume, sitk.Image]:
    return Volume.from_sitk(result) if isinstance(original, Volume) else result


def _interpolator(name: str) -> int:
    try:
        return INTERPOLATORS[name]
    except KeyError:
        raise ValueError(f"unknown interpolator {name!r}; choose one of {sorted(INTERPOLATORS)}") from None


def _requested_spacing(spacing: Union[float, Sequence[Optional[float]]], grid: _Grid) -> Tuple[float, ...]:
    """Requested spacing in SimpleITK (x, y, z) order from an array-axis-order request."""
    current = grid.spacing
    if np.isscalar(spacing):
        # One number: every axis with more than one voxel (a 2D image stored as one slice keeps its slice thickness).
        wanted = [float(spacing) if n > 1 else s for n, s in zip(grid.size, current)]  # type: ignore[arg-type]
    else:
        values = list(spacing)  # type: ignore[arg-type]
        if len(values) != grid.dimension:
            raise ValueError(f"spacing must have {grid.dimension} values in array-axis order "
                             f"({'(sk, sj, si)' if grid.dimension == 3 else '(sj, si)'}), got {spacing!r}")
        wanted = [s if v is None else float(v) for v, s in zip(values[::-1], current)]
    if any(not np.isfinite(s) or s <= 0 for s in wanted):
        raise ValueError(f"spacing must be positive, got {spacing!r}")
    return tuple(wanted)


def _extent_preserving_grid(grid: _Grid, spacing: Union[float, Sequence[Optional[float]]]) -> _Grid:
    """The grid of :func:`resample_to_spacing` (its docstring states the rule)."""
    new_spacing = np.asarray(_requested_spacing(spacing, grid))
    old_spacing = np.asarray(grid.spacing)
    extent = np.asarray(grid.size) * old_spacing
    new_size = np.maximum(1, np.floor(extent / new_spacing + 0.5)).astype(int)
    direction = np.asarray(grid.direction).reshape(grid.dimension, grid.dimension)
    new_origin = np.asarray(grid.origin) + direction @ ((new_spacing - old_spacing) / 2.0)
    return _Grid(new_size, new_spacing, new_origin, grid.direction)


def _resample(image: sitk.Image, grid: _Grid, interpolator: str, default_value: float,
              transform: Optional[sitk.Transform]) -> sitk.Image:
    method = _interpolator(interpolator)
    components = image.GetNumberOfComponentsPerPixel()
    if image.GetDimension() != grid.dimension:
        raise ValueError(f"cannot resample a {image.GetDimension()}D image onto a {grid.dimension}D grid")
    if interpolator == "label_gaussian" and components > 1:
        raise ValueError("label_gaussian interpolates label maps; this image has vector pixels (use 'nearest')")
    pixel_id = image.GetPixelID()
    integer_input = np.issubdtype(_numpy_dtype(image), np.integer)
    continuous = interpolator not in LABEL_INTERPOLATORS
    output_type = pixel_id
    if continuous and integer_input:
        # Interpolate in floating point (float32 is exact for integers of up to 16 bits), round back afterwards.
        if _numpy_dtype(image).itemsize <= 2:
            output_type = sitk.sitkVectorFloat32 if components > 1 else sitk.sitkFloat32
        else:
            output_type = sitk.sitkVectorFloat64 if components > 1 else sitk.sitkFloat64
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(grid.size)
    resampler.SetOutputSpacing(grid.spacing)
    resampler.SetOutputOrigin(grid.origin)
    resampler.SetOutputDirection(grid.direction)
    resampler.SetInterpolator(method)
    resampler.SetDefaultPixelValue(float(default_value))
    resampler.SetOutputPixelType(output_type)
    resampler.SetTransform(transform if transform is not None else sitk.Transform(grid.dimension, sitk.sitkIdentity))
    result = resampler.Execute(image)
    if output_type != pixel_id:
        result = _round_to_integer_type(result, _numpy_dtype(image), components > 1)
    return result


def _numpy_dtype(image: sitk.Image) -> np.dtype:
    return sitk.GetArrayViewFromImage(image).dtype


def _round_to_integer_type(image: sitk.Image, dtype: np.dtype, is_vector: bool) -> sitk.Image:
    info = np.iinfo(dtype)
    values = np.clip(np.rint(sitk.GetArrayViewFromImage(image)), info.min, info.max).astype(dtype)
    rounded = sitk.GetImageFromArray(values, isVector=is_vector)
    rounded.CopyInformation(image)
    return rounded


def resample_to_spacing(image: ImageT, spacing: Union[float, Sequence[Optional[float]]],
                        interpolator: str = "linear", default_value: float = 0.0) -> ImageT:
    """Resample ``image`` to a new voxel size, preserving its physical extent.

    The output grid, along every axis with old size ``n``, old spacing ``s`` and new spacing ``s'``:

    * the physical extent is ``e = n * s`` (from the outer edge of the first voxel to the outer edge of the last);
    * the new size is ``n' = max(1, floor(e / s' + 0.5))`` (``e / s'`` rounded to nearest);
    * the outer edge of the first voxel stays where it was, so the first voxel centre (the origin) moves by
      ``(s' - s) / 2`` along the axis: ``origin' = origin + direction @ ((s' - s) / 2)``;
    * the far edge therefore stays within ``s' / 2`` of where it was (exactly in place when ``e`` is a multiple of
      ``s'``);
    * the directions are unchanged (an oblique grid stays oblique).

    Args:
        image: a Volume or a SimpleITK image (scalar or vector).
        spacing: new voxel size in mm in ARRAY-AXIS order ``(sk, sj, si)`` (z, y, x), whatever the input kind;
            ``None`` keeps an axis' spacing. A single number makes every axis of more than one voxel isotropic (a 2D
            image stored as a single slice keeps its slice thickness).
        interpolator: one of :data:`INTERPOLATORS` (``"nearest"`` or ``"label_gaussian"`` for label maps).
        default_value: value of output voxels whose centre falls outside the input (only near the far edge, when
            ``n' * s'`` exceeds ``e``).

    Returns:
        The resampled image, same kind and pixel type as ``image``. Go back to the original grid with
        :func:`resample_to_reference` (``reference=image``).
    """
    source = _as_sitk(image)
    target = _extent_preserving_grid(_Grid.of(source), spacing)
    return _like_input(_resample(source, target, interpolator, default_value, None), image)


def resample_to_reference(image: ImageT, reference: Union[Volume, sitk.Image], interpolator: str = "linear",
                          default_value: float = 0.0, transform: Optional[sitk.Transform] = None) -> ImageT:
    """Resample ``image`` onto the grid of ``reference`` (size, spacing, origin, direction; its pixels are unused).

    Args:
        image: a Volume or a SimpleITK image (scalar or vector).
        reference: a Volume or a SimpleITK image defining the output grid (same dimension as ``image``).
        interpolator: one of :data:`INTERPOLATORS`.
        default_value: value of output voxels whose centre maps outside ``image``.
        transform: optional SimpleITK transform in LPS, resampling convention (output point ``p`` samples ``image`` at
            ``transform(p)``), e.g. from :func:`displacement_field_to_sitk`. Identity when omitted.

    Returns:
        The resampled image on the reference grid, same kind and pixel type as ``image``.
    """
    return _like_input(_resample(_as_sitk(image), _Grid.of(reference), interpolator, default_value, transform), image)


def displacement_field_to_sitk(field: np.ndarray, reference: Volume,
                               coordinates: str = "RAS") -> sitk.DisplacementFieldTransform:
    """A ``sitk.DisplacementFieldTransform`` (LPS, linear interpolation) from a displacement field array.

    Args:
        field: ``(K, J, I, 3)`` displacements in mm on the grid of ``reference`` (resampling convention, see module
            docstring): the transform maps the centre ``p`` of voxel ``[k, j, i]`` to ``p + field[k, j, i]``.
        reference: the grid of the field.
        coordinates: frame of the displacement vectors, ``"RAS"`` or ``"LPS"``.
    """
    vectors = np.asarray(field, dtype=np.float64)
    if vectors.shape != reference.shape + (3,):
        raise ValueError(f"displacement field must have shape {reference.shape + (3,)} (reference grid + 3), "
                         f"got {vectors.shape}")
    vectors_lps = convert_coordinates(vectors, coordinates, "LPS")
    image = Volume(np.ascontiguousarray(vectors_lps), reference.ijk_to_ras.copy()).to_sitk()
    transform = sitk.DisplacementFieldTransform(image)
    transform.SetInterpolator(sitk.sitkLinear)
    return transform


def displacement_field_from_sitk(transform: sitk.Transform, reference: Optional[Union[Volume, sitk.Image]] = None,
                                 coordinates: str = "RAS") -> Volume:
    """The displacement field of a SimpleITK transform, as a Volume whose array is the ``(K, J, I, 3)`` field.

    Args:
        transform: a ``DisplacementFieldTransform`` (its own grid is used when ``reference`` is None) or, with
            ``reference``, any SimpleITK 3D transform (sampled at the reference voxel centres: ``d(p) = T(p) - p``).
        reference: grid to sample the transform on.
        coordinates: frame of the returned vectors, ``"RAS"`` (default) or ``"LPS"``.

    Returns:
        A Volume on the field's grid; ``volume.array`` is the float64 field in mm.
    """
    coordinate_frame(coordinates)  # fail before any work
    if reference is None:
        if transform.GetTransformEnum() != sitk.sitkDisplacementField:
            raise ValueError(f"a {transform.GetName()} has no grid of its own: pass a reference grid to sample it on")
        field_image = sitk.DisplacementFieldTransform(transform).GetDisplacementField()
    else:
        grid = _Grid.of(reference)
        field_image = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, grid.size, grid.origin,
                                                        grid.spacing, grid.direction)
    volume = Volume.from_sitk(field_image)
    return volume.with_array(convert_coordinates(volume.array, "LPS", coordinates))
