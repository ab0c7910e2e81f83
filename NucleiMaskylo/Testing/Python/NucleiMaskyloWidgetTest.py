"""Widget tests of NucleiMaskylo: what a user does in the module panel.

Runs inside 3D Slicer (ctest through ``slicer_add_python_unittest``) and under pytest with the test runtime
(``Testing/test_nucleimaskylo_module.py``). The tests need no bundled weights: ``setUp`` writes a small untrained
``mask_rcnn_small`` checkpoint (seeded) into a temporary folder listed through ``logic.trainingOutputFolders``; with
random weights the network still returns instance masks, so the whole Apply path (tiles, stitching, label map,
table) is exercised. ``MEDNETS_CACHE_DIR`` points to a temporary folder during the tests.

Every Apply, Evaluate and Train runs as a child process of ``python -m NucleiMaskyloLib`` (``PythonSlicer`` in Slicer),
as in Slicer; the tests wait for it with the GUI event loop turning. The checks that need the test runtime's helpers
(``slicer_test_runtime.jobs``: no Python thread, timer ticks, SIGKILL of the child, scene fingerprint) are skipped in
Slicer itself.
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
from mednets.phantoms.he_nuclei import he_nuclei_phantom

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


def waitUntil(condition, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} s")
        slicer.app.processEvents()
        time.sleep(0.01)


def writeSmallCheckpoint(path: Path, score_threshold: float = 0.05) -> Path:
    """An untrained mask_rcnn_small checkpoint (seeded) whose pipeline keeps low-confidence nuclei."""
    import torch

    import NucleiMaskyloLib
    from NucleiMaskyloLib.training import save_nuclei_checkpoint

    torch.manual_seed(0)
    model = NucleiMaskyloLib.build_model("mask_rcnn_small", box_detections_per_img=50)
    save_nuclei_checkpoint(path, model, "mask_rcnn_small", {"box_detections_per_img": 50},
                           pipeline={"tile_size": 128, "overlap": 32, "stain_method": "macenko",
                                     "score_threshold": score_threshold},
                           training_data="untrained test network")
    return path


class NucleiMaskyloWidgetTest(unittest.TestCase):
    def setUp(self):
        slicer.mrmlScene.Clear(0)
        self.folder = Path(tempfile.mkdtemp(prefix="NucleiMaskyloWidgetTest-"))
        self.modelFolder = self.folder / "models"
        self.modelFolder.mkdir()
        self.checkpoint = writeSmallCheckpoint(self.modelFolder / "nucleimaskylo-test-tiny.safetensors")
        self.previousCacheDir = os.environ.get("MEDNETS_CACHE_DIR")
        os.environ["MEDNETS_CACHE_DIR"] = str(self.folder / "cache")
        self.widget = slicer.util.getModuleWidget("NucleiMaskylo")
        self.widget.enter()
        self.ui = self.widget.ui
        self.logic = self.widget.logic
        self.logic.trainingOutputFolders.append(str(self.modelFolder))
        self.widget.refreshModels(selectPath=self.checkpoint)
        self.ui.deviceComboBox.setCurrentIndex(self.ui.deviceComboBox.findText("CPU"))

    def tearDown(self):
        for folder in list(self.logic.trainingOutputFolders):
            if Path(folder).is_relative_to(self.folder):
                self.logic.trainingOutputFolders.remove(folder)
        if self.previousCacheDir is None:
            os.environ.pop("MEDNETS_CACHE_DIR", None)
        else:
            os.environ["MEDNETS_CACHE_DIR"] = self.previousCacheDir
        self.widget.refreshModels()
        self.widget.exit()
        shutil.rmtree(self.folder, ignore_errors=True)

    def addTile(self, seed: int = 31, shape=(160, 200), name: str = "H&E tile"):
        phantom = he_nuclei_phantom(seed, shape=shape)
        node = mrml.new_volume_node(Volume(phantom.image[None]), slicer.mrmlScene, name, node_class="vector")
        return node, phantom

    def selectInput(self, node) -> None:
        self.ui.inputSelector.setCurrentNode(node)

    def test_ApplyCreatesInstanceLabelmapAndTable(self):
        """Apply runs in a child process: no Python thread starts in this process, and the event loop keeps turning
        (a 50 ms timer ticks at least 5 times per second of the job)."""
        node, phantom = self.addTile()
        self.selectInput(node)
        self.ui.scoreThresholdSliderWidget.value = 0.05
        self.ui.tileSizeSpinBox.value = 128
        self.ui.overlapSpinBox.value = 32
        self.assertTrue(self.ui.applyButton.enabled)
        jobs = runtimeJobs()
        timer, ticks = jobs.count_ticks(50) if jobs is not None else (None, [])
        try:
            with noPythonThreads():
                started = time.monotonic()
                self.ui.applyButton.click()
                self.assertTrue(self.widget.isRunning())
                self.assertEqual(self.ui.applyButton.text, "Cancel")
                self.assertIsInstance(self.widget.jobs.job("segmentation"), ProcessJob)
                waitUntil(lambda: not self.widget.isRunning())
                seconds = time.monotonic() - started
        finally:
            if timer is not None:
                timer.stop()
        if jobs is not None:
            print(f"NucleiMaskylo Apply in a child process: {seconds:.1f} s, {len(ticks)} timer ticks "
                  f"({len(ticks) / seconds:.1f} per s)")
            self.assertGreaterEqual(len(ticks), 5 * seconds, "the event loop stalled during the job")
        self.assertEqual(self.ui.applyButton.text, "Apply")
        labelmaps = slicer.util.getNodesByClass("vtkMRMLLabelMapVolumeNode")
        self.assertEqual(len(labelmaps), 1, self.ui.statusLabel.text)
        labelmap = labelmaps[0]
        self.assertEqual(labelmap.GetName(), "H&E tile nuclei")
        labels = slicer.util.arrayFromVolume(labelmap)[0]
        self.assertEqual(labels.shape, phantom.labels.shape)
        table = self.widget.lastNucleusTable
        self.assertIsNotNone(table)
        columns = mrml.table_to_columns(table)
        self.assertEqual(list(columns)[:6], ["label", "area_px", "centroid_row", "centroid_col", "confidence",
                                             "branch"])
        self.assertEqual(table.GetNumberOfRows(), int(labels.max()))
        if table.GetNumberOfRows():
            visible = np.bincount(labels.ravel(), minlength=labels.max() + 1)[1:]
            self.assertTrue(np.array_equal(np.asarray(columns["area_px"]), visible))
            self.assertEqual(sorted(np.unique(labels[labels > 0]).tolist()), columns["label"])
            self.assertTrue(set(columns["branch"]) <= {"mask_rcnn"})
        colours = slicer.mrmlScene.GetNodeByID(labelmap.GetDisplayNode().GetColorNodeID())
        self.assertEqual(colours.GetNumberOfColors(), int(labels.max()) + 1)  # one colour per nucleus
        self.assertIn("nuclei", self.ui.statusLabel.text)
        self.assertIs(self.widget._parameterNode.resultLabelmap, labelmap)

    def test_EvaluateFillsMetricsTable(self):
        node, phantom = self.addTile(seed=32, shape=(96, 96))
        reference = mrml.new_volume_node(phantom.labels[None].astype(np.int32), name="reference", node_class="label",
                                         reference_node=node)
        result = phantom.labels.copy()
        result[result % 3 == 0] = 0  # a third of the nuclei missed
        resultNode = mrml.new_volume_node(result[None].astype(np.int32), name="result", node_class="label",
                                          reference_node=node)
        self.ui.resultSelector.setCurrentNode(resultNode)
        self.ui.referenceSelector.setCurrentNode(reference)
        self.assertTrue(self.ui.evaluateButton.enabled)
        self.ui.evaluateButton.click()
        self.assertTrue(self.widget.isEvaluating())  # a child process: python -m NucleiMaskyloLib evaluate
        waitUntil(lambda: not self.widget.isEvaluating())
        self.assertEqual(self.ui.evaluateButton.text, "Evaluate")
        table = self.widget.lastTableNode
        self.assertIsNotNone(table, self.ui.evaluateStatusLabel.text)
        rows = {row["metric"]: row["value"] for row in mrml.table_to_rows(table)}
        for name in ("Precision", "Recall", "mAP@50", "mAP@50-95", "Dice", "IoU", "AJI", "PQ"):
            self.assertIn(name, rows)
        self.assertAlmostEqual(rows["Precision"], 1.0)
        expected_recall = (np.unique(result).size - 1) / (np.unique(phantom.labels).size - 1)
        self.assertAlmostEqual(rows["Recall"], expected_recall)
        self.assertLess(rows["AJI"], 1.0)
        self.assertIn("mAP@50", self.ui.evaluateStatusLabel.text)

    def test_BadInputShowsError(self):
        grey = mrml.new_volume_node(Volume(np.random.default_rng(0).random((1, 32, 32)).astype(np.float32)),
                                    slicer.mrmlScene, "grey")
        constant = mrml.new_volume_node(Volume(np.full((1, 32, 32, 3), 250, np.uint8)), slicer.mrmlScene, "blank",
                                        node_class="vector")
        self.selectInput(constant)
        nodes = slicer.mrmlScene.GetNumberOfNodes()
        self.ui.applyButton.click()
        self.assertFalse(self.widget.isRunning())
        self.assertIn("constant", self.ui.statusLabel.text)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes)
        self.assertIsNotNone(grey)  # a grey volume is not even offered by the RGB selector

    def waitForChildOutput(self, name: str = "segmentation"):
        """Wait (GUI running) until the job's child reported something (its first progress line); returns the job."""
        job = self.widget.jobs.job(name)
        self.assertIsNotNone(job)
        log = job.folder / "stdout.log"
        waitUntil(lambda: not self.widget.jobs.running(name) or (log.exists() and log.stat().st_size > 0))
        self.assertTrue(self.widget.jobs.running(name), "the job ended before it reported progress")
        return job

    def test_CancelAddsNothing(self):
        """Cancel a running child (after its first progress): the panel is idle within 2 s, nothing was added, the
        job folder is gone."""
        node, _ = self.addTile(seed=33, shape=(400, 400))
        self.selectInput(node)
        self.ui.tileSizeSpinBox.value = 128
        self.ui.overlapSpinBox.value = 32
        nodes = slicer.mrmlScene.GetNumberOfNodes()
        self.ui.applyButton.click()
        job = self.waitForChildOutput()
        clicked = time.monotonic()
        self.ui.applyButton.click()  # Cancel
        waitUntil(lambda: not self.widget.isRunning())
        latency = time.monotonic() - clicked
        print(f"NucleiMaskylo cancel latency (click to idle panel): {latency:.2f} s")
        self.assertLess(latency, 2.0)
        self.assertEqual(len(slicer.util.getNodesByClass("vtkMRMLLabelMapVolumeNode")), 0)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes)
        self.assertIn("Cancel", self.ui.statusLabel.text)
        self.assertEqual(self.ui.applyButton.text, "Apply")
        self.assertFalse(job.folder.exists())

    def test_KilledChildLeavesSceneUnchanged(self):
        """SIGKILL the child mid-Apply (as an out-of-memory killer would): the scene is as it was (nodes, names,
        content), the panel names the kill, the job folder is removed."""
        jobs = runtimeJobs()
        if jobs is None:
            self.skipTest("needs the test runtime's slicer_test_runtime.jobs")
        node, _ = self.addTile(seed=35, shape=(400, 400))
        self.selectInput(node)
        self.ui.tileSizeSpinBox.value = 128
        self.ui.overlapSpinBox.value = 32
        before = jobs.scene_fingerprint()
        self.ui.applyButton.click()
        job = self.widget.jobs.job("segmentation")
        jobs.kill_job_child(job)
        waitUntil(lambda: not self.widget.isRunning())
        self.assertEqual(jobs.scene_fingerprint(), before)
        self.assertIn("SIGKILL", self.ui.statusLabel.text)
        self.assertFalse(job.folder.exists())
        self.assertEqual(self.ui.applyButton.text, "Apply")

    def test_FailedChildShowsItsError(self):
        """The selected weights vanish before Apply: the child exits with status 2 and its one-line reason, which the
        panel shows; nothing is added to the scene and the job folder is removed."""
        node, _ = self.addTile(seed=36, shape=(64, 64))
        self.selectInput(node)
        nodes = slicer.mrmlScene.GetNumberOfNodes()
        self.checkpoint.unlink()  # still selected in the panel; the child no longer finds it
        self.ui.applyButton.click()
        job = self.widget.jobs.job("segmentation")
        waitUntil(lambda: not self.widget.isRunning())
        self.assertEqual(job.returncode, 2)
        self.assertTrue(self.ui.statusLabel.text.startswith("Error: "), self.ui.statusLabel.text)
        self.assertIn("nucleimaskylo-test-tiny", self.ui.statusLabel.text)
        self.assertEqual(len(self.ui.statusLabel.text.splitlines()), 1)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes)
        self.assertFalse(job.folder.exists())

    def test_AddCaseWritesNuInsSegLayout(self):
        node, phantom = self.addTile(seed=34, shape=(64, 64), name="case one")
        reference = mrml.new_volume_node(phantom.labels[None].astype(np.int32), name="reference", node_class="label",
                                         reference_node=node)
        self.selectInput(node)
        self.ui.referenceSelector.setCurrentNode(reference)
        self.ui.trainingFolderPathLineEdit.currentPath = str(self.folder / "tiles")
        self.assertTrue(self.ui.addCaseButton.enabled)
        self.ui.addCaseButton.click()
        from NucleiMaskyloLib.datasets import load_nuinsseg_case, scan_nuinsseg

        cases = scan_nuinsseg(self.folder / "tiles")
        self.assertEqual(len(cases), 1)
        image, labels, _ = load_nuinsseg_case(cases[0])
        np.testing.assert_array_equal(image, phantom.image)
        np.testing.assert_array_equal(labels, phantom.labels)

    def test_TrainProducesSelectableCheckpoint(self):
        from NucleiMaskyloLib.datasets import write_label_map
        from skimage.io import imsave

        tiles = self.folder / "tiles" / "organ"
        (tiles / "tissue images").mkdir(parents=True)
        for seed in range(2):
            phantom = he_nuclei_phantom(60 + seed, shape=(64, 64))
            imsave(tiles / "tissue images" / f"t{seed}.png", phantom.image, check_contrast=False)
            write_label_map(tiles / "label masks modify" / f"t{seed}.tif", phantom.labels)
        self.ui.trainingFolderPathLineEdit.currentPath = str(self.folder / "tiles")
        self.ui.trainingOutputPathLineEdit.currentPath = str(self.folder / "run")
        self.ui.iterationsSpinBox.value = 1
        self.widget.trainingOptions = {"recipe": {"micro_batch": 2, "batch_size": 2, "tile_size": 64}}
        self.assertTrue(self.ui.trainButton.enabled)
        with noPythonThreads():  # training runs in a child process of python -m NucleiMaskyloLib train
            self.ui.trainButton.click()
            self.assertTrue(self.widget.isTraining())
            self.assertIsInstance(self.widget.jobs.job("training"), ProcessJob)
            waitUntil(lambda: not self.widget.isTraining())
        self.widget.trainingOptions = {}
        self.assertIn("Training finished", self.ui.trainingStatusLabel.text)
        self.assertTrue((self.folder / "run" / "nucleimaskylo_trained.safetensors").is_file())
        self.assertEqual(self.ui.modelComboBox.currentText, "nucleimaskylo_trained")
        self.logic.trainingOutputFolders.remove(str(self.folder / "run"))
