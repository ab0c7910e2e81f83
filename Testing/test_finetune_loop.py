"""The correction loop of issue 9, end to end through each module's panel: run the bundled model on a phantom, edit its
result (the edit is the phantom's truth, painted into the result segmentation as a user would in the Segment Editor),
'Add current case to training set', 'Fine-tune the selected model' for a few iterations, check that the model selector
now shows the new checkpoint, and re-run: the new result must be closer to the edit than the first one.

Each test states what it measured; they run on the CPU with the bundled demo weights (no download).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mednets.metrics import dice


@pytest.fixture(autouse=True)
def _isolated_model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNETS_CACHE_DIR", str(tmp_path / "mednets-cache"))


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _wait(slicer_runtime, busy, timeout: float) -> None:
    slicer_runtime.pump_events(until=lambda: not busy(), timeout=timeout)
    assert not busy(), f"still running after {timeout} s"


def _segment_labels(segmentationNode, volumeNode, names) -> np.ndarray:
    """Label map (k = k-th name) of a segmentation node on the volume's grid."""
    import slicer

    labels = np.zeros(slicer.util.arrayFromVolume(volumeNode).shape, np.uint8)
    segmentation = segmentationNode.GetSegmentation()
    for index, name in enumerate(names, start=1):
        segmentId = segmentation.GetSegmentIdBySegmentName(name)
        if segmentId:
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
            labels[mask > 0] = index
    return labels


def _paint_truth(segmentationNode, volumeNode, truth: np.ndarray, names) -> None:
    """What a user's correction in the Segment Editor leaves: each named segment now covers the true organ."""
    import slicer

    segmentation = segmentationNode.GetSegmentation()
    for index, name in enumerate(names, start=1):
        segmentId = segmentation.GetSegmentIdBySegmentName(name)
        slicer.util.updateSegmentBinaryLabelmapFromArray((truth == index).astype(np.uint8), segmentationNode,
                                                         segmentId, volumeNode)


def _mean_dice(labels: np.ndarray, reference: np.ndarray, count: int) -> float:
    return float(np.mean([dice(labels == k, reference == k) for k in range(1, count + 1)]))


# ------------------------------------------------------------------------------------------------------ OrganCombo
def test_organcombo_edit_add_finetune_and_rerun_is_closer_to_the_edit(module_widget, slicer_runtime, tmp_path,
                                                                     two_threads):
    import slicer
    from mednets import mrml
    from mednets.image import Volume
    from mednets.phantoms import pet_whole_body_phantom

    widget = module_widget("OrganCombo")
    ui, parameters = widget.ui, widget._parameterNode
    from OrganComboLib.configs import get_config

    organs = list(get_config("pet").class_names)
    assert widget._selectedModel() is not None and "demo" in widget._selectedModel().name.lower()
    demoModel = widget._selectedModel().name
    parameters.device = type(parameters.device)("cpu")
    ui.trainingFolderPathLineEdit.setCurrentPath(str(tmp_path / "cases"))
    ui.trainingOutputPathLineEdit.setCurrentPath(str(tmp_path / "runs" / "fine-tuned"))

    started = time.monotonic()
    cases = []
    for seed in (31, 32):
        phantom = pet_whole_body_phantom(seed=seed)
        volume = Volume(phantom.image, spacing=phantom.spacing, directions_ras=phantom.extra["directions_ras"])
        volumeNode = mrml.new_volume_node(volume, slicer.mrmlScene, f"PET case {seed}")
        ui.inputSelector.setCurrentNode(volumeNode)
        ui.applyButton.click()
        _wait(slicer_runtime, widget.isRunning, 300)
        result = parameters.resultSegmentation
        assert result is not None and result.GetName().startswith(f"PET case {seed}")
        before = _segment_labels(result, volumeNode, organs)
        _paint_truth(result, volumeNode, phantom.labels, organs)  # the user's correction
        edited = _segment_labels(result, volumeNode, organs)
        np.testing.assert_array_equal(edited, phantom.labels)
        parameters.referenceSegmentation = None  # 'Add current case' then takes the (edited) result
        ui.addCaseButton.click()
        cases.append((volumeNode, result, edited, _mean_dice(before, edited, len(organs))))
    assert "the training folder has 2 cases" in ui.trainingStatusLabel.text, ui.trainingStatusLabel.text

    ui.fineTuneCheckBox.setChecked(True)
    assert parameters.fineTune
    widget.trainingOptions = {"iterations": 150, "seed": 0}
    ui.trainButton.click()
    _wait(slicer_runtime, widget.isTraining, 900)
    assert "Training finished" in ui.trainingStatusLabel.text, ui.trainingStatusLabel.text
    newModel = widget._selectedModel()
    assert newModel.name != demoModel and Path(newModel.path).parent == tmp_path / "runs" / "fine-tuned"
    assert ui.modelComboBox.currentText == newModel.name

    report = []
    for volumeNode, editedNode, edited, diceBefore in cases:
        ui.inputSelector.setCurrentNode(volumeNode)
        ui.applyButton.click()
        _wait(slicer_runtime, widget.isRunning, 300)
        rerun = parameters.resultSegmentation
        assert rerun is not editedNode  # a new node: the user's edited segmentation is kept as it is
        np.testing.assert_array_equal(_segment_labels(editedNode, volumeNode, organs), edited)
        diceAfter = _mean_dice(_segment_labels(rerun, volumeNode, organs), edited, len(organs))
        report.append((volumeNode.GetName(), diceBefore, diceAfter))
    print(f"OrganCombo fine-tune loop ({time.monotonic() - started:.0f} s): "
          + "; ".join(f"{name}: mean Dice to the edit {a:.3f} -> {b:.3f}" for name, a, b in report))
    assert all(after > before + 0.02 for _name, before, after in report), report
