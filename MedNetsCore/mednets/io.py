"""Reading and writing medical images as :class:`~mednets.image.Volume` (SimpleITK underneath).

Supported inputs of :func:`read_volume`:

* NRRD (``.nrrd``, ``.nhdr``), NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``);
* 2D images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif``, ``.tiff``), read as single-slice volumes (``(1, J, I)``
  or ``(1, J, I, C)`` for RGB/RGBA); a multi-page TIFF is a 3D volume;
* DICOM: a folder (the largest series in it, see :func:`read_dicom_series`) or one file of a series (the whole
  series that file belongs to is read from its folder; a multi-frame file is read on its own). A file is recognised as
  DICOM by its ``.dcm``/``.dicom``/``.ima`` extension or, whatever its name, by the ``DICM`` signature at byte 128.

Geometry is always converted to Slicer's conventions (RAS, array-axis order); see :mod:`mednets.image`.

:func:`write_volume` writes NRRD, NIfTI, MHA and the 2D formats atomically: SimpleITK writes a temporary file with the
same extension in the destination folder, which is fsync'ed and renamed over the destination (a reader never sees a
half-written image, and a failed write leaves the destination untouched). Detached-header formats (``.nhdr``,
``.mhd``) write two files and cannot be replaced atomically, so they are read-only here; DICOM is not written.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from mednets.fileio import PathLike, atomic_output_path, file_extension
from mednets.image import Volume

__all__ = [
    "READ_EXTENSIONS",
    "WRITE_EXTENSIONS",
    "DICOM_EXTENSIONS",
    "file_extension",
    "read_volume",
    "write_volume",
    "read_dicom_series",
    "list_dicom_series",
    "atomic_output_path",
]

#: Extensions of image files read through SimpleITK's format detection.
VOLUME_EXTENSIONS = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
IMAGE2D_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_EXTENSIONS = (".tif", ".tiff")
DICOM_EXTENSIONS = (".dcm", ".dicom", ".ima")
READ_EXTENSIONS = VOLUME_EXTENSIONS + IMAGE2D_EXTENSIONS + TIFF_EXTENSIONS + DICOM_EXTENSIONS
WRITE_EXTENSIONS = (".nrrd", ".nii", ".nii.gz", ".mha") + IMAGE2D_EXTENSIONS + TIFF_EXTENSIONS

_DICOM_TAG_SERIES_UID = "0020|000e"
_DICOM_TAG_POSITION = "0020|0032"
_DICOM_TAG_ORIENTATION = "0020|0037"
_DICOM_TAG_INTERCEPT = "0028|1052"
_DICOM_TAG_SLOPE = "0028|1053"

#: Slice positions may deviate from a regular grid by this much (mm) plus this fraction of the slice spacing.
_SLICE_TOLERANCE_MM = 0.01
_SLICE_TOLERANCE_FRACTION = 0.01

ImageInput = Union[Volume, sitk.Image]


def _is_dicom_file(path: Path) -> bool:
    """True when the file carries the DICOM Part 10 signature ``DICM`` after its 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(132)
    except OSError:
        return False
    return len(header) == 132 and header[128:132] == b"DICM"


def _supported_list() -> str:
    return ", ".join(READ_EXTENSIONS)


def read_volume(path: PathLike) -> Volume:
    """Read an image file, a DICOM file or a DICOM folder into a :class:`Volume` (RAS geometry, array-axis order).

    Raises:
        FileNotFoundError: nothing exists at ``path``.
        ValueError: unsupported file type, a folder without DICOM series, an unreadable / corrupted file, or a DICOM
            series whose slices do not form a regular grid (see :func:`read_dicom_series`).
    """
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"cannot read image: no file or folder at '{source}'")
    if source.is_dir():
        return read_dicom_series(source)
    if source.stat().st_size == 0:
        raise ValueError(f"cannot read '{source}': the file is empty (0 bytes)")
    extension = file_extension(source)
    if extension in DICOM_EXTENSIONS or (extension not in READ_EXTENSIONS and _is_dicom_file(source)):
        return _read_dicom_file(source)
    if extension not in READ_EXTENSIONS:
        described = f"extension '{extension}'" if extension else "no extension"
        raise ValueError(f"cannot read '{source}': unsupported file type ({described}, and not a DICOM file). "
                         f"Supported: {_supported_list()}, or a DICOM folder")
    return Volume.from_sitk(_sitk_read(source))


def _sitk_read(path: Union[Path, Sequence[str]], output_pixel_type: int = sitk.sitkUnknown) -> sitk.Image:
    """``sitk.ReadImage`` with SimpleITK's RuntimeError turned into a ValueError that names the file."""
    try:
        if isinstance(path, Path):
            return sitk.ReadImage(str(path), output_pixel_type)
        return sitk.ReadImage(list(path), output_pixel_type)
    except RuntimeError as error:
        target = path if isinstance(path, Path) else f"the DICOM series starting with '{path[0]}'"
        raise ValueError(f"could not read {target}: {_first_line(error)}") from error


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # SimpleITK messages start with "Exception thrown in SimpleITK ...: <file>:<line>:" then the actual reason.
    return lines[-1] if lines else type(error).__name__


# ---------------------------------------------------------------------------------------------------------- writing
def write_volume(image: ImageInput, path: PathLike, compress: bool = True) -> Path:
    """Write a :class:`Volume` or a ``SimpleITK.Image`` to ``path`` atomically; the format follows the extension.

    Args:
        image: the image; a Volume's geometry is written in the file's own convention (LPS for NRRD/NIfTI/MHA).
        path: destination with one of :data:`WRITE_EXTENSIONS`. PNG/JPEG/BMP need a 2D (single-slice) image with a
            pixel type the format stores (PNG: uint8/uint16; JPEG/BMP: uint8); they keep no geometry.
        compress: gzip the voxels where the format allows it (NRRD, MHA; ``.nii.gz`` is always compressed).

    Returns:
        The destination path.

    Raises:
        TypeError: ``image`` is neither a Volume nor a SimpleITK image.
        ValueError: unsupported extension, a 3D image for a 2D-only format, or a pixel type the format cannot store.
    """
    if isinstance(image, Volume):
        sitk_image = image.to_sitk()
    elif isinstance(image, sitk.Image):
        sitk_image = image
    else:
        raise TypeError(f"write_volume expects a mednets Volume or a SimpleITK Image, got {type(image).__name__}")
    destination = Path(path)
    extension = file_extension(destination)
    if extension not in WRITE_EXTENSIONS:
        hint = " (detached headers are read-only here: use .nrrd or .mha)" if extension in (".nhdr", ".mhd") else ""
        raise ValueError(f"cannot write '{destination}': unsupported extension '{extension}'{hint}. "
                         f"Supported: {', '.join(WRITE_EXTENSIONS)}")
    if extension in IMAGE2D_EXTENSIONS + TIFF_EXTENSIONS and sitk_image.GetDimension() == 3:
        if sitk_image.GetSize()[2] == 1:
            sitk_image = sitk_image[:, :, 0]  # 2D writers (JPEG, BMP) refuse a 3D image, even a single slice
        elif extension in IMAGE2D_EXTENSIONS:
            raise ValueError(f"cannot write a 3D image with {sitk_image.GetSize()[2]} slices to '{destination}': "
                             f"{extension} stores one 2D image; use .nrrd, .nii.gz, .mha or .tif")
    with atomic_output_path(destination) as temporary:
        try:
            sitk.WriteImage(sitk_image, str(temporary), compress)
        except RuntimeError as error:
            raise ValueError(f"could not write {sitk_image.GetPixelIDTypeAsString()} image to '{destination}': "
                             f"{_first_line(error)}") from error
    return destination


# ---------------------------------------------------------------------------------------------------------- DICOM
def _scan_series_ids(folder: Path) -> List[str]:
    try:
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError as error:
        raise ValueError(f"could not scan DICOM folder '{folder}': {_first_line(error)}") from error


def _series_file_names(folder: Path, series_uid: str) -> List[str]:
    try:
        return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid))
    except RuntimeError as error:
        raise ValueError(f"could not list the files of DICOM series {series_uid} in '{folder}': "
                         f"{_first_line(error)}") from error


def list_dicom_series(folder: PathLike) -> Dict[str, List[str]]:
    """DICOM series in ``folder`` (not its sub-folders): series instance UID -> its files, sorted along the slice axis.

    Raises:
        FileNotFoundError / NotADirectoryError: ``folder`` is missing or is a file.
        ValueError: the folder cannot be scanned (a corrupted DICOM file stops GDCM's scanner).
    """
    directory = Path(folder)
    if not directory.exists():
        raise FileNotFoundError(f"DICOM folder '{directory}' does not exist")
    if not directory.is_dir():
        raise NotADirectoryError(f"'{directory}' is a file; give the folder of the DICOM series "
                                 "(or use read_volume to read one DICOM file)")
    return {uid: _series_file_names(directory, uid) for uid in _scan_series_ids(directory)}


def read_dicom_series(folder: PathLike, series_uid: Optional[str] = None) -> Volume:
    """Read one DICOM series of ``folder`` (sub-folders are not searched).

    Args:
        folder: the folder holding the series' files.
        series_uid: the Series Instance UID to read; by default the series with the most files (ties: the smallest UID).

    Rescale slope/intercept are applied (CT in HU). Before reading, the slice headers are checked: every slice must
    have the same orientation, and their positions must be evenly spaced along the slice normal with no in-plane shift.
    A series that breaks this (missing slices, variable spacing, several acquisitions stacked in one series, gantry tilt,
    a localizer with several planes) would otherwise be read with a wrong geometry, so it is refused.

    Raises:
        ValueError: the folder has no DICOM series, ``series_uid`` is not in it, or its slices are not a regular grid.
    """
    series = list_dicom_series(folder)
    if not series:
        raise ValueError(f"no DICOM series found in folder '{folder}' (sub-folders are not searched)")
    if series_uid is None:
        series_uid = min(series, key=lambda uid: (-len(series[uid]), uid))
    elif series_uid not in series:
        raise ValueError(f"DICOM series {series_uid!r} is not in folder '{folder}'; available: {sorted(series)}")
    return _read_series_files(series[series_uid])


def _read_dicom_file(path: Path) -> Volume:
    """Read the series ``path`` belongs to (from its folder), or the file alone when it is the only one."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise ValueError(f"could not read DICOM file '{path}': {_first_line(error)}") from error
    uid = reader.GetMetaData(_DICOM_TAG_SERIES_UID).strip(" \x00") if reader.HasMetaDataKey(
        _DICOM_TAG_SERIES_UID) else ""
    files = [str(path)]
    if uid:
        try:
            files = _series_file_names(path.parent, uid)
        except ValueError as error:
            warnings.warn(f"{error}; reading '{path.name}' on its own", RuntimeWarning, stacklevel=3)
        if not any(os.path.samefile(name, path) for name in files):
            files = [str(path)]
    return _read_series_files(files)


def _read_series_files(files: Sequence[str]) -> Volume:
    """Read DICOM slices (already sorted by GDCM along the slice normal) after checking they form a regular grid."""
    if len(files) == 1:
        return Volume.from_sitk(_sitk_read(Path(files[0])))
    headers = [_slice_header(name) for name in files]
    _check_regular_slices(files, headers)
    rescales = {(header["slope"], header["intercept"]) for header in headers}
    # ITK picks the pixel type from the first slice; slices with other rescale factors would be cast to it.
    pixel_type = sitk.sitkFloat32 if len(rescales) > 1 else sitk.sitkUnknown
    return Volume.from_sitk(_sitk_read(list(files), pixel_type))


def _slice_header(file_name: str) -> Dict[str, object]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(file_name)
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise ValueError(f"could not read DICOM header of '{file_name}': {_first_line(error)}") from error

    def numbers(tag: str) -> Optional[Tuple[float, ...]]:
        if not reader.HasMetaDataKey(tag):
            return None
        text = reader.GetMetaData(tag).strip(" \x00")
        try:
            return tuple(float(part) for part in text.split("\\") if part.strip())
        except ValueError:
            return None

    slope, intercept = numbers(_DICOM_TAG_SLOPE), numbers(_DICOM_TAG_INTERCEPT)
    return {"position": numbers(_DICOM_TAG_POSITION), "orientation": numbers(_DICOM_TAG_ORIENTATION),
            "slope": slope[0] if slope else 1.0, "intercept": intercept[0] if intercept else 0.0}


def _check_regular_slices(files: Sequence[str], headers: Sequence[Dict[str, object]]) -> None:
    folder = os.path.dirname(files[0])
    positions = [header["position"] for header in headers]
    orientations = [header["orientation"] for header in headers]
    if any(p is None or len(p) != 3 for p in positions) or any(o is None or len(o) != 6 for o in orientations):
        warnings.warn(f"DICOM series in '{folder}' lacks Image Position/Orientation (Patient) on some slices; "
                      "its slice spacing and position cannot be checked", RuntimeWarning, stacklevel=4)
        return
    position = np.asarray(positions, dtype=float)
    orientation = np.asarray(orientations, dtype=float)
    if not np.allclose(orientation, orientation[0], atol=1e-4):
        raise ValueError(f"the DICOM series in '{folder}' mixes slice orientations (e.g. a localizer with several "
                         "planes); it cannot be read as one volume")
    row, column = orientation[0, :3], orientation[0, 3:]
    normal = np.cross(row, column)
    along = position @ normal
    gaps = np.diff(along)
    spacing = float(np.median(gaps))
    tolerance = _SLICE_TOLERANCE_MM + _SLICE_TOLERANCE_FRACTION * abs(spacing)
    if np.any(np.abs(gaps) <= _SLICE_TOLERANCE_MM):
        raise ValueError(f"the DICOM series in '{folder}' has several slices at the same position (several "
                         "acquisitions, echoes or time points in one series); it cannot be read as one volume")
    if np.max(np.abs(gaps - spacing)) > tolerance:
        raise ValueError(f"the DICOM series in '{folder}' has irregular slice spacing (from {gaps.min():.4g} to "
                         f"{gaps.max():.4g} mm: missing slices or variable spacing); it cannot be read as a "
                         "regular volume")
    in_plane = (position - position[0]) @ np.stack([row, column], axis=1)
    if np.max(np.abs(in_plane)) > tolerance:
        raise ValueError(f"the DICOM series in '{folder}' has slices shifted within their plane (gantry tilt or "
                         "sheared acquisition); it cannot be read as a regular volume")
