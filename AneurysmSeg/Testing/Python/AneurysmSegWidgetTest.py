"""Widget tests of AneurysmSeg: what a user does in the module panel.

The same file runs inside 3D Slicer (ctest through ``slicer_add_python_unittest``) and under pytest with the test
runtime (``Testing/test_aneurysmseg_module.py``). It uses only the Slicer API, in PythonQt style.

The tests do not need the bundled demo weights: ``setUp`` writes a small, untrained GLIA-Net checkpoint (widths 4-32,
16-voxel windows) into a temporary folder, lists it through ``logic.trainingOutputFolders`` and selects it.
``MEDNETS_CACHE_DIR`` points to a temporary folder during the tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import unittest
from pathlib import Path

import numpy as np

import slicer
from mednets import mrml
from mednets.image import Volume
from mednets.jobs import ProcessJob
from mednets.phantoms import KJI_LPS_DIRECTIONS
from mednets.phantoms.cta_head import cta_head_phantom
from mednets.terminology import segment_specs

TIMEOUT_S = 120.0


def runtimeJobs():
    """``slicer_test_runtime.jobs`` under pytest; None inside 3D Slicer (the runtime is not there)."""
    try:
        from slicer_test_runtime import jobs
    except ImportError:
        return None
    return jobs


def noPythonThreads():
    jobs = runtimeJobs()
    return jobs.no_python_threads() if jobs is not None else contextlib.nullcontext([])
PHANTOM_SHAPE, PHANTOM_SPACING = (32, 40, 40), (2.0, 2.0, 2.0)


def waitUntil(condition, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} s")
        slicer.app.processEvents()
        time.sleep(0.01)


def tinyConfig():
    from AneurysmSegLib.configs import SMALL

    return SMALL.replace(model_overrides={"widths": (4, 8, 16, 32), "global_channels": 8},
                         patch_size=(16, 16, 16), global_size=(16, 16, 16), window_overlap=(8, 8, 8), jitter=4,
                         batch_size=2, min_target_voxels=0)


def writeSmallCheckpoint(path: Path) -> Path:
    """An untrained AneurysmSeg checkpoint of the tiny configuration (seeded)."""
    import torch

    import AneurysmSegLib
    from AneurysmSegLib.training import checkpoint_metadata
    from mednets.checkpoints import save_checkpoint

    config = tinyConfig()
    torch.manual_seed(0)
    model = AneurysmSegLib.build_model("glia_net", **config.model_overrides)
    save_checkpoint(path, model, checkpoint_metadata(config, config.model_overrides, "untrained test network"))
    return path


class AneurysmSegWidgetTest(unittest.TestCase):
    def setUp(self):
        slicer.mrmlScene.Clear(0)
        self.folder = Path(tempfile.mkdtemp(prefix="AneurysmSegWidgetTest-"))
        self.modelFolder = self.folder / "models"
        self.modelFolder.mkdir()
        self.checkpoint = writeSmallCheckpoint(self.modelFolder / "aneurysmseg-test-tiny.safetensors")
        self.previousCacheDir = os.environ.get("MEDNETS_CACHE_DIR")
        os.environ["MEDNETS_CACHE_DIR"] = str(self.folder / "cache")
        self.widget = slicer.util.getModuleWidget("AneurysmSeg")
        self.widget.enter()
        self.ui = self.widget.ui
        self.logic = self.widget.logic
        self.logic.trainingOutputFolders.append(str(self.modelFolder))
        self.widget.refreshModels(selectPath=self.checkpoint)
        self.ui.deviceComboBox.setCurrentIndex(self.ui.deviceComboBox.findText("CPU"))
        self.assertEqual(self.ui.overlapSpinBox.value, 64)  # the paper's overlap (of 96-voxel windows)
        self.ui.overlapSpinBox.value = 0  # few windows: fast on a CPU

    def tearDown(self):
        self.widget.trainingOptions = {}
        for folder in list(self.logic.trainingOutputFolders):
            if Path(folder).is_relative_to(self.folder):
                self.logic.trainingOutputFolders.remove(folder)
        if self.previousCacheDir is None:
            os.environ.pop("MEDNETS_CACHE_DIR", None)
        else:
            os.environ["MEDNETS_CACHE_DIR"] = self.previousCacheDir
        self.ui.overlapSpinBox.value = 64
        self.widget.refreshModels()
        self.widget.exit()
        shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------------------------------------------ helpers
    def addPhantom(self, seed: int = 5, name: str = "CTA phantom"):
        phantom = cta_head_phantom(shape=PHANTOM_SHAPE, spacing=PHANTOM_SPACING, seed=seed,
                                   aneurysm_diameter_mm=(6.0, 10.0))
        volume = Volume(phantom.image, spacing=phantom.spacing, directions_ras=KJI_LPS_DIRECTIONS)
        return mrml.new_volume_node(volume, slicer.mrmlScene, name), phantom

    def addReference(self, phantom, volumeNode, name: str = "reference"):
        from AneurysmSegLib.configs import ANEURYSM

        return mrml.new_segmentation_node((phantom.labels == 1).astype(np.uint8), volumeNode,
                                          segment_specs([ANEURYSM]), name=name)

    def applyAndWait(self):
        self.ui.applyButton.click()
        self.assertEqual(self.ui.applyButton.text, "Cancel")
        waitUntil(lambda: not self.widget.isRunning())
        self.assertEqual(self.ui.applyButton.text, "Apply")

    def evaluateAndWait(self):
        self.ui.evaluateButton.click()
        waitUntil(lambda: not self.widget.isEvaluating())
        self.assertEqual(self.ui.evaluateButton.text, "Evaluate")

    # ------------------------------------------------------------------------------------------------ tests
    def test_apply_creates_segmentation_risk_map_and_table(self):
        volumeNode, phantom = self.addPhantom()
        before = slicer.util.arrayFromVolume(volumeNode).copy()
        self.ui.inputSelector.setCurrentNode(volumeNode)
        self.assertEqual(self.ui.modelComboBox.currentText, "aneurysmseg-test-tiny")
        self.assertEqual(self.ui.thresholdSliderWidget.value, 0.5)
        self.assertTrue(self.ui.advancedCollapsibleButton.collapsed)
        self.ui.thresholdSliderWidget.value = 0.3

        self.applyAndWait()

        outputs = self.widget.lastOutputs
        self.assertEqual(set(outputs), {"segmentation", "riskMap", "table"}, self.ui.statusLabel.text)
        segmentation = outputs["segmentation"]
        self.assertEqual(segmentation.GetName(), "CTA phantom aneurysms")
        segment = segmentation.GetSegmentation().GetNthSegment(0)
        self.assertEqual(segment.GetName(), "aneurysm")
        self.assertTrue(segment.HasTag(slicer.vtkSegment.GetTerminologyEntryTagName()))
        risk = slicer.util.arrayFromVolume(outputs["riskMap"])
        self.assertEqual(risk.shape, phantom.image.shape)
        self.assertTrue(0.0 <= risk.min() and risk.max() <= 1.0)
        labels = mrml.case_from_nodes(volumeNode, segmentation, ["aneurysm"], allow_missing=True).label
        np.testing.assert_array_equal(labels > 0, risk > 0.3)  # the segmentation is the thresholded risk map
        table = mrml.table_to_columns(outputs["table"])
        self.assertEqual(list(table)[:4], ["target", "voxels", "volume_mm3", "max_diameter_mm"])
        self.assertEqual(sum(table["voxels"]), int((labels > 0).sum()))
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(volumeNode), before)
        self.assertIs(self.ui.resultSelector.currentNode(), segmentation)
        self.assertIn("aneurysm candidate", self.ui.statusLabel.text)

    def test_evaluate_fills_voxel_target_and_case_metrics(self):
        volumeNode, phantom = self.addPhantom(seed=6)
        reference = self.addReference(phantom, volumeNode)
        self.ui.inputSelector.setCurrentNode(volumeNode)
        self.applyAndWait()
        self.assertIsNotNone(self.ui.resultSelector.currentNode(), self.ui.statusLabel.text)
        self.ui.referenceSelector.setCurrentNode(reference)
        self.assertTrue(self.ui.evaluateButton.enabled)

        self.evaluateAndWait()

        columns = mrml.table_to_columns(self.widget.lastTableNode)
        self.assertEqual(columns["level"], ["voxel"] * 6 + ["target"] * 4 + ["case"] * 2)
        self.assertEqual(columns["metric"][:6], ["precision", "recall", "DSC", "HD95 (mm)", "AUC", "AP"])
        values = dict(zip(columns["metric"], columns["value"]))
        self.assertTrue(0.0 <= values["AUC"] <= 1.0)
        self.assertIn("aneurysms found", self.ui.evaluateStatusLabel.text)

        # The reference against itself: perfect scores.
        self.ui.resultSelector.setCurrentNode(reference)
        self.evaluateAndWait()
        perfect = dict(zip(*[mrml.table_to_columns(self.widget.lastTableNode)[c] for c in ("metric", "value")]))
        self.assertEqual(perfect["DSC"], 1.0)
        self.assertEqual(perfect["FP"], 0.0)
        self.assertEqual(perfect["recall"], 1.0)

    def test_constant_volume_is_reported_and_adds_nothing(self):
        constant = mrml.new_volume_node(Volume(np.full((24, 24, 24), 30.0, np.float32)), slicer.mrmlScene, "Flat")
        self.ui.inputSelector.setCurrentNode(constant)
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        self.applyAndWait()
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.assertTrue(self.ui.statusLabel.text.startswith("Error: "), self.ui.statusLabel.text)
        self.assertIn("constant", self.ui.statusLabel.text)

    def test_cancel_adds_nothing(self):
        volumeNode, _ = self.addPhantom()
        self.ui.inputSelector.setCurrentNode(volumeNode)
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        self.ui.applyButton.click()
        self.ui.applyButton.click()  # Cancel
        waitUntil(lambda: not self.widget.isRunning())
        if "Cancelled" in self.ui.statusLabel.text:  # (a fast machine may finish before the click lands)
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)

    def test_add_case_and_train_from_the_panel(self):
        for seed in (1, 2):
            volumeNode, phantom = self.addPhantom(seed=seed, name=f"case{seed}")
            reference = self.addReference(phantom, volumeNode, name=f"reference{seed}")
            self.ui.inputSelector.setCurrentNode(volumeNode)
            self.ui.referenceSelector.setCurrentNode(reference)
            self.ui.trainingFolderPathLineEdit.currentPath = str(self.folder / "cases")
            self.ui.addCaseButton.click()
            self.assertIn("training folder has", self.ui.trainingStatusLabel.text)
        self.ui.trainingOutputPathLineEdit.currentPath = str(self.folder / "run")
        config = tinyConfig()
        self.widget.trainingOptions = {"iterations": 2, "validateEvery": 2,
                                       "configChanges": {k: getattr(config, k) for k in (
                                           "model_overrides", "patch_size", "global_size", "window_overlap",
                                           "jitter", "batch_size")}}
        with noPythonThreads():  # python -m AneurysmSegLib train runs as a child process
            self.ui.trainButton.click()
            self.assertIsInstance(self.widget.jobs.job("training"), ProcessJob)
            waitUntil(lambda: not self.widget.isTraining())
        self.assertIn("Training finished after 2 iterations", self.ui.trainingStatusLabel.text)
        self.assertTrue((self.folder / "run" / "best.safetensors").is_file())
        self.assertEqual(Path(self.widget._selectedModel().path).resolve(),
                         (self.folder / "run" / "best.safetensors").resolve())

    def test_apply_runs_in_a_child_without_threads_and_the_gui_keeps_turning(self):
        """Apply is a child process: no Python thread starts here and a 50 ms timer ticks >= 5 times per second."""
        jobs = runtimeJobs()
        if jobs is None:
            self.skipTest("needs the test runtime's slicer_test_runtime.jobs")
        volumeNode, _ = self.addPhantom(seed=7)
        self.ui.inputSelector.setCurrentNode(volumeNode)
        timer, ticks = jobs.count_ticks(50)
        try:
            with jobs.no_python_threads():
                started = time.monotonic()
                self.ui.applyButton.click()
                self.assertIsInstance(self.widget.jobs.job("segmentation"), ProcessJob)
                waitUntil(lambda: not self.widget.isRunning())
                seconds = time.monotonic() - started
        finally:
            timer.stop()
        print(f"AneurysmSeg Apply in a child process: {seconds:.1f} s, {len(ticks)} ticks "
              f"({len(ticks) / seconds:.1f} per s)")
        self.assertGreaterEqual(len(ticks), 5 * seconds, "the event loop stalled during the job")
        self.assertIn("aneurysm candidate", self.ui.statusLabel.text)

    def test_killed_child_and_cancel_leave_the_scene_unchanged(self):
        """SIGKILL the child mid-Apply: scene unchanged, the kill named, folder gone. Then cancel a running child
        after its first output: idle within 2 s, nothing added, folder gone."""
        jobs = runtimeJobs()
        if jobs is None:
            self.skipTest("needs the test runtime's slicer_test_runtime.jobs")
        volumeNode, _ = self.addPhantom(seed=8)
        self.ui.inputSelector.setCurrentNode(volumeNode)
        before = jobs.scene_fingerprint()
        self.ui.applyButton.click()
        job = self.widget.jobs.job("segmentation")
        jobs.kill_job_child(job)
        waitUntil(lambda: not self.widget.isRunning())
        self.assertEqual(jobs.scene_fingerprint(), before)
        self.assertIn("SIGKILL", self.ui.statusLabel.text)
        self.assertFalse(job.folder.exists())

        self.ui.applyButton.click()
        job = self.widget.jobs.job("segmentation")
        log = job.folder / "stdout.log"
        waitUntil(lambda: not self.widget.isRunning() or (log.exists() and log.stat().st_size > 0))
        self.assertTrue(self.widget.isRunning(), "the job ended before it reported progress")
        clicked = time.monotonic()
        self.ui.applyButton.click()  # Cancel
        waitUntil(lambda: not self.widget.isRunning())
        latency = time.monotonic() - clicked
        print(f"AneurysmSeg cancel latency (click to idle panel): {latency:.2f} s")
        self.assertLess(latency, 2.0)
        self.assertEqual(jobs.scene_fingerprint(), before)
        self.assertIn("Cancelled", self.ui.statusLabel.text)
        self.assertFalse(job.folder.exists())
