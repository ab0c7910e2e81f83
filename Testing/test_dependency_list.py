"""One list of runtime packages: mednets.dependencies is the source, pyproject.toml agrees, the shipped code imports
nothing else (an AST scan of the module folders and MedNetsCore, not the tests)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from mednets import dependencies as deps

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_FOLDERS = ("OrganCombo", "AxillaryLNDetect", "AneurysmSeg", "AdaptiveRecontour", "NucleiMaskylo",
                   "SegmentEditorMedNets", "MedNetsCore")

# Import names of the distributions of Slicer's own Python (SuperBuild/External_python-*.cmake).
SLICER_SHIPPED_IMPORTS = {"numpy", "scipy", "SimpleITK", "requests", "pydicom", "PIL", "packaging", "pip",
                          "setuptools", "wheel"}
# Modules of the Slicer application itself (slicer-core / PythonQt / other Slicer modules and extensions), not pip
# packages: the CLI side never imports them.
SLICER_APPLICATION_IMPORTS = {"slicer", "qt", "ctk", "vtk", "SampleData", "SegmentEditorEffects", "PyTorchUtils",
                              "qSlicerSegmentationsEditorEffectsPythonQt", "qSlicerSegmentationsModuleWidgetsPythonQt"}
# Optional packages, each requested (with consent) where it is used: import name -> the file that asks for it.
OPTIONAL_IMPORTS = {"ultralytics": "NucleiMaskylo/NucleiMaskyloLib/yolo.py"}
# Import names that differ from the distribution name.
IMPORT_NAMES = {"scikit-image": "skimage", "Pillow": "PIL"}


def _pyproject_dependencies() -> list:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib  # Python >= 3.11
    except ImportError:  # Python 3.9/3.10: tomli if present, else a small parser of the one array we need
        try:
            import tomli as tomllib
        except ImportError:
            tomllib = None
    if tomllib is not None:
        return list(tomllib.loads(text)["project"]["dependencies"])
    block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, re.S | re.M).group(1)
    return re.findall(r'^\s*"([^"]+)"', block, re.M)


def _local_names() -> set:
    names = {"mednets"}
    for folder in SHIPPED_FOLDERS:
        base = ROOT / folder
        names.add(folder)
        names.update(p.name for p in base.iterdir() if p.is_dir())
        names.update(p.stem for p in base.glob("*.py"))
    return names


def _top_level_imports():
    for folder in SHIPPED_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if "Testing" in relative.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        yield alias.name.split(".")[0], relative
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    yield node.module.split(".")[0], relative


def test_pyproject_dependencies_are_exactly_slicer_floors_torch_and_the_runtime_list():
    expected = [*deps.SLICER_SHIPPED_REQUIREMENTS, "torch" + deps.TORCH_REQUIREMENT, *deps.RUNTIME_REQUIREMENTS]
    normalise = lambda items: sorted(re.sub(r"\s+", "", item).lower() for item in items)  # noqa: E731
    assert normalise(_pyproject_dependencies()) == normalise(expected)
    names = [deps.parse_requirement(text).name.lower() for text in expected]
    assert len(names) == len(set(names))
    assert "torchvision" in names
    for text in deps.SLICER_SHIPPED_REQUIREMENTS:  # Slicer's own: floors only, never pinned or capped
        requirement = deps.parse_requirement(text)
        assert requirement.name.lower() in deps.SLICER_BUNDLED_PACKAGES
        assert all(op == ">=" for op, _ in requirement.clauses)
    for text in deps.RUNTIME_REQUIREMENTS:  # what the panels install must never replace one of Slicer's packages
        assert deps.parse_requirement(text).name.lower() not in deps.SLICER_BUNDLED_PACKAGES


def test_every_third_party_import_of_the_shipped_code_is_covered():
    covered = (SLICER_SHIPPED_IMPORTS | SLICER_APPLICATION_IMPORTS | set(OPTIONAL_IMPORTS) | _local_names()
               | set(sys.stdlib_module_names) | {"torch"})
    for text in deps.RUNTIME_REQUIREMENTS:
        name = deps.parse_requirement(text).name
        covered.add(IMPORT_NAMES.get(name, name.replace("-", "_")))
    seen, uncovered = set(), {}
    for name, path in _top_level_imports():
        seen.add(name)
        if name not in covered:
            uncovered.setdefault(name, str(path))
    assert not uncovered, f"imports not in mednets.dependencies.RUNTIME_REQUIREMENTS (or known to Slicer): {uncovered}"
    # The list holds nothing the code does not use (every runtime package is imported somewhere).
    for text in deps.RUNTIME_REQUIREMENTS:
        name = deps.parse_requirement(text).name
        assert IMPORT_NAMES.get(name, name.replace("-", "_")) in seen, f"{name} is listed but never imported"
    # Optional packages are requested with consent where they are used.
    for name, path in OPTIONAL_IMPORTS.items():
        source = (ROOT / path).read_text(encoding="utf-8")
        assert "ensure_requirements" in source, f"{path} imports {name} without asking for it"
