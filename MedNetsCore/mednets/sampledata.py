"""Bundled sample data, offered in 3D Slicer's Sample Data module so a user can try a module in one click.

Each module ships its sample files (a phantom image and, where the module can evaluate, a reference segmentation)
under ``<Module>/Resources/SampleData/``. :func:`register_sample_data` hands them to Slicer's Sample Data module as
local ``file://`` sources with SHA-256 checksums, so Slicer copies them into its cache, verifies them and loads them
like any other sample; nothing is downloaded from the network.

This file does not import ``slicer``: the module passes Slicer's ``SampleData.SampleDataLogic`` in (Slicer's
``registerCustomSampleDataSource`` API: category, sampleName, uris, fileNames, nodeNames, thumbnailFileName,
loadFileType, checksums "SHA256:<hex>" -- fact from Slicer's Modules/Scripted/SampleData/SampleData.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from mednets.fileio import sha256_file

__all__ = ["SAMPLE_DATA_CATEGORY", "SampleFile", "SampleDataSet", "sample_data_arguments", "register_sample_data",
           "register_with_slicer"]

#: The Sample Data section every SlicerMedNets module adds its samples to.
SAMPLE_DATA_CATEGORY = "SlicerMedNets"

#: File types Slicer's IO manager understands for the files we bundle.
_LOAD_FILE_TYPES = {".seg.nrrd": "SegmentationFile", ".mrk.json": "MarkupsFile", ".nrrd": "VolumeFile",
                    ".nii.gz": "VolumeFile", ".nii": "VolumeFile", ".png": "VolumeFile", ".tif": "VolumeFile"}


def _load_file_type(path: Path) -> str:
    name = path.name.lower()
    for suffix, file_type in _LOAD_FILE_TYPES.items():  # longest suffixes first (".seg.nrrd" before ".nrrd")
        if name.endswith(suffix):
            return file_type
    raise ValueError(f"no Slicer file type known for sample file '{path.name}'")


@dataclass(frozen=True)
class SampleFile:
    """One bundled file and the node it becomes in the scene."""

    path: Path
    node_name: str

    @property
    def load_file_type(self) -> str:
        return _load_file_type(Path(self.path))


@dataclass(frozen=True)
class SampleDataSet:
    """One entry of the Sample Data module: a name, its files (loaded together) and a thumbnail."""

    sample_name: str
    files: Sequence[SampleFile]
    thumbnail: Optional[Path] = None
    category: str = SAMPLE_DATA_CATEGORY
    #: Reader properties for ALL files of the entry (Slicer's ``loadFileProperties``), e.g. ``{"labelmap": True}`` to
    #: load a ``.nrrd`` as a label map volume; files that need different properties go into separate entries.
    load_file_properties: Optional[Mapping[str, Any]] = None


def sample_data_arguments(sample: SampleDataSet) -> Dict[str, Any]:
    """The keyword arguments of ``SampleDataLogic.registerCustomSampleDataSource`` for a bundled sample.

    Every file must exist; its URI is a ``file://`` URI and its checksum the SHA-256 of its bytes, so Slicer's
    download-and-verify path accepts it offline and refuses a modified file.
    """
    if not sample.files:
        raise ValueError(f"sample '{sample.sample_name}' has no files")
    uris: List[str] = []
    checksums: List[str] = []
    for entry in sample.files:
        path = Path(entry.path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"the sample file '{path}' of sample '{sample.sample_name}' is missing")
        uris.append(path.as_uri())
        checksums.append(f"SHA256:{sha256_file(path)}")
    arguments = {
        "category": sample.category,
        "sampleName": sample.sample_name,
        "uris": uris,
        "fileNames": [Path(entry.path).name for entry in sample.files],
        "nodeNames": [entry.node_name for entry in sample.files],
        "thumbnailFileName": None if sample.thumbnail is None else str(Path(sample.thumbnail).resolve()),
        "loadFileType": [entry.load_file_type for entry in sample.files],
        "checksums": checksums,
    }
    if sample.load_file_properties:  # only when given: Slicer's default is an empty dict
        arguments["loadFileProperties"] = dict(sample.load_file_properties)
    return arguments


def register_sample_data(sample_data_logic: Any, samples: Iterable[SampleDataSet]) -> List[Dict[str, Any]]:
    """Register bundled samples with Slicer's Sample Data module; returns the arguments used for each.

    Args:
        sample_data_logic: Slicer's ``SampleData.SampleDataLogic`` class (or anything with a static
            ``registerCustomSampleDataSource(**arguments)``).
        samples: the module's samples.
    """
    registered = []
    for sample in samples:
        arguments = sample_data_arguments(sample)
        sample_data_logic.registerCustomSampleDataSource(**arguments)
        registered.append(arguments)
    return registered


def register_with_slicer(samples: Iterable[SampleDataSet]) -> List[Dict[str, Any]]:
    """What a module's ``registerSampleData`` (connected to ``slicer.app.startupCompleted``) does: hand ``samples``
    to Slicer's Sample Data module. Without that module (Slicer started with a module subset) nothing happens."""
    try:
        import SampleData
    except ImportError:
        return []
    return register_sample_data(SampleData.SampleDataLogic, samples)
