"""A stand-in for Slicer's Sample Data module in tests: record what a module registers at start-up, then fetch the
registered sources as Slicer's SampleData does (copy the ``file://`` URI, verify the ``SHA256:`` checksum).

Usage in a test (``monkeypatch`` is pytest's fixture)::

    registered = capture_sample_registrations(monkeypatch)
    slicer_runtime.load_module(MODULE_FILE)
    slicer.app.startupCompleted.emit()
    arguments = registration(registered, "OrganComboPETPhantom")
    files = fetch_registered_files(arguments, tmp_path, max_bytes=1_000_000)
"""

from __future__ import annotations

import hashlib
import sys
import types
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

__all__ = ["capture_sample_registrations", "registration", "fetch_registered_files"]


def capture_sample_registrations(monkeypatch: Any) -> List[Dict[str, Any]]:
    """Install a ``SampleData`` module whose ``SampleDataLogic.registerCustomSampleDataSource`` records its keyword
    arguments; returns the list they are appended to."""
    registered: List[Dict[str, Any]] = []

    class SampleDataLogic:
        @staticmethod
        def registerCustomSampleDataSource(**arguments: Any) -> None:
            registered.append(arguments)

    monkeypatch.setitem(sys.modules, "SampleData", types.SimpleNamespace(SampleDataLogic=SampleDataLogic))
    return registered


def registration(registered: List[Dict[str, Any]], sample_name: str, category: str = "SlicerMedNets"
                 ) -> Dict[str, Any]:
    """The last registration of ``sample_name``, checked for the category and an existing thumbnail."""
    ours = [arguments for arguments in registered if arguments["sampleName"] == sample_name]
    assert ours, f"'{sample_name}' was not registered: {[a['sampleName'] for a in registered]}"
    arguments = ours[-1]
    assert arguments["category"] == category
    assert arguments["thumbnailFileName"] and Path(arguments["thumbnailFileName"]).is_file()
    return arguments


def fetch_registered_files(arguments: Dict[str, Any], folder: Path, max_bytes: Optional[int] = None) -> List[Path]:
    """Copy every registered source into ``folder`` as Slicer's SampleData does, asserting a ``file://`` URI (no
    network), the size limit and the SHA-256 checksum; returns the copies in registration order."""
    copies = []
    for uri, file_name, checksum in zip(arguments["uris"], arguments["fileNames"], arguments["checksums"]):
        assert uri.startswith("file://"), uri
        if max_bytes is not None:
            assert Path(uri[len("file://"):]).stat().st_size < max_bytes, f"{file_name} is too large to bundle"
        copy = Path(folder) / file_name
        urllib.request.urlretrieve(uri, copy)
        assert checksum == "SHA256:" + hashlib.sha256(copy.read_bytes()).hexdigest(), file_name
        copies.append(copy)
    return copies
