"""The modules load from a source checkout the way real Slicer loads them (fault 2 of issue 15).

In Slicer, ``qSlicerScriptedLoadableModuleFactory`` (Base/QTGUI/qSlicerScriptedLoadableModuleFactory.cxx) appends the
folder of every discovered module file to ``sys.path`` when the module is registered (``ctkFactoryScriptedItem::load``,
called by CTK's ``ctkAbstractFactory::registerItem``) and only then imports each module file by its own name.
Nothing else of a source checkout is on ``sys.path``. So ``mednets`` imports only because ``MedNetsCore/`` holds a
module file (``MedNetsCore/MedNetsCore.py``, hidden).

pytest itself cannot show this: the repository's ``conftest.py`` puts ``MedNetsCore`` on ``sys.path`` and the editable
install (``pip install -e .``) adds it through a ``.pth`` file. The test therefore runs a child Python with the venv's
site-packages but no repository folder and no editable ``mednets``; it loads the runtime package by file location
(``Testing/runtime`` is not put on the path), lets the runtime register the checkout's module folders and instantiates
every module. One child run (about 5 s; no torch import: module files import torch only in their Logic methods).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Every SlicerMedNets module, in the order the child instantiates them (MedNetsCore last on purpose: the others must
#: import ``mednets`` because its folder was registered, not because its module was instantiated first).
MODULES = ("AdaptiveRecontour", "AneurysmSeg", "AxillaryLNDetect", "NucleiMaskylo", "OrganCombo",
           "SegmentEditorMedNets", "MedNetsCore")

CHILD = r"""
import importlib.util, json, os, sys, traceback
root = os.path.realpath(sys.argv[1])
modules = json.loads(sys.argv[2])

venv = os.path.realpath(sys.prefix)  # the venv may sit inside the checkout (.venv): its site-packages stay

def inside(entry):
    path = os.path.realpath(entry or os.getcwd())
    if path == venv or path.startswith(venv + os.sep):
        return False
    return path == root or path.startswith(root + os.sep)

# A clean path before anything imports mednets: no repository folder (the editable install's .pth adds MedNetsCore),
# no setuptools editable finder or path hook.
sys.path[:] = [entry for entry in sys.path if not inside(entry)]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in (type(f).__module__ + repr(f)).lower()]
sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in repr(h).lower()]
sys.path_importer_cache.clear()
report = {"mednets_before": importlib.util.find_spec("mednets") is not None, "errors": {}, "loaded": []}

package = os.path.join(root, "Testing", "runtime", "slicer_test_runtime")
spec = importlib.util.spec_from_file_location("slicer_test_runtime", os.path.join(package, "__init__.py"),
                                              submodule_search_locations=[package])
runtime_package = importlib.util.module_from_spec(spec)
sys.modules["slicer_test_runtime"] = runtime_package
spec.loader.exec_module(runtime_package)
path_before = list(sys.path)
runtime = runtime_package.install()  # registers the checkout's module folders, as Slicer's factory does
report["registered_paths"] = [entry for entry in sys.path if entry not in path_before]
report["path_kept_in_front"] = sys.path[:len(path_before)] == path_before
report["registered"] = list(getattr(runtime, "registeredModules", {}))
for name in modules:
    try:
        runtime.load_module(runtime.find_module_file(name))
        import slicer
        report["loaded"].append([name, slicer.util.getModule(name).name, bool(slicer.util.getModule(name).hidden)])
    except BaseException as error:
        report["errors"][name] = "".join(traceback.format_exception_only(type(error), error)).strip()
try:
    runtime.run_module_tests("MedNetsCore")
    report["self_test"] = "passed"
except BaseException as error:
    report["self_test"] = "".join(traceback.format_exception_only(type(error), error)).strip()
spec = importlib.util.find_spec("mednets")
report["mednets_file"] = spec.origin if spec is not None else None
print("REPORT " + json.dumps(report))
"""


def test_every_module_loads_from_a_source_checkout_as_in_slicer(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    environment["QT_QPA_PLATFORM"] = "offscreen"
    completed = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), json.dumps(MODULES)], cwd=tmp_path,
                               env=environment, capture_output=True, text=True, timeout=300)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("REPORT ")]
    assert completed.returncode == 0 and lines, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])

    assert report["mednets_before"] is False  # the child really has no repository path
    assert report["errors"] == {}, report["errors"]
    assert [name for name, _, _ in report["loaded"]] == list(MODULES)
    assert [name for name, _, hidden in report["loaded"] if hidden] == ["SegmentEditorMedNets", "MedNetsCore"]
    assert report["self_test"] == "passed"
    assert Path(report["mednets_file"]).resolve() == ROOT / "MedNetsCore" / "mednets" / "__init__.py"
    # Registration appends every discovered module folder, after what was on the path, in discovery order
    # (search path by search path, folders sorted by name) and nothing else of the checkout.
    expected = sorted(p.parent for p in ROOT.glob("*/*.py") if p.stem == p.parent.name)
    expected += sorted(p.parent for p in (ROOT / "Testing").glob("*/*.py") if p.stem == p.parent.name)
    assert [Path(p) for p in report["registered_paths"]] == expected
    assert ROOT / "MedNetsCore" in expected and ROOT / "Testing" / "HarnessThreshold" in expected
    assert report["path_kept_in_front"]
    assert sorted(report["registered"]) == sorted(p.name for p in expected)
