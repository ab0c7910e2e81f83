"""AxillaryLNDetect, the scripted module, run unchanged under pytest through the Slicer test runtime.

Covers: loading the module file as Slicer does, its own ``AxillaryLNDetectTest`` (logic level), and the widget: CT
phantom in, Apply, a point list of lymph nodes + a segmentation with the detections and the VOI; Evaluate with
reference points fills a FROC table and a plot chart (and a PNG in the panel); bad input reaches errorDisplay.
Without bundled demo weights the tests use an untrained tiny detector (AxillaryLNDetectLib.demo.make_test_detector).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from slicer_test_runtime import module_test_names

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "AxillaryLNDetect"
MODULE_FILE = MODULE_DIR / "AxillaryLNDetect.py"


@pytest.fixture(autouse=True)
def _isolated_model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNETS_CACHE_DIR", str(tmp_path / "mednets-cache"))


def _phantomNodes():
    import slicer
    from mednets import mrml
    from mednets.image import Volume
    from mednets.phantoms.axilla_ct import axilla_ct_phantom

    case = axilla_ct_phantom(seed=21, shape=(32, 48, 96), spacing=(4.0, 4.0, 4.0), node_diameter_mm=(8.0, 20.0))
    volume = Volume(case.image, spacing=case.spacing, directions_ras=case.extra["directions_ras"])
    volumeNode = mrml.new_volume_node(volume, slicer.mrmlScene, "Axilla")
    reference = mrml.new_point_list_node(volume.kji_to_ras(case.extra["centres_kji"]),
                                         descriptions=[f"diameter={d:.1f}" for d in case.extra["short_axis_mm"]],
                                         scene=slicer.mrmlScene, name="Reference nodes")
    return volumeNode, reference, case


def _selectTestDetector(widget, tmp_path):
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))
    from AxillaryLNDetectLib.demo import make_test_detector

    detector = make_test_detector(tmp_path)
    widget.logic.trainingOutputFolders.append(str(Path(detector.ln.path).parent))
    widget.refreshModels(selectPath=detector.ln.path)
    assert widget.ui.modelComboBox.currentText == detector.name
    return detector


def test_module_file_is_loaded_as_slicer_loads_it(slicer_runtime, mrml_scene):
    import slicer

    pythonModule = slicer_runtime.load_module(MODULE_FILE)
    module = slicer.util.getModule("AxillaryLNDetect")
    assert sys.modules["AxillaryLNDetect"] is pythonModule
    assert module.title == "Axillary LN Detect" and "Segmentation" in module.categories
    assert not module.icon.isNull()
    assert "AxillaryLNDetect" in slicer.selfTests


def test_sample_data_is_offered_offline_with_checksums(slicer_runtime, mrml_scene, monkeypatch, tmp_path):
    """At start-up the module registers its bundled CT phantom with Slicer's Sample Data module; the file:// sources
    download (copy) offline, match their SHA-256 and load as the seeded phantom and its reference nodes (centre and
    ``diameter=<mm>`` per point). The demo detector run through the Logic on the sample finds its nodes: Evaluate
    against the bundled reference points gives the FROC."""
    import slicer
    from slicer_test_runtime.sample_data import capture_sample_registrations, fetch_registered_files, registration

    registered = capture_sample_registrations(monkeypatch)
    module = slicer_runtime.load_module(MODULE_FILE)
    slicer.app.startupCompleted.emit()

    arguments = registration(registered, "AxillaryLNDetectCTPhantom")
    assert arguments["loadFileType"] == ["VolumeFile", "MarkupsFile"]
    loaded = fetch_registered_files(arguments, tmp_path, max_bytes=2_000_000)
    volumeNode = slicer.util.loadVolume(str(loaded[0]))
    referenceNode = slicer.util.loadMarkups(str(loaded[1]))

    from mednets import mrml
    from AxillaryLNDetectLib.inputs import parse_diameter_mm
    from AxillaryLNDetectLib.samples import reference_descriptions, sample_phantom, sample_volume

    # the files hold what write_sample_files makes from the seed (python -m AxillaryLNDetectLib.samples)
    phantom = sample_phantom()
    volume = sample_volume(phantom)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(volumeNode), volume.array)
    np.testing.assert_allclose(mrml.volume_from_node(volumeNode).ijk_to_ras, volume.ijk_to_ras, atol=1e-9)
    points, _labels, descriptions = mrml.points_from_markups(referenceNode)
    np.testing.assert_allclose(points, volume.kji_to_ras(phantom.extra["centres_kji"]), atol=1e-6)
    assert descriptions == reference_descriptions(phantom)
    np.testing.assert_allclose([parse_diameter_mm(d, 0.0) for d in descriptions], phantom.extra["short_axis_mm"],
                               atol=0.05)

    # the bundled demo detector on the sample, evaluated against the bundled reference points
    logic = module.AxillaryLNDetectLogic()
    detections, _segmentation = logic.run(volumeNode, device="cpu")
    metrics, _table, _chart = logic.evaluate(volumeNode, detections, referencePoints=referenceNode)
    overall = metrics["all"]
    assert overall["targets"] == len(descriptions)
    # measured (CPU, 1 thread, 2026-12-01): 4 of 5 nodes detected, 2 false positives, sensitivity 0.8 at 1 and 2 FP
    assert overall["detected"] >= 3 and overall["false_positives"] <= 4
    assert overall["sensitivity_at"][2.0] >= 0.6


@pytest.mark.parametrize("testName", module_test_names(MODULE_FILE))
def test_module_self_test(slicer_runtime, mrml_scene, testName):
    slicer_runtime.load_module(MODULE_FILE)
    slicer_runtime.run_module_tests("AxillaryLNDetect", [testName])


def test_widget_apply_then_evaluate_with_reference_points(module_widget, slicer_runtime, tmp_path):
    import slicer
    from mednets import mrml

    widget = module_widget("AxillaryLNDetect")
    ui = widget.ui
    assert ui.voiThresholdSliderWidget.value == 0.5 and ui.lnThresholdSliderWidget.value == 0.5
    assert ui.advancedCollapsibleButton.collapsed and ui.trainCollapsibleButton.collapsed
    _selectTestDetector(widget, tmp_path)
    volumeNode, reference, case = _phantomNodes()
    ui.inputSelector.setCurrentNode(volumeNode)
    ui.deviceComboBox.setCurrentIndex(3)  # CPU
    assert ui.applyButton.enabled
    before = len(slicer.util.getNodesByClass("vtkMRMLSegmentationNode"))
    ui.applyButton.click()
    assert widget.isRunning() and ui.applyButton.text == "Cancel"
    slicer_runtime.pump_events(until=lambda: not widget.isRunning(), timeout=120)
    assert "lymph-node candidate" in ui.statusLabel.text, ui.statusLabel.text
    points = widget._parameterNode.resultPoints
    assert points is not None and points.GetName() == "Axilla lymph nodes"
    segmentations = slicer.util.getNodesByClass("vtkMRMLSegmentationNode")
    assert len(segmentations) == before + 1
    segmentation = points.GetNodeReference("AxillaryLNDetect.Segmentation")
    names = {segmentation.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(segmentation.GetSegmentation().GetNumberOfSegments())}
    assert "lymph node" in names
    # the VOI segment (the untrained test detector marks everything as VOI; a trained one the axillae)
    if "axillary VOI" in names:
        labels, _ = mrml.labelmap_from_segmentation(
            segmentation, volumeNode, [segmentation.GetSegmentation().GetSegmentIdBySegmentName("axillary VOI")])
        assert labels.any()
    for i in range(points.GetNumberOfControlPoints()):
        assert "confidence=" in points.GetNthControlPointDescription(i)

    ui.referencePointsSelector.setCurrentNode(reference)
    assert ui.evaluateButton.enabled
    ui.evaluateButton.click()
    slicer_runtime.pump_events(until=lambda: not widget.isEvaluating(), timeout=60)
    table = widget.lastTableNode
    assert table is not None, ui.evaluateStatusLabel.text
    rows = mrml.table_to_rows(table)
    assert [row["group"] for row in rows] == ["all", "<5mm", ">=5mm", ">=10mm"]
    assert int(rows[0]["lymph nodes"]) == int(case.labels.max())
    chart = widget.lastPlotChartNode
    assert chart.IsA("vtkMRMLPlotChartNode") and chart.GetNumberOfPlotSeriesNodes() >= 1
    series = chart.GetNthPlotSeriesNode(0)
    assert series.GetTableNode() is not None and series.GetXColumnName().endswith("FPs/volume")
    assert not ui.metricsTableView.isHidden() and not ui.frocPlotLabel.isHidden()
    assert "lymph nodes detected" in ui.evaluateStatusLabel.text


def test_widget_errors_reach_the_user(module_widget, slicer_runtime, slicer_messages, tmp_path):
    import slicer
    from mednets import mrml
    from mednets.image import Volume

    widget = module_widget("AxillaryLNDetect")
    _selectTestDetector(widget, tmp_path)
    flat = mrml.new_volume_node(Volume(np.full((16, 16, 16), 40.0, np.float32)), slicer.mrmlScene, "Flat")
    widget.ui.inputSelector.setCurrentNode(flat)
    widget.ui.applyButton.click()
    slicer_runtime.pump_events(until=lambda: not widget.isRunning(), timeout=30)
    errors = [m.text for m in slicer_messages if m.kind == "error"]
    assert errors and "constant" in errors[-1]
    assert widget.ui.statusLabel.text.startswith("Error: The image is constant")


def test_logic_evaluate_from_saved_points_and_a_reference_segmentation(slicer_runtime, mrml_scene):
    """Evaluate without the session's cached blobs (e.g. a reloaded scene): candidates are spheres from the points'
    descriptions; the reference is a segmentation (one blob per node)."""
    import slicer
    from mednets import mrml

    module = slicer_runtime.load_module(MODULE_FILE)
    logic = module.AxillaryLNDetectLogic()
    volumeNode, referencePoints, case = _phantomNodes()
    volume = mrml.volume_from_node(volumeNode)
    centres = volume.kji_to_ras(case.extra["centres_kji"])
    # detections: every node but the last (high confidence) + one false positive far away (low confidence)
    points = np.vstack([centres[:-1], volume.kji_to_ras([[2.0, 2.0, 2.0]])])
    descriptions = [f"confidence=0.9; short_axis_mm={d:.1f}" for d in case.extra["short_axis_mm"][:-1]]
    descriptions.append("confidence=0.3; short_axis_mm=6.0")
    detections = mrml.new_point_list_node(points, descriptions=descriptions, scene=slicer.mrmlScene, name="Saved")
    segmentation = mrml.new_segmentation_node((case.labels > 0).astype(np.uint8), volumeNode,
                                              [(1, "lymph node", (1.0, 1.0, 0.0))], name="Reference seg")
    count = int(case.labels.max())
    for reference in ({"referencePoints": referencePoints}, {"referenceSegmentation": segmentation}):
        metrics, table, chart = logic.evaluate(volumeNode, detections, **reference)
        overall = metrics["all"]
        assert overall["targets"] == count and overall["detected"] == count - 1
        assert overall["false_positives"] == 1
        assert overall["sensitivity_at"][1.0] == pytest.approx((count - 1) / count)
        assert chart.GetNumberOfPlotSeriesNodes() >= 1
    with pytest.raises(ValueError, match="reference"):
        logic.evaluate(volumeNode, detections)


def test_logic_add_case_then_train_lists_the_new_detector(slicer_runtime, mrml_scene, tmp_path):
    """'Add current case to training set' writes CT + annotations; train() trains both stages (a few iterations of a
    tiny configuration) and the detector appears among the available models."""
    import slicer

    module = slicer_runtime.load_module(MODULE_FILE)
    logic = module.AxillaryLNDetectLogic()
    volumeNode, referencePoints, case = _phantomNodes()
    folder = tmp_path / "cases"
    for _ in range(2):
        image, nodes = logic.addCaseToTrainingSet(volumeNode, referencePoints, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["Axilla_2_image.nrrd", "Axilla_2_nodes.json",
                                                        "Axilla_image.nrrd", "Axilla_nodes.json"]
    changes = {"model_overrides": {"widths": (2, 4, 8)}, "input_size": 48, "inference_size": 64,
               "stage1_spacing": 8.0, "stage2_spacing": 4.0, "voi_opening_size": 3, "shell_size": 3,
               "training": {"iterations": 2, "batch_size": 2,
                            "foreground_fraction": 0.5, "optimizer": {"name": "adam", "lr": 1e-3},
                            "schedule": {"name": "plateau", "factor": 0.5, "patience": 10}, "validate_every": 2,
                            "early_stopping_patience": 50, "monitor": "jaccard", "mode": "max",
                            "augmentation": {"rotation_sd_deg": 5.0, "zoom_range": 0.2, "flip_sagittal": True,
                                             "noise_sd_hu": 5.0}}}
    output = tmp_path / "runs" / "myDetector"
    results = logic.train(folder, output, iterations=2, device="cpu", configChanges=changes, fineTune=True)
    assert results["voi"].iterations == 2 and results["ln"].iterations == 2
    assert "myDetector" in [d.name for d in logic.availableModels()]


def test_widget_add_case_then_train_button_selects_the_new_detector(module_widget, slicer_runtime, tmp_path):
    """The Train section through its buttons: 'Add current case' twice, 'Start training' (a tiny configuration, 2
    iterations per stage, in the background), the curve and status follow, and the new detector gets selected."""
    widget = module_widget("AxillaryLNDetect")
    ui = widget.ui
    volumeNode, reference, _case = _phantomNodes()
    ui.inputSelector.setCurrentNode(volumeNode)
    ui.referencePointsSelector.setCurrentNode(reference)
    ui.deviceComboBox.setCurrentIndex(3)  # CPU
    folder, output = tmp_path / "cases", tmp_path / "runs" / "widgetDetector"
    ui.trainingFolderPathLineEdit.currentPath = str(folder)
    ui.trainingOutputPathLineEdit.currentPath = str(output)
    ui.iterationsSpinBox.value = 2
    for _ in range(2):
        ui.addCaseButton.click()
    assert "the training folder has 2 cases" in ui.trainingStatusLabel.text, ui.trainingStatusLabel.text
    from AxillaryLNDetectLib.configs import get_config

    recipe = dict(get_config("cpu_small").training, batch_size=2, validate_every=2)
    widget.trainingOptions = {"configName": "cpu_small", "configChanges": {
        "model_overrides": {"widths": (2, 4, 8)}, "input_size": 48, "inference_size": 64, "stage1_spacing": 8.0,
        "stage2_spacing": 4.0, "voi_opening_size": 3, "shell_size": 3, "training": recipe}}
    assert ui.trainButton.enabled
    ui.trainButton.click()
    assert widget.isTraining() and ui.trainButton.text == "Cancel training"
    slicer_runtime.pump_events(until=lambda: not widget.isTraining(), timeout=300)
    assert "Training finished" in ui.trainingStatusLabel.text, ui.trainingStatusLabel.text
    assert ui.trainButton.text == "Start training" and ui.trainingProgressBar.isHidden()
    assert (output / "voi").is_dir() and (output / "ln").is_dir()
    assert ui.modelComboBox.currentText == "widgetDetector"
