"""Training cases and the data sets that hold them.

A :class:`Case` is one training example: a multi-channel image ``(C, *spatial)`` with its integer label map
``(*spatial)``, the voxel spacing in ARRAY-AXIS order (for Slicer volumes: K, J, I = z, y, x) and optional extras (a
per-voxel loss weight map, anything else a module needs). 2D cases have two spatial axes, 3D cases three.

Data sets are plain sequences of cases: :class:`InMemoryCases` wraps a list (cases built from arrays or from scene
nodes), :class:`FolderCases` pairs image and label files found in a folder by their case name and reads them lazily.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from mednets.fileio import PathLike

__all__ = ["Case", "InMemoryCases", "FolderCases", "check_compatible_cases"]

Spacing = Tuple[float, ...]


def _label_array(label: Any, name: str) -> np.ndarray:
    label = np.asarray(label)
    if label.dtype == bool:
        return label.astype(np.uint8)
    if np.issubdtype(label.dtype, np.integer):
        return label
    if np.issubdtype(label.dtype, np.floating):
        if not np.all(np.isfinite(label)) or not np.array_equal(label, np.round(label)):
            raise ValueError(f"case '{name}': the label map must hold whole numbers, got non-integer values")
        low, high = (float(label.min()), float(label.max())) if label.size else (0.0, 0.0)
        for dtype in (np.uint8, np.int16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                return label.astype(dtype)
        return label.astype(np.int64)
    raise TypeError(f"case '{name}': the label map must be an integer array, got dtype {label.dtype}")


@dataclass
class Case:
    """One training or validation example.

    Attributes:
        name: identifier used in messages and file names.
        image: float32 array ``(C, *spatial)`` with 2 or 3 spatial axes (converted to float32 on construction).
        label: integer label map ``(*spatial)`` (0 = background) or ``None`` for unlabelled cases.
        spacing: voxel size in mm per spatial axis, ARRAY-AXIS order (same order as ``image.shape[1:]``).
        weight: optional per-voxel loss weight map ``(*spatial)`` (float32), e.g. U-Net border weights.
        extra: anything else the module needs (landmarks, metadata, the source node ID, ...).
    """

    name: str
    image: np.ndarray
    label: Optional[np.ndarray] = None
    spacing: Optional[Spacing] = None
    weight: Optional[np.ndarray] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image, dtype=np.float32)
        if self.image.ndim not in (3, 4):
            raise ValueError(f"case '{self.name}': image must have shape (C, *spatial) with 2 or 3 spatial axes, "
                             f"got shape {self.image.shape}; use Case.from_volume for a single-channel volume")
        spatial = self.image.shape[1:]
        if self.label is not None:
            self.label = _label_array(self.label, self.name)
            if self.label.shape != spatial:
                raise ValueError(f"case '{self.name}': label shape {self.label.shape} differs from the image's "
                                 f"spatial shape {spatial}")
        if self.weight is not None:
            self.weight = np.asarray(self.weight, dtype=np.float32)
            if self.weight.shape != spatial:
                raise ValueError(f"case '{self.name}': weight map shape {self.weight.shape} differs from the "
                                 f"image's spatial shape {spatial}")
        if self.spacing is None:
            self.spacing = (1.0,) * len(spatial)
        self.spacing = tuple(float(s) for s in self.spacing)
        if len(self.spacing) != len(spatial) or not all(s > 0 for s in self.spacing):
            raise ValueError(f"case '{self.name}': spacing must be {len(spatial)} positive numbers (array-axis order), "
                             f"got {self.spacing}")

    @classmethod
    def from_volume(cls, name: str, image: Any, label: Any = None, spacing: Optional[Sequence[float]] = None,
                    weight: Any = None, extra: Optional[Dict[str, Any]] = None) -> "Case":
        """Build a case from a single-channel volume ``(*spatial)`` (a channel axis is added) or ``(C, *spatial)``.

        The image is taken as single-channel when it has as many axes as ``spacing`` (or as ``label``); otherwise its
        first axis is the channel axis.
        """
        image = np.asarray(image)
        spatial_ndim = len(spacing) if spacing is not None else (np.ndim(label) if label is not None else None)
        if spatial_ndim is None:
            spatial_ndim = image.ndim
        if image.ndim == spatial_ndim:
            image = image[np.newaxis]
        return cls(name=name, image=image, label=label, spacing=None if spacing is None else tuple(spacing),
                   weight=weight, extra=dict(extra or {}))

    @property
    def num_channels(self) -> int:
        return int(self.image.shape[0])

    @property
    def spatial_shape(self) -> Tuple[int, ...]:
        return tuple(int(s) for s in self.image.shape[1:])

    @property
    def spatial_ndim(self) -> int:
        return self.image.ndim - 1


def check_compatible_cases(cases: Sequence[Case], require_labels: bool = False) -> None:
    """Raise ``ValueError`` unless all cases have the same number of channels and spatial axes (and labels)."""
    if len(cases) == 0:
        raise ValueError("no cases given: at least one case is needed")
    first = cases[0]
    for case in cases:
        if not isinstance(case, Case):
            raise TypeError(f"expected mednets.training.Case objects, got {type(case).__name__}")
        if case.num_channels != first.num_channels or case.spatial_ndim != first.spatial_ndim:
            raise ValueError(f"case '{case.name}' has {case.num_channels} channel(s) and {case.spatial_ndim} spatial "
                             f"axes but case '{first.name}' has {first.num_channels} and {first.spatial_ndim}")
        if require_labels and case.label is None:
            raise ValueError(f"case '{case.name}' has no label map; training cases need one")


class InMemoryCases(Sequence[Case]):
    """A list of :class:`Case` objects checked for consistency (same channels and dimensionality)."""

    def __init__(self, cases: Sequence[Case]) -> None:
        self._cases: List[Case] = list(cases)
        check_compatible_cases(self._cases)

    def __len__(self) -> int:
        return len(self._cases)

    def __getitem__(self, index):  # type: ignore[override]
        return self._cases[index]

    @property
    def names(self) -> List[str]:
        return [case.name for case in self._cases]


def _default_reader(path: Path) -> Any:
    from mednets.io import read_volume  # lazy: mednets.io pulls in SimpleITK

    return read_volume(path)


def _split_pattern(pattern: str) -> Tuple[str, str]:
    if pattern.count("*") != 1 or any(c in pattern for c in "?["):
        raise ValueError(f"file pattern {pattern!r} must contain exactly one '*' (standing for the case name) and no "
                         "other wildcards")
    prefix, suffix = pattern.split("*")
    return prefix, suffix


def _find_by_name(folder: Path, pattern: str) -> Dict[str, Path]:
    """Files matching ``pattern`` (relative to ``folder``, one ``*``) keyed by what the ``*`` matched."""
    prefix, suffix = _split_pattern(pattern)
    found: Dict[str, Path] = {}
    for path in sorted(folder.glob(pattern)):
        relative = path.relative_to(folder).as_posix()
        if not path.is_file() or not fnmatch.fnmatchcase(relative, pattern):
            continue
        name = relative[len(prefix):len(relative) - len(suffix)]
        if name and "/" not in name:
            found[name] = path
    return found


class FolderCases(Sequence[Case]):
    """Cases read from image/label files in a folder, paired by case name.

    Each pattern is relative to ``folder`` and contains exactly one ``*`` that stands for the case name, e.g.
    ``image_pattern="imagesTr/*_0000.nii.gz", label_pattern="labelsTr/*.nii.gz"`` (nnU-Net layout) or
    ``image_pattern="*_image.nrrd", label_pattern="*_label.nrrd"``. Several image patterns give several channels
    (one file per channel, same grid); a multi-component file (array ``(*spatial, C)``, channels last) gives C channels.
    Files are read on first access with ``reader(path)``, which returns an object with ``.array`` (array-axis order)
    and ``.spacing`` (same order); the default is ``mednets.io.read_volume``.

    Args:
        folder: the root folder.
        image_pattern: one pattern, or one per channel.
        label_pattern: pattern of the label maps, or ``None`` for unlabelled cases.
        reader: file reader (default ``mednets.io.read_volume``).
        require_labels: when ``label_pattern`` is given, an image without a label is an error (otherwise the case is
            unlabelled).
        cache: keep cases in memory once read (training samples the same cases many times).
    """

    def __init__(self, folder: PathLike, image_pattern: Union[str, Sequence[str]],
                 label_pattern: Optional[str] = None, reader: Optional[Callable[[Path], Any]] = None,
                 require_labels: bool = True, cache: bool = True) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"case folder '{self.folder}' does not exist")
        patterns = [image_pattern] if isinstance(image_pattern, str) else list(image_pattern)
        if not patterns:
            raise ValueError("at least one image pattern is needed")
        channel_files = [_find_by_name(self.folder, pattern) for pattern in patterns]
        names = sorted(set(channel_files[0]))
        if not names:
            raise ValueError(f"no image matches {patterns[0]!r} in '{self.folder}'")
        for pattern, files in zip(patterns[1:], channel_files[1:]):
            missing = [n for n in names if n not in files]
            if missing:
                raise ValueError(f"case(s) {missing[:5]} have no channel file matching {pattern!r}")
        labels = _find_by_name(self.folder, label_pattern) if label_pattern is not None else {}
        if label_pattern is not None and require_labels:
            unlabelled = [n for n in names if n not in labels]
            if unlabelled:
                raise ValueError(f"{len(unlabelled)} image(s) have no label file matching {label_pattern!r}: "
                                 f"{unlabelled[:5]}")
        self.names: List[str] = names
        self.image_files: List[List[Path]] = [[files[n] for files in channel_files] for n in names]
        self.label_files: List[Optional[Path]] = [labels.get(n) for n in names]
        self._reader = reader or _default_reader
        self._cache: Optional[Dict[int, Case]] = {} if cache else None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"case index {index} out of range for {len(self)} cases")
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        case = self._read(index)
        if self._cache is not None:
            self._cache[index] = case
        return case

    def _read(self, index: int) -> Case:
        name = self.names[index]
        volumes = [self._reader(path) for path in self.image_files[index]]
        spacing = tuple(float(s) for s in volumes[0].spacing)
        channels = []
        for path, volume in zip(self.image_files[index], volumes):
            array = np.asarray(volume.array)
            # A file holds one channel (*spatial) or several, channels-last (*spatial, C) as mednets.io returns them.
            array = array[np.newaxis] if array.ndim == len(spacing) else np.moveaxis(array, -1, 0)
            if channels and array.shape[1:] != channels[0].shape[1:]:
                raise ValueError(f"case '{name}': file '{path.name}' has spatial shape {array.shape[1:]}, the first "
                                 f"image file has {channels[0].shape[1:]}")
            channels.append(array)
        label = None
        label_path = self.label_files[index]
        if label_path is not None:
            label = np.asarray(self._reader(label_path).array)
        image = np.concatenate(channels).astype(np.float32, copy=False)
        return Case(name=name, image=image, label=label, spacing=spacing,
                    extra={"image_files": [str(p) for p in self.image_files[index]],
                           "label_file": str(label_path) if label_path is not None else None})


#: File layout of a training folder written by :func:`write_training_case` (what the modules' "add current case to
#: the training set" produces and what their Train panels read by default).
TRAINING_IMAGE_PATTERN = "*_image.nrrd"
TRAINING_LABEL_PATTERN = "*_label.nrrd"


def _safe_case_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-." else "_" for c in str(name).strip())
    return cleaned.strip("._") or "case"


def write_training_case(folder: PathLike, name: str, image: Any, labels: np.ndarray,
                        overwrite: bool = False) -> Tuple[Path, Path]:
    """Add one labelled case to a training folder: ``<name>_image.nrrd`` and ``<name>_label.nrrd`` (atomic writes).

    Args:
        folder: the training folder (created if missing).
        name: case name; characters other than letters, digits, ``-`` and ``.`` become ``_``.
        image: a :class:`mednets.image.Volume` (its geometry is written with the label map too).
        labels: integer label map on the image's grid, array-axis order.
        overwrite: replace an existing case of that name; otherwise a numbered name is chosen (``name_2``, ...),
            so nothing the user added before is lost.

    Returns:
        The two paths written. :class:`FolderCases` with :data:`TRAINING_IMAGE_PATTERN` and
        :data:`TRAINING_LABEL_PATTERN` reads them back.
    """
    from mednets.io import write_volume  # lazy: SimpleITK

    labels = np.asarray(labels)
    if labels.shape != image.array.shape[:3]:
        raise ValueError(f"label map shape {labels.shape} differs from the image grid {image.array.shape[:3]}")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"the label map must be integer, got dtype {labels.dtype}")
    folder = Path(folder)
    base = _safe_case_name(name)
    candidate, number = base, 1
    while not overwrite and ((folder / f"{candidate}_image.nrrd").exists()
                             or (folder / f"{candidate}_label.nrrd").exists()):
        number += 1
        candidate = f"{base}_{number}"
    label_volume = image.with_array(labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.int32))
    image_path = write_volume(image, folder / f"{candidate}_image.nrrd")
    label_path = write_volume(label_volume, folder / f"{candidate}_label.nrrd")
    return image_path, label_path


def training_folder_cases(folder: PathLike) -> "FolderCases":
    """The cases of a training folder in the layout of :func:`write_training_case`."""
    return FolderCases(folder, TRAINING_IMAGE_PATTERN, TRAINING_LABEL_PATTERN)
