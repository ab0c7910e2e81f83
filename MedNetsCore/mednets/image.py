"""The :class:`Volume` image type and the geometry conventions shared by I/O, resampling and the MRML bridge.

Coordinate systems (the single source of truth for every mednets module):

* **Array-axis order.** A 3D scalar array is indexed ``array[k, j, i]`` (K, J, I = z, y, x): I is the fastest-varying
  axis, exactly like ``slicer.util.arrayFromVolume`` and ``SimpleITK.GetArrayFromImage``. Vector / RGB volumes keep the
  channels LAST: ``array[k, j, i, c]``. Every ``spacing`` tuple is given in this same order, ``(sk, sj, si)``.
* **2D images** are single-slice volumes: shape ``(1, J, I)`` or ``(1, J, I, C)`` (this is how 3D Slicer shows a 2D
  image). The shape alone is therefore never ambiguous: ``ndim == 3`` is a scalar volume, ``ndim == 4`` a vector one.
  :attr:`Volume.image2d` gives the ``(J, I)`` / ``(J, I, C)`` view.
* **Physical space.** Slicer works in RAS (x to the patient's Right, y Anterior, z Superior); ITK / SimpleITK / DICOM
  in LPS (Left, Posterior, Superior). The two differ by the sign of the first two coordinates:
  ``(x, y, z)_RAS = (-x, -y, z)_LPS`` (points and displacement vectors alike).
* **ijk_to_ras** is Slicer's 4x4 ``IJKToRAS`` matrix: ``[r, a, s, 1]^T = ijk_to_ras @ [i, j, k, 1]^T`` maps the CENTRE
  of voxel ``array[k, j, i]`` to RAS millimetres. Its upper 3x3 block is ``directions_ras @ diag(si, sj, sk)``, where
  the columns of ``directions_ras`` are the unit RAS vectors of the I, J and K index axes (Slicer's
  ``IJKToRASDirections``); its last column holds the RAS position of voxel (0, 0, 0). The SimpleITK geometry of the same
  grid is ``origin = ras_to_lps(origin_ras)``, ``spacing = (si, sj, sk)`` and ``direction = diag(-1, -1, 1) @
  directions_ras`` (columns = LPS unit vectors of the x, y, z index axes).

Hand-checked example: with ``ijk_to_ras = [[-2, 0, 0, 10], [0, 3, 0, 20], [0, 0, 5, 30], [0, 0, 0, 1]]`` the voxel
``array[1, 2, 3]`` (k=1, j=2, i=3) is at RAS ``(10 - 2*3, 20 + 3*2, 30 + 5*1) = (4, 26, 35)``, i.e. LPS ``(-4, -26, 35)``;
the spacing is ``(5, 3, 2)`` in array-axis order and ``(2, 3, 5)`` in SimpleITK order.

This module needs only numpy; SimpleITK is imported when a conversion to or from ``SimpleITK.Image`` is requested.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import SimpleITK as sitk

__all__ = [
    "Volume",
    "lps_to_ras",
    "ras_to_lps",
    "coordinate_frame",
    "convert_coordinates",
    "compose_ijk_to_ras",
    "spacing_from_ijk_to_ras",
    "directions_from_ijk_to_ras",
    "validate_ijk_to_ras",
    "ijk_to_ras_from_sitk",
    "sitk_geometry_from_ijk_to_ras",
    "kji_to_ras",
    "ras_to_kji",
]

ArrayLike = Union[np.ndarray, Sequence[float], Sequence[Sequence[float]]]

#: Multiplying a point or vector by this flips between LPS and RAS (the operation is its own inverse).
_LPS_RAS_SIGNS = np.array([-1.0, -1.0, 1.0])
_LPS_RAS_4X4 = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Tolerance on the orthonormality of direction cosines (entries of D^T D - I). Headers store cosines rounded (DICOM
#: often to 5-6 decimals, NIfTI in float32), so a strict test would refuse real images; 1e-3 is about 0.06 degrees.
_DIRECTION_TOLERANCE = 1e-3


def _points(points: ArrayLike, what: str) -> np.ndarray:
    array = np.asarray(points, dtype=float)
    if array.ndim not in (1, 2) or array.shape[-1] != 3:
        raise ValueError(f"{what} must be a 3-vector or an (N, 3) array, got shape {array.shape}")
    return array


def _flip_first_two_axes(points: ArrayLike, frame: str) -> np.ndarray:
    array = np.asarray(points, dtype=float)
    if array.shape[-1:] != (3,):
        raise ValueError(f"{frame} points must have 3 coordinates in their last axis, got shape {array.shape}")
    return array * _LPS_RAS_SIGNS


def lps_to_ras(points: ArrayLike) -> np.ndarray:
    """Convert LPS coordinates (or displacement vectors) to RAS: ``(x, y, z) -> (-x, -y, z)``.

    Args:
        points: one point ``(3,)`` or ``(N, 3)`` points; any ``(..., 3)`` array of vectors is also accepted.

    Returns:
        A new float64 array of the same shape.
    """
    return _flip_first_two_axes(points, "LPS")


def ras_to_lps(points: ArrayLike) -> np.ndarray:
    """Convert RAS coordinates (or displacement vectors) to LPS: ``(x, y, z) -> (-x, -y, z)``; see :func:`lps_to_ras`."""
    return _flip_first_two_axes(points, "RAS")


def coordinate_frame(frame: str) -> str:
    """Validate a coordinate frame name and return it upper-case: ``"RAS"`` or ``"LPS"`` (case-insensitive)."""
    name = str(frame).upper()
    if name not in ("RAS", "LPS"):
        raise ValueError(f"coordinate frame must be 'RAS' or 'LPS', got {frame!r}")
    return name


def convert_coordinates(points: ArrayLike, source: str, target: str) -> np.ndarray:
    """Express points or vectors given in frame ``source`` in frame ``target`` (each ``"RAS"`` or ``"LPS"``).

    Returns a new float64 array of the same ``(..., 3)`` shape (a copy even when the frames are equal).
    """
    source_frame, target_frame = coordinate_frame(source), coordinate_frame(target)
    if source_frame != target_frame:
        return _flip_first_two_axes(points, source_frame)
    array = np.array(points, dtype=float)
    if array.shape[-1:] != (3,):
        raise ValueError(f"{source_frame} points must have 3 coordinates in their last axis, got shape {array.shape}")
    return array


def validate_ijk_to_ras(ijk_to_ras: ArrayLike) -> np.ndarray:
    """Return ``ijk_to_ras`` as a float64 4x4 array after checking it describes a voxel grid.

    A grid matrix has last row ``[0, 0, 0, 1]`` and three non-zero, mutually orthogonal axis columns (any voxel sizes,
    any rotation or axis flip; no shear, which neither Slicer nor ITK images can represent).

    Raises:
        ValueError: the matrix is not 4x4, not finite, has a projective row, a zero axis or sheared axes.
    """
    matrix = np.array(ijk_to_ras, dtype=float)
    if matrix.shape != (4, 4):
        raise ValueError(f"ijk_to_ras must be a 4x4 matrix, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("ijk_to_ras contains NaN or infinite values")
    if not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"ijk_to_ras must have [0, 0, 0, 1] as last row, got {matrix[3].tolist()}")
    spacing_ijk = np.linalg.norm(matrix[:3, :3], axis=0)
    if np.any(spacing_ijk <= 0):
        raise ValueError(f"ijk_to_ras has a zero-length axis (voxel sizes along I, J, K: {spacing_ijk.tolist()})")
    directions = matrix[:3, :3] / spacing_ijk
    if not np.allclose(directions.T @ directions, np.eye(3), atol=_DIRECTION_TOLERANCE):
        raise ValueError("ijk_to_ras has non-orthogonal (sheared) axes; image grids need orthogonal directions")
    return matrix


def compose_ijk_to_ras(spacing: Sequence[float] = (1.0, 1.0, 1.0),
                       origin_ras: Sequence[float] = (0.0, 0.0, 0.0),
                       directions_ras: Optional[ArrayLike] = None) -> np.ndarray:
    """Build the 4x4 ``ijk_to_ras`` matrix of a grid.

    ``ijk_to_ras[:3, :3] = directions_ras @ diag(si, sj, sk)`` and ``ijk_to_ras[:3, 3] = origin_ras``.

    Args:
        spacing: voxel size in mm in ARRAY-AXIS order ``(sk, sj, si)``.
        origin_ras: RAS position (mm) of the centre of voxel ``array[0, 0, 0]``.
        directions_ras: 3x3 matrix whose COLUMNS are the RAS unit vectors of the I, J, K index axes (Slicer's
            ``IJKToRASDirections``); identity when omitted. It must be orthonormal.

    Returns:
        float64 array of shape (4, 4).
    """
    spacing_kji = np.asarray(spacing, dtype=float)
    if spacing_kji.shape != (3,) or np.any(spacing_kji <= 0) or not np.all(np.isfinite(spacing_kji)):
        raise ValueError(f"spacing must be 3 positive numbers in array-axis order (sk, sj, si), got {spacing!r}")
    origin = np.asarray(origin_ras, dtype=float)
    if origin.shape != (3,):
        raise ValueError(f"origin_ras must have 3 coordinates, got {origin_ras!r}")
    directions = np.eye(3) if directions_ras is None else np.asarray(directions_ras, dtype=float)
    if directions.shape != (3, 3):
        raise ValueError(f"directions_ras must be a 3x3 matrix, got shape {directions.shape}")
    if not np.allclose(directions.T @ directions, np.eye(3), atol=_DIRECTION_TOLERANCE):
        raise ValueError("directions_ras must be orthonormal (its columns are unit vectors of the I, J, K axes)")
    matrix = np.eye(4)
    matrix[:3, :3] = directions * spacing_kji[::-1]
    matrix[:3, 3] = origin
    return matrix


def spacing_from_ijk_to_ras(ijk_to_ras: ArrayLike) -> Tuple[float, float, float]:
    """Voxel size in mm in array-axis order ``(sk, sj, si)`` (lengths of the K, J, I columns of ``ijk_to_ras``)."""
    matrix = np.asarray(ijk_to_ras, dtype=float)
    spacing_ijk = np.linalg.norm(matrix[:3, :3], axis=0)
    return (float(spacing_ijk[2]), float(spacing_ijk[1]), float(spacing_ijk[0]))


def directions_from_ijk_to_ras(ijk_to_ras: ArrayLike) -> np.ndarray:
    """3x3 matrix whose columns are the RAS unit vectors of the I, J, K index axes (Slicer's ``IJKToRASDirections``)."""
    matrix = np.asarray(ijk_to_ras, dtype=float)
    return matrix[:3, :3] / np.linalg.norm(matrix[:3, :3], axis=0)


def ijk_to_ras_from_sitk(image: "sitk.Image") -> np.ndarray:
    """The ``ijk_to_ras`` matrix of a SimpleITK image (2D images get a unit-spacing third axis along +z).

    SimpleITK maps index ``(x, y, z)`` to LPS ``origin + direction @ diag(spacing) @ index``; RAS is that with the sign
    of the first two rows flipped.

    Args:
        image: a 2D, 3D or 4D ``SimpleITK.Image`` (of a 4D image only the first three axes are used).
    """
    dimension = image.GetDimension()
    if dimension not in (2, 3, 4):
        raise ValueError(f"only 2D, 3D and 4D SimpleITK images have a 3D grid, got a {dimension}D image")
    n = min(dimension, 3)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dimension, dimension)[:n, :n]
    spacing = np.asarray(image.GetSpacing(), dtype=float)[:n]
    origin = np.asarray(image.GetOrigin(), dtype=float)[:n]
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:n, :n] = direction * spacing
    ijk_to_lps[:n, 3] = origin
    return _LPS_RAS_4X4 @ ijk_to_lps


def sitk_geometry_from_ijk_to_ras(
        ijk_to_ras: ArrayLike) -> Tuple[Tuple[float, ...], Tuple[float, ...], Tuple[float, ...]]:
    """SimpleITK ``(origin, spacing, direction)`` of a 3D grid given by its ``ijk_to_ras`` matrix.

    Returns:
        ``origin`` (LPS, mm, 3 values), ``spacing`` (x, y, z order = (si, sj, sk)) and ``direction`` (9 values,
        row-major, columns = LPS unit vectors of the x, y, z index axes), ready for ``SetOrigin``, ``SetSpacing`` and
        ``SetDirection``.
    """
    ijk_to_lps = _LPS_RAS_4X4 @ validate_ijk_to_ras(ijk_to_ras)
    spacing_xyz = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    direction = ijk_to_lps[:3, :3] / spacing_xyz
    return (tuple(float(v) for v in ijk_to_lps[:3, 3]), tuple(float(v) for v in spacing_xyz),
            tuple(float(v) for v in direction.ravel()))


def kji_to_ras(indices_kji: ArrayLike, ijk_to_ras: ArrayLike) -> np.ndarray:
    """RAS positions (mm) of array indices given in array-axis order ``(k, j, i)``.

    Args:
        indices_kji: ``(3,)`` or ``(N, 3)`` indices (fractional indices allowed; integer ones are voxel centres).
        ijk_to_ras: the grid's 4x4 matrix.

    Returns:
        float64 array of the same shape as ``indices_kji``.
    """
    indices = _points(indices_kji, "indices_kji")
    matrix = np.asarray(ijk_to_ras, dtype=float)
    ijk = indices[..., ::-1]
    return ijk @ matrix[:3, :3].T + matrix[:3, 3]


def ras_to_kji(points_ras: ArrayLike, ijk_to_ras: ArrayLike) -> np.ndarray:
    """Continuous array indices ``(k, j, i)`` of RAS points; the inverse of :func:`kji_to_ras`.

    Round with ``np.rint(...).astype(int)`` to get the voxel containing each point, and check the bounds yourself
    (points outside the grid get indices outside ``[0, size - 1]``).
    """
    points = _points(points_ras, "points_ras")
    matrix = np.asarray(ijk_to_ras, dtype=float)
    ijk = (points - matrix[:3, 3]) @ np.linalg.inv(matrix[:3, :3]).T
    return ijk[..., ::-1]


def _sitk_pixel_compatible(array: np.ndarray) -> np.ndarray:
    """Cast numpy types SimpleITK cannot store (bool, float16) to the nearest type it can (uint8, float32)."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    return array


class Volume:
    """A voxel array with its position in patient space (Slicer's conventions; see the module docstring).

    Attributes:
        array: ``(K, J, I)`` scalar or ``(K, J, I, C)`` channels-last numpy array (not copied on construction). A 2D
            ``(J, I)`` array given to the constructor becomes a single-slice ``(1, J, I)`` volume.
        ijk_to_ras: float64 4x4 matrix mapping ``[i, j, k, 1]`` (voxel centre) to RAS mm.

    Construct either from ``ijk_to_ras`` or from ``spacing`` (array-axis order), ``origin_ras`` and ``directions_ras``
    (columns = RAS unit vectors of the I, J, K axes); the default grid is 1 mm isotropic at the origin, axis-aligned
    with I = R, J = A, K = S.

    Example::

        vol = Volume(np.zeros((40, 64, 64), np.int16), spacing=(2.5, 0.8, 0.8), origin_ras=(-25.6, -25.6, 0.0))
        vol.kji_to_ras([0, 0, 0])           # array([-25.6, -25.6,   0. ])
        image = vol.to_sitk()                 # image.GetSpacing() == (0.8, 0.8, 2.5); origin in LPS
    """

    __slots__ = ("array", "ijk_to_ras")

    def __init__(self, array: Any, ijk_to_ras: Optional[ArrayLike] = None, *,
                 spacing: Optional[Sequence[float]] = None, origin_ras: Optional[Sequence[float]] = None,
                 directions_ras: Optional[ArrayLike] = None) -> None:
        data = np.asarray(array)
        if data.ndim == 2:
            data = data[np.newaxis]
        if data.ndim not in (3, 4) or 0 in data.shape:
            raise ValueError("a Volume array must be (K, J, I) scalar, (K, J, I, C) channels-last or a 2D (J, I) image "
                             f"with no empty axis, got shape {data.shape}")
        if ijk_to_ras is not None:
            if spacing is not None or origin_ras is not None or directions_ras is not None:
                raise ValueError("give either ijk_to_ras or spacing/origin_ras/directions_ras, not both")
            matrix = validate_ijk_to_ras(ijk_to_ras)
        else:
            if spacing is not None and len(spacing) == 2 and data.shape[0] == 1:
                spacing = (1.0, float(spacing[0]), float(spacing[1]))
            matrix = compose_ijk_to_ras(spacing if spacing is not None else (1.0, 1.0, 1.0),
                                        origin_ras if origin_ras is not None else (0.0, 0.0, 0.0), directions_ras)
        self.array: np.ndarray = data
        self.ijk_to_ras: np.ndarray = matrix

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_image2d(cls, image: Any, spacing: Sequence[float] = (1.0, 1.0),
                     origin_ras: Sequence[float] = (0.0, 0.0, 0.0)) -> "Volume":
        """A single-slice volume from a 2D image: ``(J, I)`` grey-level or ``(J, I, C)`` channels-last (RGB, RGBA).

        Args:
            spacing: pixel size ``(sj, si)`` in mm (row spacing, column spacing); the slice axis gets 1 mm.
        """
        data = np.asarray(image)
        if data.ndim not in (2, 3):
            raise ValueError(f"a 2D image must be (J, I) or (J, I, C), got shape {data.shape}")
        if len(spacing) != 2:
            raise ValueError(f"spacing of a 2D image is (sj, si), got {spacing!r}")
        return cls(data[np.newaxis], spacing=(1.0, float(spacing[0]), float(spacing[1])), origin_ras=origin_ras)

    @classmethod
    def from_sitk(cls, image: "sitk.Image") -> "Volume":
        """Convert a SimpleITK image (pixels copied, geometry converted from LPS to RAS).

        2D images become single-slice volumes; multi-component (vector, RGB) images channels-last volumes; a 4D scalar
        image (e.g. a multi-modal NIfTI) becomes a channels-last volume whose channels are the 4th axis (that axis'
        spacing and origin are dropped).
        """
        import SimpleITK as sitk

        dimension = image.GetDimension()
        array = sitk.GetArrayFromImage(image)
        if dimension == 2:
            array = array[np.newaxis]
        elif dimension == 4:
            if image.GetNumberOfComponentsPerPixel() != 1:
                raise ValueError("4D images with vector pixels are not supported")
            array = np.moveaxis(array, 0, -1)
        elif dimension != 3:
            raise ValueError(f"only 2D, 3D and 4D SimpleITK images can be converted, got a {dimension}D image")
        return cls(array, ijk_to_ras_from_sitk(image))

    def to_sitk(self) -> "sitk.Image":
        """A 3D SimpleITK image (a vector image when the volume has a channel axis) with this volume's geometry.

        Pixels are copied; ``bool`` becomes ``uint8`` and ``float16`` becomes ``float32`` (types SimpleITK lacks).
        """
        import SimpleITK as sitk

        array = _sitk_pixel_compatible(np.ascontiguousarray(self.array))
        image = sitk.GetImageFromArray(array, isVector=self.array.ndim == 4)
        origin, spacing, direction = sitk_geometry_from_ijk_to_ras(self.ijk_to_ras)
        image.SetOrigin(origin)
        image.SetSpacing(spacing)
        image.SetDirection(direction)
        return image

    def with_array(self, array: Any) -> "Volume":
        """A new volume on the same grid holding ``array`` (not copied); the number of channels may differ.

        Raises:
            ValueError: the spatial shape of ``array`` differs from this volume's.
        """
        data = np.asarray(array)
        if data.ndim == 2 and self.is_2d:
            data = data[np.newaxis]
        if data.ndim not in (3, 4) or data.shape[:3] != self.shape:
            raise ValueError(f"array of shape {data.shape} does not fit the grid of shape {self.shape} "
                             "(expected (K, J, I) or (K, J, I, C) with the same K, J, I)")
        return Volume(data, self.ijk_to_ras.copy())

    def crop(self, start: Sequence[int], stop: Sequence[int]) -> "Volume":
        """The sub-volume ``array[start:stop]`` (K, J, I; clipped to the volume) on its own grid: same spacing and
        directions, origin moved to voxel ``start``, so every voxel stays at its physical place. A copy.

        Raises:
            ValueError: the clipped box is empty.
        """
        first = [int(max(0, begin)) for begin in start]
        last = [int(min(size, end)) for size, end in zip(self.shape, stop)]
        if len(first) != 3 or len(last) != 3 or any(end <= begin for begin, end in zip(first, last)):
            raise ValueError(f"empty crop {list(start)}..{list(stop)} of a volume of shape {self.shape}")
        matrix = self.ijk_to_ras.copy()
        matrix[:3, 3] = (self.ijk_to_ras @ np.array([first[2], first[1], first[0], 1.0]))[:3]
        box = tuple(slice(begin, end) for begin, end in zip(first, last))
        return Volume(np.array(self.array[box]), matrix)

    def copy(self) -> "Volume":
        """A deep copy (array and matrix)."""
        return Volume(self.array.copy(), self.ijk_to_ras.copy())

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> Tuple[int, int, int]:
        """Spatial shape ``(K, J, I)`` (without the channel axis)."""
        return tuple(int(n) for n in self.array.shape[:3])  # type: ignore[return-value]

    @property
    def num_channels(self) -> int:
        """Number of components per voxel: 1 for a scalar volume, ``C`` for a ``(K, J, I, C)`` array."""
        return int(self.array.shape[3]) if self.array.ndim == 4 else 1

    @property
    def is_vector(self) -> bool:
        """True when the array has a channel axis (vector, RGB or multi-channel volume)."""
        return self.array.ndim == 4

    @property
    def is_2d(self) -> bool:
        """True for a single-slice volume (``K == 1``): how 2D images are stored."""
        return self.array.shape[0] == 1

    @property
    def image2d(self) -> np.ndarray:
        """The ``(J, I)`` or ``(J, I, C)`` view of a single-slice volume (raises ``ValueError`` when ``K > 1``)."""
        if not self.is_2d:
            raise ValueError(f"image2d needs a single-slice volume, this one has {self.array.shape[0]} slices")
        return self.array[0]

    # ------------------------------------------------------------------ geometry
    @property
    def spacing(self) -> Tuple[float, float, float]:
        """Voxel size in mm, array-axis order ``(sk, sj, si)``."""
        return spacing_from_ijk_to_ras(self.ijk_to_ras)

    @property
    def origin_ras(self) -> Tuple[float, float, float]:
        """RAS position (mm) of the centre of voxel ``array[0, 0, 0]``."""
        return tuple(float(v) for v in self.ijk_to_ras[:3, 3])  # type: ignore[return-value]

    @property
    def origin_lps(self) -> Tuple[float, float, float]:
        """LPS position (mm) of the centre of voxel ``array[0, 0, 0]`` (SimpleITK's ``GetOrigin()``)."""
        return tuple(float(v) for v in ras_to_lps(self.ijk_to_ras[:3, 3]))  # type: ignore[return-value]

    @property
    def directions_ras(self) -> np.ndarray:
        """3x3, columns = RAS unit vectors of the I, J, K axes (Slicer's ``IJKToRASDirections``)."""
        return directions_from_ijk_to_ras(self.ijk_to_ras)

    @property
    def direction_lps(self) -> np.ndarray:
        """3x3, columns = LPS unit vectors of the x, y, z (I, J, K) axes (SimpleITK's direction, as a matrix)."""
        return _LPS_RAS_4X4[:3, :3] @ self.directions_ras

    def kji_to_ras(self, indices_kji: ArrayLike) -> np.ndarray:
        """RAS positions of ``(k, j, i)`` indices; see :func:`kji_to_ras`."""
        return kji_to_ras(indices_kji, self.ijk_to_ras)

    def ras_to_kji(self, points_ras: ArrayLike) -> np.ndarray:
        """Continuous ``(k, j, i)`` indices of RAS points; see :func:`ras_to_kji`."""
        return ras_to_kji(points_ras, self.ijk_to_ras)

    def same_grid(self, other: "Volume", atol: float = 1e-6) -> bool:
        """True when ``other`` has the same spatial shape and an ``ijk_to_ras`` equal within ``atol`` (mm)."""
        return self.shape == other.shape and bool(np.allclose(self.ijk_to_ras, other.ijk_to_ras, rtol=0.0, atol=atol))

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:g}" for s in self.spacing)
        origin = ", ".join(f"{v:g}" for v in self.origin_ras)
        return (f"Volume(shape={tuple(self.array.shape)}, dtype={self.array.dtype}, spacing=({spacing}), "
                f"origin_ras=({origin}))")
