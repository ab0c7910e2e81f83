"""Extension Manager readiness: the ExtensionsIndex entry, the top-level CMake meta-information and every module's
Module-class metadata (what the Extension Manager and the module's Help & Acknowledgement panel show).

The index entry format is Slicer's catalog-entry schema v1.0.2 (facts from Slicer/Slicer
``Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json``: required ``$schema``, ``category``, ``scm_url``; no
other keys than those listed in ``ENTRY_KEYS``; ``scm_type`` git/local; ``tier`` 1-5). The schema is checked by hand
here (no jsonschema dependency); icon and screenshot URLs are CMake meta-information in that format.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "Utilities" / "ExtensionsIndex" / "SlicerMedNets.json"
RAW_PREFIX = "https://raw.githubusercontent.com/SlicerMedNets/SlicerMedNets/main/"
ENTRY_KEYS = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
              "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str, "enabled": bool,
              "tier": int}
#: Module file -> (title, first author's surname and a word of the paper title that the acknowledgement must name).
MODULES = {
    "OrganCombo": ("Organ Combo", "Taghanaki", "Combo loss"),
    "AxillaryLNDetect": ("Axillary LN Detect", "Altun", "two-stage U-Net"),
    "AneurysmSeg": ("Aneurysm Seg", "Bo", "intracranial aneurysm"),
    "AdaptiveRecontour": ("Adaptive Recontour", "Elmahdy", "Multi-Task Learning"),
    "NucleiMaskylo": ("Nuclei Maskylo", "Bukhari", "MASKYLO"),
}


def _cmake_variable(name: str) -> str:
    text = (ROOT / "CMakeLists.txt").read_text()
    match = re.search(rf'set\({name}\s+("([^"]*)"|(\S+))\)', text)
    assert match, f"CMakeLists.txt does not set {name}"
    return match.group(2) if match.group(2) is not None else match.group(3)


def _png_size(path: Path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    return struct.unpack(">II", header[16:24])


def test_index_entry_follows_the_catalog_schema():
    entry = json.loads(ENTRY.read_text())
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert set(entry) <= set(ENTRY_KEYS), f"keys the schema does not allow: {set(entry) - set(ENTRY_KEYS)}"
    for key, value in entry.items():
        assert isinstance(value, ENTRY_KEYS[key]), f"{key} must be a {ENTRY_KEYS[key].__name__}"
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert entry.get("scm_type", "git") in {"git", "local"}
    assert 1 <= entry.get("tier", 1) <= 5
    assert all(isinstance(name, str) for name in entry["build_dependencies"])


def test_index_entry_agrees_with_the_cmake_meta_information():
    entry = json.loads(ENTRY.read_text())
    assert entry["category"] == _cmake_variable("EXTENSION_CATEGORY")
    assert entry["build_dependencies"] == _cmake_variable("EXTENSION_DEPENDS").split(";") == ["PyTorch"]
    assert _cmake_variable("EXTENSION_HOMEPAGE").startswith(entry["scm_url"])
    assert entry["build_subdirectory"] == "."


def test_icon_and_screenshot_urls_point_at_files_in_this_repository():
    icon = _cmake_variable("EXTENSION_ICONURL")
    assert icon.startswith(RAW_PREFIX)
    assert _png_size(ROOT / icon[len(RAW_PREFIX):]) == (128, 128)  # the Extension Manager's icon size
    screenshots = _cmake_variable("EXTENSION_SCREENSHOTURLS").split()
    assert screenshots
    for url in screenshots:
        assert url.startswith(RAW_PREFIX)
        width, height = _png_size(ROOT / url[len(RAW_PREFIX):])
        assert width >= 400 and height >= 200, f"{url} is too small to be a screenshot"
    description = _cmake_variable("EXTENSION_DESCRIPTION")
    assert "not for clinical use" in description.lower()
    for name in ("GLIA-Net", "JRS-MTL", "Combo loss", "MASKYLO", "lymph-node"):
        assert name in description


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_metadata_is_filled(module, slicer_runtime, mrml_scene):
    import slicer

    title, author, paper_words = MODULES[module]
    slicer_runtime.load_module(ROOT / module / f"{module}.py")
    metadata = slicer.util.getModule(module)
    assert metadata.title == title
    assert "SlicerMedNets" in metadata.categories and len(metadata.categories) >= 2
    assert metadata.contributors and all(name.strip() for name in metadata.contributors)
    assert "not for clinical use" in metadata.helpText.lower()
    assert len(metadata.helpText) > 200  # says what the module does, its inputs and outputs
    acknowledgement = metadata.acknowledgementText
    assert author in acknowledgement and paper_words.lower() in acknowledgement.lower()
    assert "Apache-2.0" in acknowledgement
    assert not metadata.icon.isNull()
