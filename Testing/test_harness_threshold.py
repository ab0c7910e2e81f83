"""HarnessThreshold, the test-only scripted module, run unchanged under pytest through the Slicer test runtime.

Covers: loading the module file as Slicer does, its own ``HarnessThresholdTest`` (logic level), and the widget tests of
``HarnessThreshold/Testing/Python/HarnessThresholdWidgetTest.py`` (the file ctest runs inside Slicer): select an input,
set the threshold, click Apply, wait for the background job, check the new segmentation against numpy; a bad input
reported in the panel with the scene unchanged; cancel in the middle leaving no node.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slicer_test_runtime import module_test_names

MODULE_DIR = Path(__file__).resolve().parent / "HarnessThreshold"
MODULE_FILE = MODULE_DIR / "HarnessThreshold.py"
WIDGET_TESTS = MODULE_DIR / "Testing" / "Python" / "HarnessThresholdWidgetTest.py"
RUN_IN_SLICER = Path(__file__).resolve().parent / "run_in_slicer.py"


def test_module_file_is_loaded_as_slicer_loads_it(slicer_runtime, mrml_scene):
    import slicer

    pythonModule = slicer_runtime.load_module(MODULE_FILE)
    module = slicer.util.getModule("HarnessThreshold")
    assert module is slicer.modules.harnessthreshold
    assert sys.modules["HarnessThreshold"] is pythonModule
    assert isinstance(slicer.modules.HarnessThresholdInstance, pythonModule.HarnessThreshold)
    assert (module.title, module.dependencies) == ("Harness Threshold", ["Segmentations"])
    assert Path(slicer.util.modulePath("HarnessThreshold")) == MODULE_FILE
    assert not module.icon.isNull()  # Resources/Icons/HarnessThreshold.png was found
    assert "HarnessThreshold" in slicer.selfTests
    assert str(MODULE_DIR) in sys.path  # so that <Module>Lib packages next to the file import
    assert slicer_runtime.load_module(MODULE_FILE) is pythonModule  # loading twice keeps the loaded module


@pytest.mark.parametrize("testName", module_test_names(MODULE_FILE))
def test_module_self_test(slicer_runtime, mrml_scene, testName):
    slicer_runtime.run_module_tests("HarnessThreshold", [testName])


def test_module_run_test_as_slicer_self_test(slicer_runtime, mrml_scene, slicer_messages):
    slicer_runtime.run_module_tests("HarnessThreshold")
    assert [m.text for m in slicer_messages if m.kind == "delay"] == ["Starting the test", "Test passed", "Test passed"]


@pytest.mark.parametrize("testName", module_test_names(WIDGET_TESTS, "HarnessThresholdWidgetTest"))
def test_widget(module_widget, slicer_runtime, testName):
    module_widget("HarnessThreshold")
    slicer_runtime.run_test_file(WIDGET_TESTS, [testName])


def test_errors_reach_the_user_through_error_display(module_widget, slicer_messages):
    import slicer

    widget = module_widget("HarnessThreshold")
    widget.ui.inputSelector.setCurrentNode(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Empty"))
    widget.ui.applyButton.click()
    errors = [m.text for m in slicer_messages if m.kind == "error"]
    assert errors == ["Thresholding failed: The input volume 'Empty' is empty: it has no voxels."]
    assert widget.ui.statusLabel.text == "Error: The input volume 'Empty' is empty: it has no voxels."


def test_apply_button_follows_the_input_selection(module_widget):
    import slicer

    widget = module_widget("HarnessThreshold")
    assert widget.ui.inputSelector.currentNode() is None and not widget.ui.applyButton.enabled
    volume = slicer.util.addVolumeFromArray(np.zeros((2, 3, 4), np.int16), name="First")
    assert widget.ui.inputSelector.currentNode() is volume  # noneEnabled is false: the first volume is selected
    assert widget.logic.getParameterNode().inputVolume is volume
    assert widget.ui.applyButton.enabled
    slicer.mrmlScene.RemoveNode(volume)
    assert widget.logic.getParameterNode().inputVolume is None
    assert not widget.ui.applyButton.enabled


def test_widget_is_torn_down_between_tests(slicer_runtime, module_widget):
    import slicer

    first = module_widget("HarnessThreshold")
    assert slicer.util.getModuleWidget("HarnessThreshold") is first
    slicer_runtime.destroy_widget("HarnessThreshold")
    assert not first.hasObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, first.onSceneStartClose)
    second = module_widget("HarnessThreshold")
    assert second is not first and second.ui.inputSelector.mrmlScene() is slicer.mrmlScene


def test_run_in_slicer_script_runs_the_same_tests_outside_slicer():
    completed = subprocess.run([sys.executable, str(RUN_IN_SLICER), "--", "HarnessThreshold"], capture_output=True,
                               text=True, timeout=300, cwd=RUN_IN_SLICER.parents[1])
    assert completed.returncode == 0, completed.stdout + completed.stderr
    expected = len(module_test_names(MODULE_FILE)) + len(module_test_names(WIDGET_TESTS, "HarnessThresholdWidgetTest"))
    assert f"Ran {expected} tests" in completed.stderr + completed.stdout
    missing = subprocess.run([sys.executable, str(RUN_IN_SLICER), "NoSuchModule"], capture_output=True, text=True,
                             timeout=300, cwd=RUN_IN_SLICER.parents[1])
    assert missing.returncode == 1 and "NoSuchModule is not loaded" in missing.stderr
