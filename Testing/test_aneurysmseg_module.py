"""AneurysmSeg, the scripted module, run unchanged under pytest through the Slicer test runtime.

Covers: loading the module file as Slicer does (title, icon, self-test registration), its own ``AneurysmSegTest``
(logic level; the demo-weights test needs ``Resources/Models/AneurysmSegModels.json``), the widget tests of
``AneurysmSeg/Testing/Python/AneurysmSegWidgetTest.py`` (Apply on a CTA phantom: segmentation + risk map + per-target
table; Evaluate: voxel/target/case metrics; bad input; cancel; add case + train), and the panel's defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
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


def test_sample_data_is_offered_offline_with_checksums(slicer_runtime, mrml_scene, monkeypatch, tmp_path):
    """At start-up the module registers its bundled CTA head phantom with Slicer's Sample Data module; the file://
    sources download (copy) offline, match their SHA-256 and load as the seeded phantom and its 'aneurysm' segment.
    The bundled demo weights run through the Logic on the sample, evaluated against the bundled reference."""
    import slicer
    from slicer_test_runtime.sample_data import capture_sample_registrations, fetch_registered_files, registration

    registered = capture_sample_registrations(monkeypatch)
    module = slicer_runtime.load_module(MODULE_FILE)
    slicer.app.startupCompleted.emit()

    arguments = registration(registered, "AneurysmSegCTAPhantom")
    assert arguments["loadFileType"] == ["VolumeFile", "SegmentationFile"]
    loaded = fetch_registered_files(arguments, tmp_path, max_bytes=1_000_000)
    volumeNode = slicer.util.loadVolume(str(loaded[0]))
    referenceNode = slicer.util.loadSegmentation(str(loaded[1]))

    from mednets import mrml
    from AneurysmSegLib.configs import ANEURYSM
    from AneurysmSegLib.samples import SAMPLE_ANEURYSMS, reference_labels, sample_phantom, sample_volume

    # the files hold what write_sample_files makes from the seed (python -m AneurysmSegLib.samples)
    phantom = sample_phantom()
    volume = sample_volume(phantom)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(volumeNode), volume.array)
    np.testing.assert_allclose(mrml.volume_from_node(volumeNode).ijk_to_ras, volume.ijk_to_ras, atol=1e-9)
    segmentation = referenceNode.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == [ANEURYSM.name]
    labels = mrml.case_from_nodes(volumeNode, referenceNode, names).label
    np.testing.assert_array_equal(labels, reference_labels(phantom))

    # the bundled demo weights on the sample, evaluated against the bundled reference
    outputs = module.AneurysmSegLogic().run(volumeNode, device="cpu")
    metrics, _table = module.AneurysmSegLogic().evaluate(outputs["segmentation"], referenceNode, volumeNode,
                                                         riskMapNode=outputs["riskMap"])
    # measured (CPU, 1 thread, 2026-12-01): both aneurysms found, no false positive, voxel DSC 0.82, AP 0.96
    assert metrics["target"]["tp"] + metrics["target"]["fn"] == SAMPLE_ANEURYSMS
    assert metrics["target"]["tp"] >= 1 and metrics["target"]["fp"] <= 1
    assert metrics["voxel"]["dsc"] >= 0.6


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
