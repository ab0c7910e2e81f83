"""AneurysmSeg, the scripted module, run unchanged under pytest through the Slicer test runtime.

Covers: loading the module file as Slicer does (title, icon, self-test registration), its own ``AneurysmSegTest``
(logic level; the demo-weights test needs ``Resources/Models/AneurysmSegModels.json``), the widget tests of
``AneurysmSeg/Testing/Python/AneurysmSegWidgetTest.py`` (Apply on a CTA phantom: segmentation + risk map + per-target
table; Evaluate: voxel/target/case metrics; bad input; cancel; add case + train), and the panel's defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from slicer_test_runtime import module_test_names

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "AneurysmSeg"
MODULE_FILE = MODULE_DIR / "AneurysmSeg.py"
WIDGET_TESTS = MODULE_DIR / "Testing" / "Python" / "AneurysmSegWidgetTest.py"
CATALOGUE = MODULE_DIR / "Resources" / "Models" / "AneurysmSegModels.json"
NEEDS_DEMO_WEIGHTS = {"test_AneurysmSegSegmentsCtaPhantom"}


@pytest.fixture(autouse=True)
def _isolated_model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNETS_CACHE_DIR", str(tmp_path / "mednets-cache"))


def test_module_file_is_loaded_as_slicer_loads_it(slicer_runtime, mrml_scene):
    import slicer

    pythonModule = slicer_runtime.load_module(MODULE_FILE)
    module = slicer.util.getModule("AneurysmSeg")
    assert sys.modules["AneurysmSeg"] is pythonModule
    assert (module.title, module.dependencies) == ("Aneurysm Seg", ["Segmentations"])
    assert "Segmentation" in module.categories
    assert not module.icon.isNull()
    assert "AneurysmSeg" in slicer.selfTests
    assert str(MODULE_DIR) in sys.path


@pytest.mark.parametrize("testName", module_test_names(MODULE_FILE))
def test_module_self_test(slicer_runtime, mrml_scene, testName):
    if testName in NEEDS_DEMO_WEIGHTS and not CATALOGUE.is_file():
        pytest.skip(f"the bundled demo weights are not built yet ({CATALOGUE.relative_to(ROOT)} is missing)")
    slicer_runtime.run_module_tests("AneurysmSeg", [testName])


@pytest.mark.parametrize("testName", module_test_names(WIDGET_TESTS, "AneurysmSegWidgetTest"))
def test_widget(module_widget, slicer_runtime, testName):
    module_widget("AneurysmSeg")
    slicer_runtime.run_test_file(WIDGET_TESTS, [testName])


def test_panel_defaults_follow_the_paper(module_widget):
    widget = module_widget("AneurysmSeg")
    ui = widget.ui
    assert ui.thresholdSliderWidget.value == 0.5 and ui.overlapSpinBox.value == 64 and ui.batchSizeSpinBox.value == 4
    assert ui.advancedCollapsibleButton.collapsed and ui.trainCollapsibleButton.collapsed
    assert [ui.deviceComboBox.itemText(i) for i in range(ui.deviceComboBox.count)] == [
        "Auto (GPU if available)", "CUDA (NVIDIA GPU)", "MPS (Apple GPU)", "CPU"]
    assert ui.trainingConfigComboBox.count == 3 and ui.trainingConfigComboBox.currentIndex == 0
    assert ui.iterationsSpinBox.value == 200000
    assert ui.outputSelector.currentNode() is None
    if CATALOGUE.is_file():
        assert ui.modelComboBox.currentText == "aneurysmseg-cta-demo"
        assert "not for clinical use" in ui.modelComboBox.toolTip
    ui.trainingConfigComboBox.setCurrentIndex(2)  # small: the iterations follow the configuration's default
    assert widget._parameterNode.trainingConfig.value == "small" and ui.iterationsSpinBox.value == 400
