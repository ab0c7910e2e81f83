"""Widget tests of OrganCombo: what a user does in the module panel.

The same file runs inside 3D Slicer (ctest through ``slicer_add_python_unittest``, or ``Testing/run_in_slicer.py``)
and under pytest with the test runtime (``Testing/test_organcombo_module.py``). It uses only the Slicer API, in
PythonQt style: widget properties are read as attributes (``statusLabel.text``) and changed with their setters.

The tests do not need the bundled demo weights: ``setUpClass`` writes a small, untrained OrganCombo checkpoint (the
Combo network at its smallest width, 32-voxel windows) into a temporary folder, which each test lists through
``logic.trainingOutputFolders`` and selects. ``MEDNETS_CACHE_DIR`` points to a temporary folder during the tests, so
imported weights never reach the user's model folder. Every test takes a few seconds on two CPU cores.

Every Apply, Evaluate and Train runs as a child process of ``python -m OrganComboLib`` (PythonSlicer in Slicer), as in
real use; the checks that need the test runtime's ``slicer_test_runtime.jobs`` (no Python thread, timer ticks, SIGKILL)
skip inside Slicer.
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
from mednets.phantoms import pet_whole_body_phantom
from mednets.terminology import segment_specs

TIMEOUT_S = 60.0
ORGANS = ["brain", "heart", "left kidney", "right kidney", "bladder"]
METRIC_COLUMNS = ["organ", "Jaccard", "Dice", "FPR", "FNR", "HD (mm)"]
PHANTOM_SHAPE, PHANTOM_SPACING = (64, 32, 40), (16.0, 12.0, 12.0)  # the whole body on a coarse grid: fast on a CPU
WINDOW = (32, 32, 32)
LARGE_PHANTOM_SHAPE = (192, 96, 120)  # many windows: a job that runs long enough to be cancelled or killed


def waitUntil(condition, timeout: float = TIMEOUT_S) -> None:
    """Keep the GUI running (timers fire) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} s")
        slicer.app.processEvents()
        time.sleep(0.01)


def runtimeJobs():
    """``slicer_test_runtime.jobs`` under pytest; None inside 3D Slicer (the runtime is not there)."""
    try:
        from slicer_test_runtime import jobs
    except ImportError:
        return None
    return jobs


def noPythonThreads():
    """Fails if the panel starts a Python thread (it would starve in real Slicer, where PythonQt keeps the GIL)."""
    jobs = runtimeJobs()
    return jobs.no_python_threads() if jobs is not None else contextlib.nullcontext([])


def segmentationNodes() -> list:
    return slicer.util.getNodesByClass("vtkMRMLSegmentationNode")


def smallConfigChanges() -> dict:
    """Configuration changes for the tiny test network: 32-voxel windows and very few training patches."""
    return dict(patch_size=WINDOW, window_size=WINDOW, window_stride=(16, 16, 16), patches_per_organ=1,
                background_patches=1, batch_size=1)


def smallModelOverrides() -> dict:
    """``build_model`` arguments of the smallest Combo network (see OrganComboLib.combo_net)."""
    return {"base_channels": 2}


def writeSmallCheckpoint(path: Path) -> Path:
    """An untrained OrganCombo checkpoint of the PET configuration with the tiny network (seeded)."""
    import torch

    import OrganComboLib
    from OrganComboLib.configs import get_config
    from OrganComboLib.training import checkpoint_metadata
    from mednets.checkpoints import save_checkpoint

    config = get_config("pet").replace(**{key: value for key, value in smallConfigChanges().items()
                                          if key in ("patch_size", "window_size", "window_stride")})
    overrides = {"in_channels": 1, "out_channels": config.num_classes, "spatial_dims": 3, **smallModelOverrides()}
    torch.manual_seed(0)
    model = OrganComboLib.build_model("combo_net", **overrides)
    save_checkpoint(path, model, checkpoint_metadata(config, overrides, "untrained test network"))
    return path


class OrganComboWidgetTest(unittest.TestCase):
    def setUp(self):
        slicer.mrmlScene.Clear(0)
        self.folder = Path(tempfile.mkdtemp(prefix="OrganComboWidgetTest-"))
        self.modelFolder = self.folder / "models"
        self.modelFolder.mkdir()
        self.checkpoint = writeSmallCheckpoint(self.modelFolder / "organcombo-test-tiny.safetensors")
        self.cacheDir = tempfile.mkdtemp(prefix="cache-", dir=self.folder)
        self.previousCacheDir = os.environ.get("MEDNETS_CACHE_DIR")
        os.environ["MEDNETS_CACHE_DIR"] = self.cacheDir  # imported weights go here, not to the user's folder
        self.widget = slicer.util.getModuleWidget("OrganCombo")
        self.widget.enter()
        self.ui = self.widget.ui
        self.logic = self.widget.logic
        self.logic.trainingOutputFolders.append(str(self.modelFolder))
        self.widget.refreshModels(selectPath=self.checkpoint)
        self.ui.deviceComboBox.setCurrentIndex(self.ui.deviceComboBox.findText("CPU"))

    def tearDown(self):
        self.widget.trainingOptions = {}
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

    # ------------------------------------------------------------------------------------------------ helpers
    def addPetPhantom(self, seed: int = 5, name: str = "PET phantom", shape=PHANTOM_SHAPE):
        phantom = pet_whole_body_phantom(seed=seed, shape=shape, spacing=PHANTOM_SPACING)
        volume = Volume(phantom.image, spacing=phantom.spacing, directions_ras=phantom.extra["directions_ras"])
        return mrml.new_volume_node(volume, slicer.mrmlScene, name), phantom

    def addReference(self, phantom, volumeNode, name: str = "reference"):
        from OrganComboLib.configs import get_config

        return mrml.new_segmentation_node(phantom.labels, volumeNode, segment_specs(get_config("pet").classes),
                                          name=name)

    def applyAndWait(self):
        self.ui.applyButton.click()
        self.assertEqual(self.ui.applyButton.text, "Cancel")
        waitUntil(lambda: not self.widget.isRunning())
        self.assertEqual(self.ui.applyButton.text, "Apply")

    def evaluateAndWait(self):
        self.ui.evaluateButton.click()
        self.assertEqual(self.ui.evaluateButton.text, "Cancel")  # the metrics are computed in the background
        waitUntil(lambda: not self.widget.isEvaluating())
        self.assertEqual(self.ui.evaluateButton.text, "Evaluate")

    def waitForChildOutput(self, name: str):
        """The running job ``name`` once its child wrote its first line (a progress or log line)."""
        job = self.widget.jobs.job(name)
        self.assertIsNotNone(job)
        log = job.folder / "stdout.log"
        waitUntil(lambda: not self.widget.jobs.running(name) or (log.exists() and log.stat().st_size > 0))
        self.assertTrue(self.widget.jobs.running(name), "the job ended before it reported progress")
        return job

    def addTrainingCases(self, seeds=(8, 9)) -> Path:
        trainingFolder = Path(tempfile.mkdtemp(prefix="cases-", dir=self.folder))
        self.ui.trainingFolderPathLineEdit.setCurrentPath(str(trainingFolder))
        for seed in seeds:
            volumeNode, phantom = self.addPetPhantom(seed=seed, name=f"Case {seed}")
            self.ui.inputSelector.setCurrentNode(volumeNode)
            self.ui.referenceSelector.setCurrentNode(self.addReference(phantom, volumeNode, f"reference {seed}"))
            self.ui.addCaseButton.click()
        self.assertIn(f"{len(seeds)} cases", self.ui.trainingStatusLabel.text)
        return trainingFolder

    def selectedModelPath(self) -> Path:
        return Path(self.widget._selectedModel().path).resolve()

    # ------------------------------------------------------------------------------------------------ tests
    def test_apply_creates_a_segmentation_with_the_five_organs(self):
        from OrganComboLib.configs import get_config

        volumeNode, _ = self.addPetPhantom()
        before = slicer.util.arrayFromVolume(volumeNode).copy()
        self.ui.inputSelector.setCurrentNode(volumeNode)
        self.assertEqual(self.ui.modelComboBox.currentText, "organcombo-test-tiny")
        self.assertIn("untrained test network", self.ui.modelComboBox.toolTip)
        self.assertTrue(self.ui.applyButton.enabled)
        self.assertTrue(self.ui.advancedCollapsibleButton.collapsed)
        self.assertEqual(self.ui.thresholdSliderWidget.value, 0.5)  # the paper's threshold
        self.assertEqual(self.ui.batchSizeSpinBox.value, 4)
        existing = {node.GetID() for node in segmentationNodes()}
        jobs = runtimeJobs()
        timer, ticks = jobs.count_ticks(50) if jobs is not None else (None, [])
        started = time.monotonic()

        with noPythonThreads():  # the job is a child process: no Python thread in the Slicer process
            self.applyAndWait()

        seconds = time.monotonic() - started
        if timer is not None:
            timer.stop()
            print(f"OrganCombo Apply: {len(ticks)} timer ticks in {seconds:.2f} s ({len(ticks) / seconds:.1f}/s)")
            self.assertGreaterEqual(len(ticks), 5 * seconds - 1, "the event loop stalled during the job")
        created = [node for node in segmentationNodes() if node.GetID() not in existing]
        self.assertEqual([node.GetName() for node in created], ["PET phantom organs"], self.ui.statusLabel.text)
        segmentation = created[0].GetSegmentation()
        segments = [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]
        self.assertEqual([segment.GetName() for segment in segments], ORGANS)
        for segment, organ in zip(segments, get_config("pet").classes):
            np.testing.assert_allclose(segment.GetColor(), organ.color, atol=1e-6)
            self.assertTrue(segment.HasTag(slicer.vtkSegment.GetTerminologyEntryTagName()))  # standard terminology
        self.assertTrue(created[0].GetDisplayNode().GetVisibility())
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(volumeNode), before)  # the input is untouched
        self.assertIn("PET phantom organs", self.ui.statusLabel.text)
        self.assertIn("brain", self.ui.statusLabel.text)
        self.assertIn(" ml", self.ui.statusLabel.text)
        self.assertIsNone(self.ui.outputSelector.currentNode())  # the user's output choice is left alone
        self.assertIs(self.ui.resultSelector.currentNode(), created[0])  # ready for Evaluate

    def test_evaluate_fills_a_metric_table(self):
        volumeNode, phantom = self.addPetPhantom(seed=6)
        reference = self.addReference(phantom, volumeNode)
        self.ui.inputSelector.setCurrentNode(volumeNode)
        self.applyAndWait()
        result = self.ui.resultSelector.currentNode()
        self.assertIsNotNone(result, self.ui.statusLabel.text)
        self.assertFalse(self.ui.evaluateButton.enabled)  # no reference yet
        self.ui.referenceSelector.setCurrentNode(reference)
        self.assertTrue(self.ui.evaluateButton.enabled)

        self.evaluateAndWait()

        table = self.widget.lastTableNode
        self.assertIsNotNone(table, self.ui.evaluateStatusLabel.text)
        self.assertIs(self.ui.metricsTableView.mrmlTableNode(), table)
        self.assertTrue(slicer.mrmlScene.IsNodePresent(table))
        columns = mrml.table_to_columns(table)
        self.assertEqual(list(columns), METRIC_COLUMNS)
        self.assertEqual(columns["organ"], ORGANS)
        self.assertEqual(table.GetNumberOfRows(), 5)
        for name in ("Jaccard", "Dice", "FPR", "FNR"):
            values = np.asarray(columns[name], dtype=float)
            self.assertTrue(np.all((values >= 0) & (values <= 1)), f"{name}: {values}")
        self.assertIn("Mean Dice", self.ui.evaluateStatusLabel.text)

        # The reference against itself: perfect scores.
        self.ui.resultSelector.setCurrentNode(reference)
        self.evaluateAndWait()
        perfect = mrml.table_to_columns(self.widget.lastTableNode)
        np.testing.assert_allclose(perfect["Dice"], 1.0)
        np.testing.assert_allclose(perfect["HD (mm)"], 0.0)

    def test_evaluation_can_be_cancelled_and_adds_no_table(self):
        volumeNode, phantom = self.addPetPhantom(seed=6)
        reference = self.addReference(phantom, volumeNode)
        self.ui.inputSelector.setCurrentNode(volumeNode)
        self.ui.resultSelector.setCurrentNode(reference)
        self.ui.referenceSelector.setCurrentNode(reference)
        tables = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLTableNode")

        self.ui.evaluateButton.click()
        self.ui.evaluateButton.click()  # Cancel
        waitUntil(lambda: not self.widget.isEvaluating())

        self.assertEqual(self.ui.evaluateButton.text, "Evaluate")
        self.assertTrue(self.ui.evaluateButton.enabled)
        if "Cancelled" in self.ui.evaluateStatusLabel.text:  # (a fast machine may finish before the click lands)
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLTableNode"), tables)
        else:
            self.assertIn("Mean Dice", self.ui.evaluateStatusLabel.text)

    def test_device_fallback_is_reported_in_the_status(self):
        import torch

        if not torch.backends.mps.is_available():
            self.ui.deviceComboBox.setCurrentIndex(self.ui.deviceComboBox.findText("MPS (Apple GPU)"))
        elif not torch.cuda.is_available():
            self.ui.deviceComboBox.setCurrentIndex(self.ui.deviceComboBox.findText("CUDA (NVIDIA GPU)"))
        else:
            self.skipTest("both GPU kinds are available: no fallback to report")
        volumeNode, _ = self.addPetPhantom()
        self.ui.inputSelector.setCurrentNode(volumeNode)

        self.applyAndWait()

        self.assertIn("PET phantom organs", self.ui.statusLabel.text)
        self.assertIn("using the CPU instead", self.ui.statusLabel.text)

    def test_constant_volume_is_reported_and_adds_nothing(self):
        constant = mrml.new_volume_node(Volume(np.full((24, 24, 24), 3.0, np.float32), spacing=(4.0, 4.0, 4.0)),
                                        slicer.mrmlScene, "Constant")
        self.ui.inputSelector.setCurrentNode(constant)
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()

        self.ui.applyButton.click()  # the child refuses the image: exit status 2 with a one-line reason
        job = self.widget.jobs.job("segmentation")
        waitUntil(lambda: not self.widget.isRunning())

        self.assertEqual(job.returncode, 2)
        self.assertFalse(job.folder.exists())
        self.assertEqual(len(self.ui.statusLabel.text.splitlines()), 1, self.ui.statusLabel.text)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.assertEqual(segmentationNodes(), [])
        self.assertTrue(self.ui.statusLabel.text.startswith("Error: "), self.ui.statusLabel.text)
        self.assertIn("constant", self.ui.statusLabel.text)
        self.assertTrue(self.ui.applyButton.enabled)

    def test_missing_model_is_reported(self):
        volumeNode, _ = self.addPetPhantom()
        self.ui.inputSelector.setCurrentNode(volumeNode)
        self.logic.availableModels = lambda: []  # no bundled, imported or trained weights at all
        try:
            self.widget.refreshModels()
            self.assertEqual(self.ui.modelComboBox.count, 0)
            self.assertFalse(self.ui.applyButton.enabled)
            self.assertIn("load a weights file", self.ui.applyButton.toolTip)
        finally:
            del self.logic.availableModels
        self.widget.refreshModels(selectPath=self.checkpoint)
        self.assertTrue(self.ui.applyButton.enabled)

    def test_cancel_in_the_middle_adds_no_node(self):
        """Cancel a running child (after its first output line): the panel is idle within 2 s, nothing was added, the
        job folder is gone."""
        volumeNode, _ = self.addPetPhantom(shape=LARGE_PHANTOM_SHAPE)  # seconds of windows for the tiny network
        self.ui.inputSelector.setCurrentNode(volumeNode)
        self.ui.batchSizeSpinBox.setValue(1)
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        self.ui.applyButton.click()
        job = self.waitForChildOutput("segmentation")
        self.assertEqual(self.ui.applyButton.text, "Cancel")
        clicked = time.monotonic()
        self.ui.applyButton.click()  # Cancel
        waitUntil(lambda: not self.widget.isRunning())
        latency = time.monotonic() - clicked
        print(f"OrganCombo cancel latency (click to idle panel): {latency:.2f} s")
        self.assertLess(latency, 2.0)

        self.assertEqual(segmentationNodes(), [])
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.assertIn("Cancelled", self.ui.statusLabel.text)
        self.assertEqual(self.ui.applyButton.text, "Apply")
        self.assertFalse(job.folder.exists())

    def test_killed_child_leaves_the_scene_unchanged(self):
        """SIGKILL the child mid-Apply (as an out-of-memory killer would): the scene is as it was (nodes, names,
        content), the panel names the kill, the job folder is removed."""
        jobs = runtimeJobs()
        if jobs is None:
            self.skipTest("needs the test runtime's slicer_test_runtime.jobs")
        volumeNode, _ = self.addPetPhantom(shape=LARGE_PHANTOM_SHAPE)
        self.ui.inputSelector.setCurrentNode(volumeNode)
        self.ui.batchSizeSpinBox.setValue(1)
        before = jobs.scene_fingerprint()
        self.ui.applyButton.click()
        job = self.widget.jobs.job("segmentation")
        jobs.kill_job_child(job)
        waitUntil(lambda: not self.widget.isRunning())
        self.assertEqual(jobs.scene_fingerprint(), before)
        self.assertIn("SIGKILL", self.ui.statusLabel.text)
        self.assertTrue(self.ui.statusLabel.text.startswith("Error: "), self.ui.statusLabel.text)
        self.assertFalse(job.folder.exists())
        self.assertEqual(self.ui.applyButton.text, "Apply")

    def test_load_weights_file_lists_and_selects_it(self):
        copy = self.folder / "my-organ-weights.safetensors"
        shutil.copyfile(self.checkpoint, copy)
        source = self.widget.importWeightsFile(copy)
        self.assertIsNotNone(source, self.ui.statusLabel.text)
        self.assertEqual(self.ui.modelComboBox.currentText, "my-organ-weights")
        self.assertTrue(self.selectedModelPath().is_relative_to(Path(self.cacheDir).resolve()))
        self.assertIn("my-organ-weights", self.ui.statusLabel.text)

        broken = self.folder / "broken.safetensors"
        broken.write_bytes(b"not a checkpoint at all")
        self.assertIsNone(self.widget.importWeightsFile(broken))
        self.assertTrue(self.ui.statusLabel.text.startswith("Error: "), self.ui.statusLabel.text)
        self.assertEqual(self.ui.modelComboBox.currentText, "my-organ-weights")  # the selection is kept

    def test_add_current_case_writes_image_and_label(self):
        volumeNode, phantom = self.addPetPhantom(seed=7, name="Case A")
        reference = self.addReference(phantom, volumeNode)
        trainingFolder = Path(tempfile.mkdtemp(prefix="cases-", dir=self.folder))
        self.ui.inputSelector.setCurrentNode(volumeNode)
        self.ui.referenceSelector.setCurrentNode(reference)
        self.ui.trainingFolderPathLineEdit.setCurrentPath(str(trainingFolder))
        self.assertTrue(self.ui.addCaseButton.enabled)

        self.ui.addCaseButton.click()

        written = sorted(path.name for path in trainingFolder.iterdir())
        self.assertEqual(written, ["Case_A_image.nrrd", "Case_A_label.nrrd"], self.ui.trainingStatusLabel.text)
        labels = slicer.util.loadVolume(str(trainingFolder / "Case_A_label.nrrd"))
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(labels), phantom.labels)
        self.assertIn("1 cases", self.ui.trainingStatusLabel.text)

    def test_training_shows_its_curve_and_selects_the_new_model(self):
        trainingFolder = Path(tempfile.mkdtemp(prefix="cases-", dir=self.folder))
        outputFolder = Path(tempfile.mkdtemp(prefix="run-", dir=self.folder))
        self.ui.trainingFolderPathLineEdit.setCurrentPath(str(trainingFolder))
        self.ui.trainingOutputPathLineEdit.setCurrentPath(str(outputFolder))
        for seed in (8, 9):
            volumeNode, phantom = self.addPetPhantom(seed=seed, name=f"Case {seed}")
            self.ui.inputSelector.setCurrentNode(volumeNode)
            self.ui.referenceSelector.setCurrentNode(self.addReference(phantom, volumeNode, f"reference {seed}"))
            self.ui.addCaseButton.click()
        self.assertIn("2 cases", self.ui.trainingStatusLabel.text)
        self.assertEqual(self.ui.epochsSpinBox.value, 50)  # the configuration's default
        self.widget.trainingOptions = dict(iterations=1, configChanges=smallConfigChanges(),
                                           modelOverrides=smallModelOverrides())

        with noPythonThreads():  # training is a child process too
            self.ui.trainButton.click()
            self.assertEqual(self.ui.trainButton.text, "Cancel training")
            waitUntil(lambda: not self.widget.isTraining())

        self.assertIn("Training finished", self.ui.trainingStatusLabel.text, self.ui.trainingStatusLabel.text)
        self.assertEqual(self.ui.trainButton.text, "Start training")
        self.assertEqual(self.selectedModelPath(), (outputFolder / "best.safetensors").resolve())
        self.assertFalse(self.ui.trainingCurveLabel.pixmap.isNull())  # history.png is shown
        self.assertTrue(self.ui.applyButton.enabled)

    def test_cancel_training(self):
        """Cancel a real training child after its first progress: the panel says so and is ready again."""
        self.addTrainingCases((12, 13))
        self.ui.trainingOutputPathLineEdit.setCurrentPath(str(self.folder / "cancelled-run"))
        self.widget.trainingOptions = dict(iterations=100000, configChanges=smallConfigChanges(),
                                           modelOverrides=smallModelOverrides())
        self.ui.trainButton.click()
        self.assertEqual(self.ui.trainButton.text, "Cancel training")
        waitUntil(lambda: not self.widget.isTraining()
                  or not self.ui.trainingStatusLabel.text.startswith("Training on"))  # the child's first progress
        self.assertTrue(self.widget.isTraining(), self.ui.trainingStatusLabel.text)
        job = self.widget.jobs.job("training")
        self.ui.trainButton.click()
        waitUntil(lambda: not self.widget.isTraining(), 5.0)
        self.assertIn("Training cancelled", self.ui.trainingStatusLabel.text)
        self.assertEqual(self.ui.trainButton.text, "Start training")
        self.assertFalse(job.folder.exists())

    def test_training_folder_with_one_case_is_reported(self):
        trainingFolder = Path(tempfile.mkdtemp(prefix="cases-", dir=self.folder))
        self.ui.trainingFolderPathLineEdit.setCurrentPath(str(trainingFolder))
        self.ui.trainingOutputPathLineEdit.setCurrentPath(str(self.folder / "never-written"))
        volumeNode, phantom = self.addPetPhantom(seed=10, name="Only case")
        self.ui.inputSelector.setCurrentNode(volumeNode)
        self.ui.referenceSelector.setCurrentNode(self.addReference(phantom, volumeNode))
        self.ui.addCaseButton.click()

        self.ui.trainButton.click()
        waitUntil(lambda: not self.widget.isTraining())

        self.assertTrue(self.ui.trainingStatusLabel.text.startswith("Error: "), self.ui.trainingStatusLabel.text)
        self.assertIn("at least 2 labelled cases", self.ui.trainingStatusLabel.text)
        self.assertFalse((self.folder / "never-written").exists())
