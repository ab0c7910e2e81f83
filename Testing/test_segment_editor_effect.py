"""The "MedNets" Segment Editor effect (SegmentEditorMedNets): registration, local segmentation around a point and
inside a box with the bundled OrganCombo demo weights on the bundled PET sample, undo, other segments untouched, errors;
and its NumPy region helpers against hand-made cases. The effect runs its network as a child process
(``python -m SegmentEditorMedNetsLib segment``): no Python thread in this process, a SIGKILLed child changes nothing.
Loading goes through the runtime's Slicer-exact ``setPythonSource`` (module = the file's folder name).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EFFECT_MODULE = ROOT / "SegmentEditorMedNets" / "SegmentEditorMedNets.py"
ORGANCOMBO = ROOT / "OrganCombo" / "OrganCombo.py"
AXILLARY = ROOT / "AxillaryLNDetect" / "AxillaryLNDetect.py"
SAMPLE = ROOT / "OrganCombo" / "Resources" / "SampleData"
ORGANS = ["brain", "heart", "left kidney", "right kidney", "bladder"]


# ------------------------------------------------------------------------------------------------ regions (NumPy)
def _regions():
    if str(EFFECT_MODULE.parent) not in sys.path:
        sys.path.insert(0, str(EFFECT_MODULE.parent))
    from SegmentEditorMedNetsLib import regions

    return regions


def _grid(shape=(10, 12, 14), spacing=(2.0, 1.0, 1.0)):
    from mednets.image import Volume, compose_ijk_to_ras

    return Volume(np.zeros(shape, np.float32), compose_ijk_to_ras(spacing, (-5.0, 3.0, 10.0)))


def test_box_around_a_point_is_the_cube_of_its_radius_clipped_to_the_image():
    regions = _regions()
    volume = _grid()
    centre = volume.kji_to_ras([5, 6, 7])
    assert regions.box_around_point(volume, centre, 2.0) == ((4, 4, 5), (7, 9, 10))
    assert regions.box_around_point(volume, volume.kji_to_ras([0, 0, 0]), 3.0) == ((0, 0, 0), (2, 4, 4))
    with pytest.raises(ValueError, match="does not overlap"):
        regions.box_around_point(volume, volume.kji_to_ras([50, 50, 50]), 2.0)
    with pytest.raises(ValueError, match="radius must be positive"):
        regions.box_around_point(volume, centre, 0.0)


def test_rotated_roi_gets_its_bounding_box_and_only_its_inside_is_kept():
    regions = _regions()
    volume = _grid(shape=(20, 20, 20), spacing=(1.0, 1.0, 1.0))
    angle = np.pi / 4
    axes = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1.0]])
    centre = volume.kji_to_ras([10, 10, 10])
    box = regions.box_of_roi(volume, centre, (6.0, 2.0, 4.0), axes)
    crop = volume.crop(*box)
    inside = regions.inside_roi(crop, centre, (6.0, 2.0, 4.0), axes)
    assert 0 < inside.sum() < inside.size  # a rotated box does not fill its bounding box
    points = crop.kji_to_ras(np.argwhere(inside))
    local = (points - centre) @ axes
    assert np.all(np.abs(local) <= np.array([3.0, 1.0, 2.0]) + 1e-6)


def test_component_at_point_prefers_the_clicked_one_then_the_nearest_within_the_radius():
    regions = _regions()
    crop = _grid(shape=(1, 20, 20), spacing=(1.0, 1.0, 1.0))
    mask = np.zeros(crop.shape, bool)
    mask[0, 2:5, 2:5] = True      # A
    mask[0, 12:16, 12:16] = True  # B
    at_a = regions.component_at_point(mask, crop, crop.kji_to_ras([0, 3, 3]), 5.0)
    assert at_a.sum() == 9 and at_a[0, 3, 3]
    near_b = regions.component_at_point(mask, crop, crop.kji_to_ras([0, 10, 10]), 5.0)
    assert near_b.sum() == 16 and near_b[0, 12, 12]
    assert not regions.component_at_point(mask, crop, crop.kji_to_ras([0, 8, 18]), 2.0).any()


# ------------------------------------------------------------------------------------------------ the effect
@pytest.fixture
def effect(slicer_runtime, mrml_scene):
    """The registered effect, set up on the PET sample with an empty target segment and another, painted one."""
    import slicer

    from mednets import mrml
    from mednets.io import read_volume

    slicer_runtime.load_module(ORGANCOMBO)  # puts OrganComboLib on sys.path, as an installed module would
    slicer_runtime.load_module(AXILLARY)
    slicer_runtime.load_module(EFFECT_MODULE)
    slicer.app.startupCompleted.emit()
    adaptor = slicer.qSlicerSegmentEditorEffectFactory.instance().effectByName("MedNets")
    assert adaptor is not None
    volume = read_volume(SAMPLE / "OrganComboPETPhantom.nrrd")
    reference, _grid_volume = mrml.read_segmentation_file(SAMPLE / "OrganComboPETPhantom-reference.seg.nrrd", ORGANS)
    volumeNode = mrml.new_volume_node(volume, slicer.mrmlScene, "PET")
    labels = np.zeros(volume.shape, np.uint8)
    labels[reference == 1] = 2  # the "other" segment holds the brain; the target segment starts empty
    segmentation = mrml.new_segmentation_node(labels, volumeNode, [(1, "target", (1.0, 0.0, 0.0)),
                                                                   (2, "other", (0.0, 1.0, 0.0))], name="edit")
    editor = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editor.SetAndObserveSegmentationNode(segmentation)
    editor.SetAndObserveSourceVolumeNode(volumeNode)
    segmentIds = {segmentation.GetSegmentation().GetNthSegment(i).GetName():
                  segmentation.GetSegmentation().GetNthSegmentID(i) for i in range(2)}
    editor.SetSelectedSegmentID(segmentIds["target"])
    adaptor.setParameterSetNode(editor)
    adaptor.setupOptionsFrame()
    python = adaptor.self()
    python.deviceComboBox.setCurrentIndex(python.deviceComboBox.findData("cpu"))
    return dict(adaptor=adaptor, effect=python, volume=volume, volumeNode=volumeNode, reference=reference,
                segmentation=segmentation, segmentIds=segmentIds)


def _segment(setup, name: str) -> np.ndarray:
    from mednets import mrml

    labels, _ = mrml.labelmap_from_segmentation(setup["segmentation"], setup["volumeNode"],
                                                [setup["segmentIds"][name]])
    return labels > 0


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def test_effect_is_registered_and_offers_the_installed_networks(effect):
    python = effect["effect"]
    assert effect["adaptor"].name == "MedNets"
    assert [method.module for method in python.methods][0] == "OrganCombo"
    assert [python.structureComboBox.itemText(i) for i in range(python.structureComboBox.count)] == ORGANS
    assert "not for clinical use" in python.helpText()


def test_click_near_the_heart_adds_the_heart_to_the_selected_segment_only(effect):
    python, volume, reference = effect["effect"], effect["volume"], effect["reference"]
    other_before = _segment(effect, "other")
    python.structureComboBox.setCurrentIndex(ORGANS.index("heart"))
    python.regionComboBox.setCurrentIndex(python.regionComboBox.findData("point"))
    python.radiusSpinBox.setValue(70.0)  # the heart phantom is 120 mm long
    heart = reference == ORGANS.index("heart") + 1
    centre = volume.kji_to_ras(np.argwhere(heart).mean(axis=0))
    added = python.applyAtPoint(centre + np.array([5.0, 0.0, 0.0]), wait=True)  # a click near, not on, the centre

    target = _segment(effect, "target")
    assert added == target.sum() > 0, python.statusLabel.text
    assert _dice(target, heart) > 0.6  # the demo network's heart (held-out Dice 0.80 on whole volumes)
    assert not np.logical_and(target, reference == ORGANS.index("left kidney") + 1).any()  # one component only
    np.testing.assert_array_equal(_segment(effect, "other"), other_before)  # never touches other segments
    assert effect["adaptor"].undoStateCount() == 1 and "Added" in python.statusLabel.text
    assert effect["adaptor"].undo()  # the editor's Undo
    assert not _segment(effect, "target").any()
    np.testing.assert_array_equal(_segment(effect, "other"), other_before)


def test_box_limits_the_result_to_the_roi(effect):
    """Through the Apply button: the network runs as a child process (no Python thread starts here), Apply reads
    Cancel while it runs, the QTimer delivers the result."""
    import slicer
    from slicer_test_runtime.jobs import no_python_threads, wait_until

    python, volume, reference = effect["effect"], effect["volume"], effect["reference"]
    python.structureComboBox.setCurrentIndex(ORGANS.index("bladder"))
    bladder = reference == ORGANS.index("bladder") + 1
    indices = np.argwhere(bladder)
    low, high = volume.kji_to_ras(indices.min(axis=0)), volume.kji_to_ras(indices.max(axis=0))
    roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "half bladder")
    centre = (low + high) / 2.0
    size = np.abs(high - low) + 20.0
    size[0] = 30.0  # only part of the bladder along R-L
    roi.SetCenterWorld(*centre)
    roi.SetSizeWorld(*size)
    python.roiSelector.setCurrentNode(roi)
    with no_python_threads():
        python.applyButton.click()
        assert python.isRunning() and python.applyButton.text == "Cancel"
        assert python.job().pid is not None  # a child process, not a thread
        wait_until(lambda: not python.isRunning())
    assert python.applyButton.text == "Apply"
    assert python.lastChangedVoxels > 0, python.statusLabel.text

    target = _segment(effect, "target")
    assert target.any(), python.statusLabel.text
    points = volume.kji_to_ras(np.argwhere(target))
    assert np.all(np.abs(points[:, 0] - centre[0]) <= 15.0 + 1e-6)  # nothing outside the box
    assert np.logical_and(target, bladder).sum() / target.sum() > 0.6


def test_missing_segment_is_reported_and_nothing_changes(effect, slicer_runtime):
    python = effect["effect"]
    editor = effect["adaptor"].parameterSetNode()
    editor.SetSelectedSegmentID("")
    other_before = _segment(effect, "other")
    assert python.applyAtPoint(effect["volume"].kji_to_ras([10, 10, 10]), wait=True) == 0
    assert not python.isRunning()  # rejected before any child starts
    assert python.statusLabel.text.startswith("Error: Select a source volume and a segment")
    assert any("MedNets effect" in text for text in slicer_runtime.message_texts("error"))
    assert effect["adaptor"].undoStateCount() == 0
    np.testing.assert_array_equal(_segment(effect, "other"), other_before)


def test_module_self_test_runs(slicer_runtime, mrml_scene):
    slicer_runtime.load_module(EFFECT_MODULE)
    slicer_runtime.run_module_tests("SegmentEditorMedNets")


def test_click_on_a_lymph_node_adds_that_node_with_the_lymph_node_network(effect):
    """AxillaryLNDetect in the effect: its stage-2 network runs around the click (the click replaces the VOI stage);
    the component at the click is added, on a CT phantom of the demo detector's grid (2 mm) that it never saw.
    Measured: 472 voxels, Dice 0.885 to the clicked node, under 10 s."""
    import slicer

    from mednets import mrml
    from mednets.image import Volume
    from mednets.phantoms.axilla_ct import axilla_ct_phantom
    from AxillaryLNDetectLib.demo import PHANTOM_GRID

    python, adaptor = effect["effect"], effect["adaptor"]
    case = axilla_ct_phantom(seed=977, **PHANTOM_GRID)
    volume = Volume(case.image, spacing=case.spacing, directions_ras=case.extra["directions_ras"])
    volumeNode = mrml.new_volume_node(volume, slicer.mrmlScene, "Axilla CT")
    segmentation = mrml.new_segmentation_node(np.zeros(volume.shape, np.uint8), volumeNode,
                                              [(1, "node", (1.0, 1.0, 0.0))], name="nodes")
    editor = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editor.SetAndObserveSegmentationNode(segmentation)
    editor.SetAndObserveSourceVolumeNode(volumeNode)
    editor.SetSelectedSegmentID(segmentation.GetSegmentation().GetNthSegmentID(0))
    adaptor.setParameterSetNode(editor)
    modules = [method.module for method in python.methods]
    python.methodComboBox.setCurrentIndex(modules.index("AxillaryLNDetect"))
    assert python.structureComboBox.currentText == "lymph node"
    python.regionComboBox.setCurrentIndex(python.regionComboBox.findData("point"))
    python.radiusSpinBox.setValue(20.0)
    sizes = np.bincount(case.labels.ravel())[1:]
    target_label = int(np.argmax(sizes)) + 1  # the largest node
    node = case.labels == target_label
    added = python.applyAtPoint(volume.kji_to_ras(np.argwhere(node).mean(axis=0)), wait=True)

    labels, _ = mrml.labelmap_from_segmentation(segmentation, volumeNode)
    found = labels > 0
    assert added == found.sum() > 0, python.statusLabel.text
    print(f"lymph node by click: {added} voxels, Dice to the true node {_dice(found, node):.3f}")
    assert _dice(found, node) > 0.5, _dice(found, node)
    assert not np.logical_and(found, (case.labels > 0) & ~node).any()  # only the clicked node


def test_sigkilled_child_changes_nothing_and_the_message_is_shown(effect):
    """The child is SIGKILLed (as the OOM killer would) once it wrote its first line: scene fingerprint, segments and
    undo history unchanged, the job folder removed, the message in the options frame."""
    import slicer
    from slicer_test_runtime.jobs import kill_job_child, scene_fingerprint, wait_until

    python, volume, reference = effect["effect"], effect["volume"], effect["reference"]
    python.structureComboBox.setCurrentIndex(ORGANS.index("heart"))
    python.radiusSpinBox.setValue(70.0)
    target_before, other_before = _segment(effect, "target"), _segment(effect, "other")
    scene_fingerprint()  # the first call's label-map export adds the subject hierarchy node (always there in Slicer)
    before = scene_fingerprint()
    heart = reference == ORGANS.index("heart") + 1
    assert python.applyAtPoint(volume.kji_to_ras(np.argwhere(heart).mean(axis=0))) == 0  # returns at once
    job = python.job()
    assert job is not None and python.applyButton.text == "Cancel"
    kill_job_child(job)
    wait_until(lambda: not python.isRunning())
    assert scene_fingerprint() == before
    np.testing.assert_array_equal(_segment(effect, "target"), target_before)
    np.testing.assert_array_equal(_segment(effect, "other"), other_before)
    assert effect["adaptor"].undoStateCount() == 0
    assert not job.folder.exists()
    assert python.statusLabel.text.startswith("Error:") and python.lastError, python.statusLabel.text
    print("killed child's message:", python.statusLabel.text)
    assert python.applyButton.text == "Apply"


def test_cli_bad_input_exits_2_with_a_plain_message(tmp_path):
    """The child's command line on its own (what batch runs): a region outside the image is a user error, status 2,
    with a JSON error line (what the effect shows)."""
    import json
    import subprocess

    from mednets.image import Volume
    from mednets.io import write_volume

    write_volume(Volume(np.zeros((4, 5, 6), np.float32)), tmp_path / "in.nrrd")
    environment = dict(__import__("os").environ)
    environment["PYTHONPATH"] = __import__("os").pathsep.join(
        [str(ROOT / "SegmentEditorMedNets"), str(ROOT / "OrganCombo"), str(ROOT / "MedNetsCore")])
    completed = subprocess.run([sys.executable, "-m", "SegmentEditorMedNetsLib", "--progress", "json", "segment",
                                "--method", "organcombo", "--structure", "heart", "--input", str(tmp_path / "in.nrrd"),
                                "--output", str(tmp_path / "out.nrrd"), "--region", "0,0,0,9,9,9",
                                "--point", "0,0,0"], capture_output=True, text=True, env=environment, timeout=300)
    assert completed.returncode == 2, completed.stderr
    errors = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    assert any(e.get("type") == "error" and "not inside the input image" in e["message"] for e in errors)
    assert not (tmp_path / "out.nrrd").exists()


# ------------------------------------------------------------------------------------------------ loading as Slicer
def _isolated_modules(*names):
    saved = {name: sys.modules.get(name) for name in names}

    def restore():
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module

    return restore


def test_effect_loads_with_slicers_setPythonSource_and_the_old_layout_fails(slicer_runtime, mrml_scene, tmp_path,
                                                                             capsys):
    """``setPythonSource`` as in qSlicerSegmentEditorScriptedEffect.cxx: the module is named after the file's folder.
    The shipped layout (SegmentEditorMedNetsEffect/SegmentEditorEffect.py) loads and registers; the old layout (the
    effect file inside SegmentEditorMedNetsLib/) becomes the module 'SegmentEditorMedNetsLib' itself and fails."""
    import shutil

    import slicer
    import qSlicerSegmentationsEditorEffectsPythonQt as effects

    slicer_runtime.load_module(EFFECT_MODULE)
    source = ROOT / "SegmentEditorMedNets" / "SegmentEditorMedNetsEffect" / "SegmentEditorEffect.py"
    adaptor = effects.qSlicerSegmentEditorScriptedEffect(None)
    assert adaptor.setPythonSource(str(source))
    assert type(adaptor.self()).__module__ == "SegmentEditorMedNetsEffect"
    assert sys.modules["SegmentEditorMedNetsEffect"].__file__ == str(source)
    assert slicer.SegmentEditorMedNetsEffect is adaptor.self()
    assert adaptor.name == "MedNets"
    clone = adaptor.self().clone()  # setPythonSource(__file__) again: the loaded module's class is reused
    assert type(clone.self()) is type(adaptor.self())

    old = tmp_path / "SegmentEditorMedNets"
    shutil.copytree(ROOT / "SegmentEditorMedNets" / "SegmentEditorMedNetsLib", old / "SegmentEditorMedNetsLib")
    shutil.copy(source, old / "SegmentEditorMedNetsLib" / "SegmentEditorEffect.py")
    # As at Slicer's start-up: the package is not imported yet (its submodules neither).
    package = [name for name in sys.modules if name.split(".")[0] == "SegmentEditorMedNetsLib"]
    restore = _isolated_modules(*package)
    try:
        for name in package:
            sys.modules.pop(name, None)
        broken = effects.qSlicerSegmentEditorScriptedEffect(None)
        assert not broken.setPythonSource(str(old / "SegmentEditorMedNetsLib" / "SegmentEditorEffect.py"))
        assert broken.self() is None
    finally:
        restore()
    assert "'SegmentEditorMedNetsLib' is not a package" in capsys.readouterr().err


def test_cancel_ends_the_child_within_2_s_and_changes_nothing(effect):
    """Apply reads Cancel while the child runs; pressing it after the child's first line ends it in under 2 s."""
    import time

    from slicer_test_runtime.jobs import scene_fingerprint, wait_until

    python, volume, reference = effect["effect"], effect["volume"], effect["reference"]
    python.structureComboBox.setCurrentIndex(ORGANS.index("heart"))
    python.regionComboBox.setCurrentIndex(python.regionComboBox.findData("point"))
    python.radiusSpinBox.setValue(70.0)
    target_before = _segment(effect, "target")
    scene_fingerprint()
    before = scene_fingerprint()
    python.pointSelector.setCurrentNode(None)
    python.applyAtPoint(volume.kji_to_ras(np.argwhere(reference == 2).mean(axis=0)))
    job = python.job()
    wait_until(lambda: (job.folder / "stdout.log").exists() and (job.folder / "stdout.log").stat().st_size > 0)
    started = time.monotonic()
    python.applyButton.click()  # "Cancel"
    wait_until(lambda: not python.isRunning(), timeout=10.0)
    latency = time.monotonic() - started
    print(f"effect cancel latency: {latency:.2f} s")
    assert latency < 2.0
    assert python.statusLabel.text == "Cancelled: nothing changed."
    assert scene_fingerprint() == before and effect["adaptor"].undoStateCount() == 0
    np.testing.assert_array_equal(_segment(effect, "target"), target_before)
    assert not job.folder.exists() and python.applyButton.text == "Apply"
