"""NucleiMaskylo, the scripted module, run unchanged under pytest through the Slicer test runtime.

Covers: loading the module file as Slicer does, its own ``NucleiMaskyloTest`` (the phantom test needs the bundled
demo weights, ``Resources/Models/NucleiMaskyloModels.json``, and is skipped until they exist) and the widget tests of
``NucleiMaskylo/Testing/Python/NucleiMaskyloWidgetTest.py`` (RGB tile in, Apply, instance label map + per-nucleus
table; Evaluate fills P/R/mAP/Dice/IoU/AJI/PQ; bad input; cancel; add current case).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from slicer_test_runtime import module_test_names

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "NucleiMaskylo"
MODULE_FILE = MODULE_DIR / "NucleiMaskylo.py"
WIDGET_TESTS = MODULE_DIR / "Testing" / "Python" / "NucleiMaskyloWidgetTest.py"
CATALOGUE = MODULE_DIR / "Resources" / "Models" / "NucleiMaskyloModels.json"
NEEDS_DEMO_WEIGHTS = {"test_NucleiMaskyloFindsPhantomNuclei"}


@pytest.fixture(autouse=True)
def _isolated_model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNETS_CACHE_DIR", str(tmp_path / "mednets-cache"))


def test_module_file_is_loaded_as_slicer_loads_it(slicer_runtime, mrml_scene):
    import slicer

    pythonModule = slicer_runtime.load_module(MODULE_FILE)
    module = slicer.util.getModule("NucleiMaskylo")
    assert module is slicer.modules.nucleimaskylo
    assert sys.modules["NucleiMaskylo"] is pythonModule
    assert module.title == "Nuclei Maskylo" and "Segmentation" in module.categories
    assert not module.icon.isNull()
    assert "NucleiMaskylo" in slicer.selfTests
    assert "AGPL-3.0" in module.helpText


@pytest.mark.parametrize("testName", module_test_names(MODULE_FILE))
def test_module_self_test(slicer_runtime, mrml_scene, testName):
    if testName in NEEDS_DEMO_WEIGHTS and not CATALOGUE.is_file():
        pytest.skip(f"the bundled demo weights are not built yet ({CATALOGUE.relative_to(ROOT)} is missing)")
    slicer_runtime.run_module_tests("NucleiMaskylo", [testName])


@pytest.mark.parametrize("testName", module_test_names(WIDGET_TESTS, "NucleiMaskyloWidgetTest"))
def test_widget(module_widget, slicer_runtime, testName):
    module_widget("NucleiMaskylo")
    slicer_runtime.run_test_file(WIDGET_TESTS, [testName])
