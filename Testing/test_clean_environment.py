"""A fresh Python that holds only what 3D Slicer ships + torch: every module file imports, the first Apply asks ONCE for
exactly the missing runtime packages, installs them, and then a module's command line works; in testing mode nothing
is installed and the error names the packages.

Slow (a new virtual environment with torch from the local wheels, several GB unpacked): marked ``slow``. Everything
lives in one temporary folder, removed at the end; pip runs with ``--no-cache-dir``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from mednets import dependencies as deps

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# What Slicer's own Python ships (SuperBuild/External_python-*.cmake) + torch (the PyTorch extension) + the application
# stand-in the test runtime needs (slicer-core brings vtk; PySide6-Essentials for qt) + pytest.
BASE_PACKAGES = ["numpy", "scipy", "SimpleITK", "requests", "pydicom", "Pillow", "packaging", "torch==2.14.1",
                 "PySide6-Essentials", "pytest"]
# The vtk wheel (slicer-core's one requirement) declares matplotlib, which Slicer's own VTK does not bring: installed
# with --no-deps so that matplotlib stays missing, as in Slicer.
# slicer-core needs the vtk build it was made against: pin both to this environment's versions.
NO_DEPS_PACKAGES = [name + (f"=={deps.installed_version(name)}" if deps.installed_version(name) else "")
                    for name in ("slicer-core", "vtk")]
RUNTIME_NAMES = [deps.parse_requirement(text).name for text in deps.RUNTIME_REQUIREMENTS]

DRIVER = textwrap.dedent(r'''
    import importlib.util, json, os, subprocess, sys
    from pathlib import Path

    root = Path(sys.argv[1])
    phase = sys.argv[2]
    sys.path.insert(0, str(root / "Testing" / "runtime"))
    from slicer_test_runtime import runtime as runtime_module

    runtime = runtime_module.install()
    import slicer
    from mednets import dependencies as deps  # importable: MedNetsCore's folder is on sys.path once registered

    out = {}
    if phase == "imports":
        loaded = []
        for module_file in runtime.discover_module_files([root]):
            runtime.load_module(module_file)
            loaded.append(module_file.stem)
        # The Segment Editor effect: Slicer imports the file as the module named after its folder.
        effect = root / "SegmentEditorMedNets" / "SegmentEditorMedNetsEffect" / "SegmentEditorEffect.py"
        spec = importlib.util.spec_from_file_location("SegmentEditorMedNetsEffect", effect)
        module = importlib.util.module_from_spec(spec)
        sys.modules["SegmentEditorMedNetsEffect"] = module
        spec.loader.exec_module(module)
        loaded.append("SegmentEditorMedNetsEffect")
        out["loaded"] = loaded
        out["absent"] = [n for n in json.loads(sys.argv[3]) if importlib.util.find_spec(n) is None]
    elif phase == "testing-mode":
        # As in Slicer under --testing: the app says testingEnabled(); no installer given -> nothing is installed.
        deps.running_in_slicer = lambda: True
        assert slicer.app.testingEnabled()
        dialogs = []
        slicer.util.confirmOkCancelDisplay = lambda text, **kw: dialogs.append(text) or True
        try:
            deps.ensure_runtime("OrganCombo")
            out["error"] = None
        except deps.MissingDependencyError as error:
            out["error"] = str(error)
        out["dialogs"] = dialogs
    elif phase == "first-apply":
        # The first Apply's dependency step, as mednets.widgets.ensure_packages does it, with a recording confirm
        # function and an installer that runs this venv's pip (the local index).
        questions, installs = [], []

        def confirm(question):
            questions.append(question)
            return True

        def installer(requirements):
            texts = [r.text for r in requirements]
            installs.append(texts)
            subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--quiet", *texts], check=True)

        installed = deps.ensure_runtime("OrganCombo", confirm=confirm, installer=installer)
        out.update(questions=questions, installs=installs, installed=[r.text for r in installed],
                   still_missing=[r.text for r in deps.missing_requirements(deps.RUNTIME_REQUIREMENTS)])
    print("RESULT " + json.dumps(out))
''')


def _run(command, **kwargs):
    env = dict(os.environ, PIP_NO_CACHE_DIR="1", QT_QPA_PLATFORM="offscreen", PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    env.update(kwargs.pop("env", {}))
    result = subprocess.run(command, capture_output=True, text=True, env=env, **kwargs)
    assert result.returncode == 0, f"{command[:4]} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _driver(python, script, phase, *extra):
    result = _run([str(python), str(script), str(ROOT), phase, *extra], cwd=str(script.parent))
    line = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_clean_environment_asks_once_installs_and_runs():
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="mednets_clean_env_"))
    try:
        venv = folder / "venv"
        _run([sys.executable, "-m", "venv", str(venv)])  # no --system-site-packages
        python = venv / "bin" / "python"
        _run([str(python), "-m", "pip", "install", "--no-cache-dir", "--quiet", *BASE_PACKAGES])
        _run([str(python), "-m", "pip", "install", "--no-cache-dir", "--quiet", "--no-deps", *NO_DEPS_PACKAGES])
        built = time.monotonic() - started
        listing = json.loads(_run([str(python), "-m", "pip", "list", "--format", "json"]).stdout)
        present = {item["name"].lower().replace("_", "-") for item in listing}
        # Anything of the runtime list that slicer-core / PySide6 / pytest / torch pulled in is reported, not expected.
        pulled = [name for name in RUNTIME_NAMES if name.lower() in present]
        expected_missing = [name for name in RUNTIME_NAMES if name not in pulled]
        print(f"\nclean venv built in {built:.0f} s; runtime packages pulled in by the base: {pulled or 'none'}")
        assert pulled == [], f"the base environment already holds {pulled}"

        script = folder / "driver.py"
        script.write_text(DRIVER, encoding="utf-8")
        imports_modules = {"torchvision", "safetensors", "tqdm", "matplotlib", "tifffile", "skimage"}
        imports = _driver(python, script, "imports", json.dumps(sorted(imports_modules)))
        assert {"OrganCombo", "AxillaryLNDetect", "AneurysmSeg", "AdaptiveRecontour", "NucleiMaskylo",
                "SegmentEditorMedNets", "SegmentEditorMedNetsEffect"} <= set(imports["loaded"])
        if (ROOT / "MedNetsCore" / "MedNetsCore.py").is_file():
            assert "MedNetsCore" in imports["loaded"]
        assert imports["absent"], "the clean venv should lack the runtime packages while the modules load"

        testing = _driver(python, script, "testing-mode")
        assert testing["dialogs"] == []
        assert testing["error"] and "testing mode" in testing["error"]
        for name in expected_missing:
            assert name in testing["error"]
        after_testing = {i["name"].lower() for i in json.loads(
            _run([str(python), "-m", "pip", "list", "--format", "json"]).stdout)}
        assert not ({n.lower() for n in expected_missing} & after_testing), "testing mode installed something"

        first = _driver(python, script, "first-apply")
        assert len(first["questions"]) == 1  # ONE question for all missing packages
        question = first["questions"][0]
        for text in deps.RUNTIME_REQUIREMENTS:
            name = deps.parse_requirement(text).name
            assert (text in question) is (name in expected_missing), (name, question)
        assert first["installs"] == [[t for t in deps.RUNTIME_REQUIREMENTS
                                      if deps.parse_requirement(t).name in expected_missing]]
        assert first["still_missing"] == []

        # Afterwards the module's command line works in that venv (a fresh process, as the panel's child is).
        phantom_script = folder / "phantom.py"
        phantom_script.write_text(textwrap.dedent(f'''
            import sys
            sys.path.insert(0, {str(ROOT / "MedNetsCore")!r})
            from mednets.io import Volume, write_volume
            from mednets.phantoms import pet_whole_body_phantom
            phantom = pet_whole_body_phantom(seed=3, shape=(48, 24, 32), spacing=(21.0, 13.0, 13.0))
            write_volume(Volume(phantom.image, spacing=phantom.spacing,
                                directions_ras=phantom.extra["directions_ras"]), sys.argv[1])
        '''), encoding="utf-8")
        image, labels = folder / "pet.nrrd", folder / "labels.nrrd"
        _run([str(python), str(phantom_script), str(image)])
        env = {"PYTHONPATH": str(ROOT / "MedNetsCore")}
        predicted = _run([str(python), "-m", "OrganComboLib", "--progress", "json", "predict", "--input", str(image),
                          "--output", str(labels), "--device", "cpu"], cwd=str(ROOT / "OrganCombo"), env=env)
        assert labels.is_file() and labels.stat().st_size > 0
        results = [json.loads(l) for l in predicted.stdout.splitlines() if l.startswith("{")]
        assert any(r.get("type") == "result" for r in results), predicted.stdout[-2000:]
        print(f"clean-environment test: {time.monotonic() - started:.0f} s in all (venv build {built:.0f} s)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
