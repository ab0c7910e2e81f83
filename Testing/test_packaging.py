"""The extension packages everything it ships: CMake lists every script/resource, and the top level adds every module."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("AxillaryLNDetect", "AneurysmSeg", "AdaptiveRecontour", "OrganCombo", "NucleiMaskylo", "SegmentEditorMedNets")
#: Slicer-side files that live in a ``<Module>Lib`` folder by Slicer's convention (a Segment Editor effect's source).
SLICER_SIDE_LIB_FILES = {"SegmentEditorEffect.py"}
SHIPPED_SUFFIXES = {".py", ".ui", ".png", ".json", ".safetensors", ".txt", ".csv", ".nrrd", ".svg"}
EXCLUDED_PARTS = {"Testing", "__pycache__"}
EXCLUDED_SUFFIXES = (".egg-info",)  # pip install -e . writes MedNetsCore/slicermednets.egg-info: not shipped


def _cmake_text(folder: Path) -> str:
    text = (folder / "CMakeLists.txt").read_text()
    return re.sub(r"#[^\n]*", "", text)  # comments do not ship anything


def _shipped_files(folder: Path):
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.endswith(EXCLUDED_SUFFIXES) for part in relative.parts):
            continue
        if path.is_file() and path.suffix in SHIPPED_SUFFIXES and not EXCLUDED_PARTS & set(relative.parts):
            if relative.name != "CMakeLists.txt":
                yield relative


def _scripted_module_folders():
    folders = [ROOT / m for m in MODULES if (ROOT / m / "CMakeLists.txt").exists()]
    folders.append(ROOT / "MedNetsCore")  # the hidden module that puts mednets on sys.path (fault 2, issue 15)
    folders.append(ROOT / "Testing" / "HarnessThreshold")
    return [f for f in folders if (f / "CMakeLists.txt").exists()]


def test_top_level_cmake_is_a_slicer_extension():
    text = _cmake_text(ROOT)
    assert "project(SlicerMedNets)" in text
    for variable in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf"set\(EXTENSION_{variable}\s+\S", text), variable
    assert re.search(r"set\(EXTENSION_DEPENDS[^)]*PyTorch", text)
    assert "find_package(Slicer REQUIRED)" in text
    assert "add_subdirectory(MedNetsCore)" in text
    assert "include(${Slicer_EXTENSION_GENERATE_CONFIG})" in text
    assert "include(${Slicer_EXTENSION_CPACK})" in text
    assert (ROOT / "LICENSE").read_text().startswith(" " * 33 + "Apache License")


def test_every_module_folder_is_added():
    text = _cmake_text(ROOT)
    for module in MODULES:
        if (ROOT / module / "CMakeLists.txt").exists():
            assert f"add_subdirectory({module})" in text, f"{module} exists but the top-level CMakeLists.txt omits it"


@pytest.mark.parametrize("folder", _scripted_module_folders(), ids=lambda f: f.name)
def test_scripted_module_lists_every_shipped_file(folder: Path):
    text = _cmake_text(folder)
    assert "slicerMacroBuildScriptedModule(" in text
    assert re.search(r"slicer_add_python_unittest\(\s*SCRIPT\s+\$\{MODULE_NAME\}\.py", text)
    missing = [str(f) for f in _shipped_files(folder) if f.as_posix() not in text]
    assert not missing, f"{folder.name}/CMakeLists.txt does not list {missing}: they would not ship"
    hidden = "self.parent.hidden = True" in (folder / f"{folder.name}.py").read_text()  # no panel, no .ui
    expected = [f"{folder.name}.py", f"Resources/Icons/{folder.name}.png"] + ([] if hidden else
                                                                               [f"Resources/UI/{folder.name}.ui"])
    for module_file in expected:
        assert (folder / module_file).exists(), module_file


def test_mednets_core_lists_every_python_file_and_nothing_else():
    core = ROOT / "MedNetsCore"
    text = _cmake_text(core)
    listed = set(re.findall(r"(mednets/[\w/]+\.py)", text))
    present = {p.relative_to(core).as_posix() for p in (core / "mednets").rglob("*.py")}
    assert present - listed == set(), f"not listed in MedNetsCore/CMakeLists.txt: {sorted(present - listed)}"
    assert listed - present == set(), f"listed but missing: {sorted(listed - present)}"
    assert "slicerMacroBuildScriptedModule(" in text and "${MEDNETS_PYTHON_SCRIPTS}" in text
    assert (core / "MedNetsCore.py").is_file()  # the module file that makes Slicer put MedNetsCore/ on sys.path


def test_every_module_folder_of_the_checkout_is_built():
    """Every ``<Folder>/<Folder>.py`` Slicer would discover in the checkout is added by the top-level CMake."""
    text = _cmake_text(ROOT)
    folders = sorted(p.parent.name for p in ROOT.glob("*/*.py") if p.stem == p.parent.name)
    assert "MedNetsCore" in folders
    assert [f for f in folders if f"add_subdirectory({f})" not in text] == []
    assert text.index("add_subdirectory(MedNetsCore)") < min(text.index(f"add_subdirectory({m})") for m in MODULES)


#: The only mednets files that may import Slicer/Qt: the MRML bridge and the widgets' panel pieces. Everything else
#: runs without Slicer (CLI, batch, training on a server).
SLICER_SIDE_FILES = {"mrml.py", "widgets.py"}


def test_mednets_never_imports_slicer_or_qt_outside_the_bridge():
    offenders = []
    pattern = re.compile(r"^\s*(import|from)\s+(slicer|qt|ctk|vtk)\b", re.MULTILINE)
    for path in (ROOT / "MedNetsCore" / "mednets").rglob("*.py"):
        if path.name not in SLICER_SIDE_FILES and pattern.search(path.read_text()):
            offenders.append(path.name)
    assert not offenders, f"only {sorted(SLICER_SIDE_FILES)} may import slicer/qt/ctk/vtk: {offenders}"


def test_nothing_outside_the_widgets_imports_the_slicer_side_panel_pieces():
    pattern = re.compile(r"^\s*from\s+mednets\.widgets\s+import|^\s*import\s+mednets\.widgets", re.MULTILINE)
    offenders = [str(path.relative_to(ROOT)) for path in ROOT.glob("*/*Lib/**/*.py")
                 if path.name not in SLICER_SIDE_LIB_FILES and pattern.search(path.read_text())]
    offenders += [path.name for path in (ROOT / "MedNetsCore" / "mednets").rglob("*.py")
                  if path.name != "widgets.py" and pattern.search(path.read_text())]
    assert not offenders, f"the CLI/batch code must not need Qt: {offenders} import mednets.widgets"


def test_no_unsafe_deserialisation_anywhere():
    offenders = []
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts or "build" in path.parts:
            continue
        for line_number, line in enumerate(path.read_text(errors="ignore").splitlines(), 1):
            if re.search(r"torch\.load\(|pickle\.loads?\(", line) and "weights_only=True" not in line:
                if path.name != "test_packaging.py":
                    offenders.append(f"{path.relative_to(ROOT)}:{line_number}")
    assert not offenders, f"weights must load with safetensors or torch.load(..., weights_only=True): {offenders}"
