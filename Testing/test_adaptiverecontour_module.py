"""AdaptiveRecontour, the scripted module, run unchanged under pytest through the Slicer test runtime.

Covers loading the module file as Slicer does, its own ``AdaptiveRecontourTest`` (logic level: a phantom pair in,
a daily segmentation and a grid transform out, the metrics table) and widget tests (select the inputs, Apply, wait
for the job, check the new nodes; Evaluate; bad input), with the bundled demo weights. The panel's Apply, Evaluate and
Train run as child processes of ``python -m AdaptiveRecontourLib``; ``AdaptiveRecontour/Testing/Python/
AdaptiveRecontourWidgetTest.py`` checks that no Python thread starts, the event loop keeps turning, cancel latency is
under 2 s, and a failed or SIGKILLed child leaves the scene unchanged and its folder removed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from slicer_test_runtime import module_test_names

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "AdaptiveRecontour"
MODULE_FILE = MODULE_DIR / "AdaptiveRecontour.py"
WIDGET_TESTS = MODULE_DIR / "Testing" / "Python" / "AdaptiveRecontourWidgetTest.py"


@pytest.fixture(autouse=True)
def _models(tmp_path, monkeypatch):
    """User models (e.g. trained in a test) go to a temporary folder; the bundled demo weights are used as they are."""
    monkeypatch.setenv("MEDNETS_CACHE_DIR", str(tmp_path / "mednets-cache"))


def test_module_file_is_loaded_as_slicer_loads_it(slicer_runtime, mrml_scene):
    import slicer

    slicer_runtime.load_module(MODULE_FILE)
    module = slicer.util.getModule("AdaptiveRecontour")
    assert module.title == "Adaptive Recontour" and "Registration" in module.categories
    assert not module.icon.isNull()
    assert "AdaptiveRecontour" in slicer.selfTests


@pytest.mark.parametrize("testName", module_test_names(MODULE_FILE))
def test_module_self_test(slicer_runtime, mrml_scene, testName):
    slicer_runtime.run_module_tests("AdaptiveRecontour", [testName])


@pytest.mark.parametrize("testName", module_test_names(WIDGET_TESTS, "AdaptiveRecontourWidgetTest"))
def test_widget(module_widget, slicer_runtime, mrml_scene, testName):
    slicer_runtime.load_module(MODULE_FILE)
    module_widget("AdaptiveRecontour")
    slicer_runtime.run_test_file(WIDGET_TESTS, [testName])


def _wait(widget, condition, timeout=120.0):
    import slicer

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        slicer.app.processEvents()
        time.sleep(0.01)


def test_widget_apply_and_evaluate(module_widget, slicer_runtime, mrml_scene):
    import slicer

    slicer_runtime.load_module(MODULE_FILE)
    widget = module_widget("AdaptiveRecontour")
    testClass = sys.modules["AdaptiveRecontour"].AdaptiveRecontourTest
    planningCT, planningSeg, dailyCT, reference = testClass.phantomNodes(seed=902)
    ui = widget.ui
    ui.planningVolumeSelector.setCurrentNode(planningCT)
    ui.planningSegmentationSelector.setCurrentNode(planningSeg)
    ui.dailyVolumeSelector.setCurrentNode(dailyCT)
    ui.deviceComboBox.currentIndex = [ui.deviceComboBox.itemText(i) for i in range(ui.deviceComboBox.count)].index(
        "CPU")
    assert ui.applyButton.enabled
    segmentationsBefore = len(slicer.util.getNodesByClass("vtkMRMLSegmentationNode"))
    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel"
    _wait(widget, lambda: widget._job is None)
    assert "Created" in ui.statusLabel.text, ui.statusLabel.text
    assert ui.applyButton.text == "Apply"
    transforms = slicer.util.getNodesByClass("vtkMRMLGridTransformNode")
    assert len(transforms) == 1 and transforms[0].GetName() == "daily CT planning-to-daily"
    segmentations = slicer.util.getNodesByClass("vtkMRMLSegmentationNode")
    assert len(segmentations) == segmentationsBefore + 2  # the daily result and the propagated planning copy
    result = widget._parameterNode.resultSegmentation
    assert result.GetName() == "daily CT recontoured"
    propagated = slicer.mrmlScene.GetNodeByID(result.GetAttribute("AdaptiveRecontour.Propagated"))
    assert propagated.GetTransformNodeID() == transforms[0].GetID()
    assert planningSeg.GetTransformNodeID() is None  # the user's nodes are untouched
    # Evaluate against the reference daily contours
    ui.referenceSegmentationSelector.setCurrentNode(reference)
    assert ui.evaluateButton.enabled
    ui.evaluateButton.click()
    _wait(widget, lambda: widget._evaluationJob is None)
    table = widget.lastTableNode
    assert table is not None and table.GetNumberOfRows() == 5, ui.evaluateStatusLabel.text
    assert "Mean DSC" in ui.evaluateStatusLabel.text


def test_widget_bad_input_reports_error(module_widget, slicer_runtime, mrml_scene, slicer_messages):
    import slicer
    from mednets import mrml
    from mednets.image import Volume

    slicer_runtime.load_module(MODULE_FILE)
    widget = module_widget("AdaptiveRecontour")
    testClass = sys.modules["AdaptiveRecontour"].AdaptiveRecontourTest
    planningCT, planningSeg, dailyCT, _reference = testClass.phantomNodes(seed=903)
    nanVolume = Volume(np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32) * 500)
    nanVolume.array[1, 2, 3] = np.nan
    nanNode = mrml.new_volume_node(nanVolume, slicer.mrmlScene, "broken daily")
    widget.ui.planningVolumeSelector.setCurrentNode(planningCT)
    widget.ui.planningSegmentationSelector.setCurrentNode(planningSeg)
    widget.ui.dailyVolumeSelector.setCurrentNode(nanNode)
    count = slicer.mrmlScene.GetNumberOfNodes()
    widget.ui.applyButton.click()
    assert widget._job is None
    assert "NaN" in widget.ui.statusLabel.text
    assert slicer.mrmlScene.GetNumberOfNodes() == count


def test_widget_add_case_and_train(module_widget, slicer_runtime, mrml_scene, tmp_path):
    import slicer

    slicer_runtime.load_module(MODULE_FILE)
    widget = module_widget("AdaptiveRecontour")
    testClass = sys.modules["AdaptiveRecontour"].AdaptiveRecontourTest
    planningCT, planningSeg, dailyCT, reference = testClass.phantomNodes(seed=904)
    ui = widget.ui
    ui.planningVolumeSelector.setCurrentNode(planningCT)
    ui.planningSegmentationSelector.setCurrentNode(planningSeg)
    ui.dailyVolumeSelector.setCurrentNode(dailyCT)
    ui.referenceSegmentationSelector.setCurrentNode(reference)
    widget._parameterNode.trainingFolder = tmp_path / "pairs"
    widget._parameterNode.trainingOutputFolder = tmp_path / "run"
    assert ui.addCaseButton.enabled
    ui.addCaseButton.click()
    assert "Added" in ui.trainingStatusLabel.text, ui.trainingStatusLabel.text
    assert len(list((tmp_path / "pairs").glob("*.nrrd"))) == 4
    widget._parameterNode.iterations = 2
    widget.trainingOptions = {"filters": (4, 6, 8), "patch_size": 48}
    ui.trainButton.click()
    _wait(widget, lambda: widget._trainingJob is None, timeout=300)
    assert "Training finished" in ui.trainingStatusLabel.text, ui.trainingStatusLabel.text
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert ui.modelComboBox.currentText == "model"
