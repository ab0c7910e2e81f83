"""OrganCombo, the scripted module, run unchanged under pytest through the Slicer test runtime.

Covers: loading the module file as Slicer does (title, icon, self-test registration), its own ``OrganComboTest``
(logic level; the demo-weights test needs ``Resources/Models/OrganComboModels.json``), the widget tests of
``OrganCombo/Testing/Python/OrganComboWidgetTest.py`` (the file ctest runs inside Slicer: Apply on a PET phantom,
Evaluate, bad input, cancel, load weights, add current case, train), plus checks only the runtime can make: errors reach
``slicer.util.errorDisplay``, the panel's defaults and tooltips, and the qMRMLTableView stand-in the panel uses.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from slicer_test_runtime import module_test_names

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "OrganCombo"
MODULE_FILE = MODULE_DIR / "OrganCombo.py"
WIDGET_TESTS = MODULE_DIR / "Testing" / "Python" / "OrganComboWidgetTest.py"
CATALOGUE = MODULE_DIR / "Resources" / "Models" / "OrganComboModels.json"
NEEDS_DEMO_WEIGHTS = {"test_OrganComboSegmentsPetPhantom", "test_OrganComboBadInput"}  # the Logic loads the model first


@pytest.fixture(autouse=True)
def _isolated_model_cache(tmp_path, monkeypatch):
    """Imported weights and listed user models come from a temporary folder, never the user's cache."""
    monkeypatch.setenv("MEDNETS_CACHE_DIR", str(tmp_path / "mednets-cache"))


def _selectTinyModel(widget, folder: Path) -> None:
    """List and select the small untrained test checkpoint of the widget tests (written into ``folder``)."""
    if str(WIDGET_TESTS.parent) not in sys.path:
        sys.path.insert(0, str(WIDGET_TESTS.parent))
    from OrganComboWidgetTest import writeSmallCheckpoint

    checkpoint = writeSmallCheckpoint(folder / "tiny.safetensors")
    widget.logic.trainingOutputFolders.append(str(folder))
    widget.refreshModels(selectPath=checkpoint)
    assert widget.ui.modelComboBox.currentText == "tiny"


def test_module_file_is_loaded_as_slicer_loads_it(slicer_runtime, mrml_scene):
    import slicer

    pythonModule = slicer_runtime.load_module(MODULE_FILE)
    module = slicer.util.getModule("OrganCombo")
    assert module is slicer.modules.organcombo
    assert sys.modules["OrganCombo"] is pythonModule
    assert (module.title, module.dependencies) == ("Organ Combo", ["Segmentations"])
    assert "Segmentation" in module.categories
    assert not module.icon.isNull()  # Resources/Icons/OrganCombo.png was found
    assert module.icon.availableSizes() == [] or module.icon.availableSizes()[0].width() == 128
    assert "OrganCombo" in slicer.selfTests
    assert str(MODULE_DIR) in sys.path  # OrganComboLib imports


def test_sample_data_is_offered_offline_with_checksums(slicer_runtime, mrml_scene, monkeypatch, tmp_path):
    """At start-up the module registers its bundled PET phantom with Slicer's Sample Data module; the file:// sources
    download (copy) offline, match their SHA-256 and load as the phantom and its five named organs."""
    import slicer
    from slicer_test_runtime.sample_data import capture_sample_registrations, fetch_registered_files, registration

    registered = capture_sample_registrations(monkeypatch)
    slicer_runtime.load_module(MODULE_FILE)
    slicer.app.startupCompleted.emit()

    arguments = registration(registered, "OrganComboPETPhantom")
    assert arguments["loadFileType"] == ["VolumeFile", "SegmentationFile"]
    loaded = fetch_registered_files(arguments, tmp_path)
    volumeNode = slicer.util.loadVolume(str(loaded[0]))
    segmentationNode = slicer.util.loadSegmentation(str(loaded[1]))

    from mednets import mrml
    from OrganComboLib.samples import sample_phantom  # the module folder is on sys.path once the module is loaded

    phantom = sample_phantom()
    np.testing.assert_allclose(slicer.util.arrayFromVolume(volumeNode), phantom.image, rtol=0, atol=1e-5)
    segmentation = segmentationNode.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["brain", "heart", "left kidney", "right kidney", "bladder"]
    labels = mrml.case_from_nodes(volumeNode, segmentationNode, names).label
    np.testing.assert_array_equal(labels, phantom.labels)


@pytest.mark.parametrize("testName", module_test_names(MODULE_FILE))
def test_module_self_test(slicer_runtime, mrml_scene, testName):
    if testName in NEEDS_DEMO_WEIGHTS and not CATALOGUE.is_file():
        pytest.skip(f"the bundled demo weights are not built yet ({CATALOGUE.relative_to(ROOT)} is missing)")
    slicer_runtime.run_module_tests("OrganCombo", [testName])


@pytest.mark.parametrize("testName", module_test_names(WIDGET_TESTS, "OrganComboWidgetTest"))
def test_widget(module_widget, slicer_runtime, testName):
    module_widget("OrganCombo")
    slicer_runtime.run_test_file(WIDGET_TESTS, [testName])


def test_panel_defaults_follow_the_paper_and_sections_are_collapsed(module_widget):
    widget = module_widget("OrganCombo")
    ui = widget.ui
    assert ui.thresholdSliderWidget.value == 0.5 and ui.batchSizeSpinBox.value == 4
    assert ui.advancedCollapsibleButton.collapsed and ui.trainCollapsibleButton.collapsed
    assert not ui.evaluateCollapsibleButton.collapsed
    assert [ui.deviceComboBox.itemText(i) for i in range(ui.deviceComboBox.count)] == [
        "Auto (GPU if available)", "CUDA (NVIDIA GPU)", "MPS (Apple GPU)", "CPU"]
    assert ui.trainingConfigComboBox.count == 3 and ui.trainingConfigComboBox.currentIndex == 0
    assert ui.outputSelector.noneDisplay == "Create new segmentation" and ui.outputSelector.currentNode() is None
    assert ui.progressBar.isHidden() and ui.trainingProgressBar.isHidden()
    if CATALOGUE.is_file():  # the bundled demo weights are the default model, described in the tooltip
        assert ui.modelComboBox.currentText == "organcombo-pet-demo"
        assert "not for clinical use" in ui.modelComboBox.toolTip and ui.applyButton.enabled is False  # no input
    parameters = widget._parameterNode
    assert parameters.device.value == "auto" and parameters.trainingTask.value == "pet"
    assert parameters.epochs == 50
    ui.trainingConfigComboBox.setCurrentIndex(1)  # MRI: the epochs follow the configuration's default
    assert parameters.trainingTask.value == "mri" and ui.epochsSpinBox.value == 50


def test_errors_reach_the_user_through_error_display(module_widget, slicer_runtime, slicer_messages, tmp_path):
    import slicer
    from mednets import mrml
    from mednets.image import Volume

    widget = module_widget("OrganCombo")
    _selectTinyModel(widget, tmp_path)
    constant = mrml.new_volume_node(Volume(np.ones((16, 16, 16), np.float32)), slicer.mrmlScene, "Flat")
    widget.ui.inputSelector.setCurrentNode(constant)
    widget.ui.applyButton.click()
    slicer_runtime.pump_events(until=lambda: not widget.isRunning(), timeout=30)
    errors = [m.text for m in slicer_messages if m.kind == "error"]
    assert errors == ["Segmentation failed: The image is constant (every voxel is 1); there is nothing to segment"]
    assert widget.ui.statusLabel.text == "Error: The image is constant (every voxel is 1); there is nothing to segment"


def test_scene_close_during_a_run_cancels_it_and_adds_nothing(module_widget, tmp_path):
    """Closing the scene while the segmentation child runs ends the child and adds nothing."""
    import slicer
    from mednets import mrml
    from mednets.image import Volume
    from slicer_test_runtime.jobs import wait_until

    widget = module_widget("OrganCombo")
    _selectTinyModel(widget, tmp_path)
    image = np.random.default_rng(0).random((160, 96, 96)).astype(np.float32)  # many windows: runs for seconds
    volume = mrml.new_volume_node(Volume(image, spacing=(4.0, 4.0, 4.0)), slicer.mrmlScene, "Noise")
    widget.ui.inputSelector.setCurrentNode(volume)
    widget.ui.batchSizeSpinBox.setValue(1)
    widget.ui.applyButton.click()
    job = widget.jobs.job("segmentation")
    log = job.folder / "stdout.log"
    wait_until(lambda: not widget.isRunning() or (log.exists() and log.stat().st_size > 0), 60)
    assert widget.isRunning(), widget.ui.statusLabel.text
    slicer.mrmlScene.Clear(0)
    assert not widget.isRunning()
    assert job.returncode is not None  # the child has ended
    assert slicer.util.getNodesByClass("vtkMRMLSegmentationNode") == []
    assert "Cancelled" in widget.ui.statusLabel.text
    assert widget.ui.applyButton.text == "Apply"
    assert not job.folder.exists()


def test_table_view_stand_in_shows_and_follows_a_table_node(mrml_scene):
    import qt
    import slicer
    from mednets import mrml

    view = slicer.qMRMLTableView()
    view.setMRMLScene(slicer.mrmlScene)
    table = mrml.new_table_node({"organ": ["brain", "heart"], "Dice": [0.9, 0.75]}, scene=slicer.mrmlScene,
                                name="metrics")
    view.setMRMLTableNode(table)
    assert view.mrmlTableNode() is table
    model = view.tableModel()
    assert (model.rowCount(), model.columnCount()) == (2, 2)
    assert [model.headerData(c, qt.Qt.Horizontal) for c in range(2)] == ["organ", "Dice"]
    assert model.item(1, 0).text() == "heart" and float(model.item(1, 1).text()) == 0.75
    table.GetTable().GetColumn(1).SetValue(1, 0.5)
    table.Modified()
    assert float(model.item(1, 1).text()) == 0.5
    view.setTransposed(True)
    assert (model.rowCount(), model.columnCount()) == (2, 2) and model.item(0, 1).text() == "heart"
    view.setMRMLTableNode(None)
    assert model.rowCount() == 0 and view.mrmlTableNode() is None


@pytest.mark.parametrize("task, spatialDims", [("ultrasound", 2), ("mri", 3)])
def test_logic_runs_the_mri_and_2d_ultrasound_configurations(slicer_runtime, mrml_scene, tmp_path, task, spatialDims):
    """The paper's other two tasks through the same Logic: a 2D ultrasound frame (a single-slice volume, 2D network)
    and a 3D prostate MRI (resampled to the task's spacing and back). Untrained seeded networks: this checks the
    data path (model loading by task, resampling, 2D/3D dispatch, segment naming, output grid), not accuracy."""
    import slicer
    import torch

    slicer_runtime.load_module(MODULE_FILE)
    import OrganCombo
    import OrganComboLib
    from mednets import mrml
    from mednets.checkpoints import save_checkpoint
    from mednets.image import Volume
    from mednets.phantoms import mri_prostate_phantom, ultrasound_lv_phantom
    from OrganComboLib.configs import get_config
    from OrganComboLib.training import checkpoint_metadata

    config = get_config(task).replace(spatial_dims=spatialDims)
    overrides = {"in_channels": 1, "out_channels": config.num_classes, "spatial_dims": spatialDims,
                 "base_channels": 4}
    torch.manual_seed(0)
    checkpoint = tmp_path / f"{task}-untrained.safetensors"
    save_checkpoint(checkpoint, OrganComboLib.build_model("combo_net", **overrides),
                    checkpoint_metadata(config, overrides, "untrained test network"))
    phantom = ultrasound_lv_phantom(seed=1) if task == "ultrasound" else mri_prostate_phantom(seed=1)
    image = phantom.image[np.newaxis] if phantom.image.ndim == 2 else phantom.image
    spacing = (1.0, *phantom.spacing) if len(phantom.spacing) == 2 else tuple(phantom.spacing)
    volumeNode = mrml.new_volume_node(Volume(image, spacing=spacing), slicer.mrmlScene, f"{task} phantom")

    segmentationNode = OrganCombo.OrganComboLogic().run(volumeNode, model=str(checkpoint), device="cpu")

    segmentation = segmentationNode.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    assert segmentation.GetNthSegment(0).GetName() == config.class_names[0]
    assert segmentationNode.GetName() == f"{task} phantom organs"
    labels = mrml.case_from_nodes(volumeNode, segmentationNode, config.class_names, allow_missing=True).label
    assert labels.shape == image.shape  # the result lies on the input's grid
