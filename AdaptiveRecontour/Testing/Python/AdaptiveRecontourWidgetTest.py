"""Widget tests of AdaptiveRecontour: the panel's jobs run as child processes of ``python -m AdaptiveRecontourLib``.

Runs under pytest with the test runtime (``Testing/test_adaptiverecontour_module.py``) and inside 3D Slicer. Uses the
bundled demo weights and the phantom pairs of ``AdaptiveRecontourTest.phantomNodes``. The checks that need the test
runtime's helpers (``slicer_test_runtime.jobs``: no Python thread, timer ticks, SIGKILL of the child, scene
fingerprint) are skipped in Slicer itself. Five child runs in all (each costs a few seconds of torch import).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
import unittest
from pathlib import Path

import slicer
from mednets.jobs import ProcessJob

TIMEOUT_S = 300.0


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


class AdaptiveRecontourWidgetTest(unittest.TestCase):
    def setUp(self):
        slicer.mrmlScene.Clear(0)
        self.folder = Path(tempfile.mkdtemp(prefix="AdaptiveRecontourWidgetTest-"))
        self.widget = slicer.util.getModuleWidget("AdaptiveRecontour")
        self.widget.enter()
        self.ui = self.widget.ui
        self.parameters = self.widget._parameterNode
        self.parameters.device = type(self.parameters.device)("cpu")
        self.trainingFolders = list(self.widget.logic.trainingOutputFolders)

    def tearDown(self):
        self.widget.logic.trainingOutputFolders[:] = self.trainingFolders
        self.widget.refreshModels()
        self.widget.exit()
        shutil.rmtree(self.folder, ignore_errors=True)

    def selectPair(self, seed: int):
        module = sys.modules["AdaptiveRecontour"]
        planningCT, planningSeg, dailyCT, reference = module.AdaptiveRecontourTest.phantomNodes(seed=seed)
        self.ui.planningVolumeSelector.setCurrentNode(planningCT)
        self.ui.planningSegmentationSelector.setCurrentNode(planningSeg)
        self.ui.dailyVolumeSelector.setCurrentNode(dailyCT)
        self.assertTrue(self.ui.applyButton.enabled)
        return planningCT, planningSeg, dailyCT, reference

    def waitForChildOutput(self, name: str = "recontouring") -> ProcessJob:
        """Wait (GUI running) until the job's child reported something (its first progress line); returns the job."""
        job = self.widget.jobs.job(name)
        self.assertIsInstance(job, ProcessJob)
        log = job.folder / "stdout.log"
        waitUntil(lambda: not self.widget.jobs.running(name) or (log.exists() and log.stat().st_size > 0))
        self.assertTrue(self.widget.jobs.running(name), "the job ended before it reported progress")
        return job

    def test_ApplyEvaluateTrainInChildProcesses(self):
        """Apply, Evaluate and Train run as child processes: no Python thread starts in this process, and the event
        loop keeps turning during Apply (a 50 ms timer ticks at least 5 times per second of the job)."""
        planningCT, planningSeg, dailyCT, reference = self.selectPair(905)
        self.parameters.output = type(self.parameters.output)("registration")
        jobs = runtimeJobs()
        timer, ticks = jobs.count_ticks(50) if jobs is not None else (None, [])
        try:
            with noPythonThreads():
                started = time.monotonic()
                self.ui.applyButton.click()
                self.assertIsInstance(self.widget._job, ProcessJob)
                self.assertEqual(self.ui.applyButton.text, "Cancel")
                waitUntil(lambda: not self.widget.isRunning())
                seconds = time.monotonic() - started
        finally:
            if timer is not None:
                timer.stop()
        self.assertIn("Created", self.ui.statusLabel.text)
        if jobs is not None:
            print(f"AdaptiveRecontour Apply in a child process: {seconds:.1f} s, {len(ticks)} timer ticks "
                  f"({len(ticks) / seconds:.1f} per s)")
            self.assertGreaterEqual(len(ticks), 5 * seconds, "the event loop stalled during the job")
        result = self.parameters.resultSegmentation
        self.assertEqual(result.GetName(), "daily CT recontoured")
        self.assertEqual(result.GetAttribute("AdaptiveRecontour.Output"), "registration")  # --use registration
        transform = self.parameters.resultTransform
        self.assertTrue(transform.IsA("vtkMRMLGridTransformNode"))
        propagated = slicer.mrmlScene.GetNodeByID(result.GetAttribute("AdaptiveRecontour.Propagated"))
        self.assertEqual(propagated.GetTransformNodeID(), transform.GetID())

        # Evaluate in a child: the same numbers as the Logic's in-process evaluation
        self.ui.referenceSegmentationSelector.setCurrentNode(reference)
        with noPythonThreads():
            self.ui.evaluateButton.click()
            self.assertIsInstance(self.widget._evaluationJob, ProcessJob)
            waitUntil(lambda: not self.widget.isEvaluating())
        table = self.widget.lastTableNode
        self.assertIsNotNone(table, self.ui.evaluateStatusLabel.text)
        self.assertEqual(table.GetNumberOfRows(), 5)
        expected, _ = self.widget.logic.evaluate(result, reference, dailyCT, transform, createTable=False)
        from mednets import mrml

        rows = mrml.table_to_rows(table)
        for row, want in zip(rows, expected):
            self.assertEqual(row["structure"], want["structure"])
            for key in ("dice", "msd_mm", "hd_mm", "jacobian_std", "folding_fraction"):
                if want[key] == want[key]:  # not NaN
                    self.assertAlmostEqual(float(row[key]), want[key], places=4, msg=key)
        print("AdaptiveRecontour Evaluate in a child process: "
              + ", ".join(f"{r['structure']} DSC {float(r['dice']):.3f}" for r in rows[:4]))

        # Train (2 iterations, a small network) in a child; the new model is listed and selected
        self.parameters.trainingFolder = self.folder / "pairs"
        self.parameters.trainingOutputFolder = self.folder / "run"
        self.ui.addCaseButton.click()
        self.assertIn("Added", self.ui.trainingStatusLabel.text)
        self.parameters.iterations = 2
        self.widget.trainingOptions = {"filters": (4, 6, 8), "patch_size": 48, "seed": 1}
        logLines = []
        original = self.widget._onTrainingLog
        self.widget._onTrainingLog = lambda message: (logLines.append(message), original(message))
        try:
            with noPythonThreads():
                self.ui.trainButton.click()
                self.assertIsInstance(self.widget._trainingJob, ProcessJob)
                waitUntil(lambda: not self.widget.isTraining())
        finally:
            del self.widget._onTrainingLog
        self.assertIn("Training finished", self.ui.trainingStatusLabel.text)
        self.assertTrue((self.folder / "run" / "model.safetensors").is_file())
        self.assertEqual(self.ui.modelComboBox.currentText, "model")
        self.assertIn(str(self.folder / "run"), self.widget.logic.trainingOutputFolders)
        print(f"AdaptiveRecontour training log lines from the child: {len(logLines)} ({logLines[:2]})")

    def test_CancelAddsNothing(self):
        """Cancel a running child (after its first progress): the panel is idle within 2 s, nothing was added, the
        job folder is gone."""
        self.selectPair(906)
        nodes = slicer.mrmlScene.GetNumberOfNodes()
        self.ui.applyButton.click()
        job = self.waitForChildOutput()
        clicked = time.monotonic()
        self.ui.applyButton.click()  # Cancel
        waitUntil(lambda: not self.widget.isRunning())
        latency = time.monotonic() - clicked
        print(f"AdaptiveRecontour cancel latency (click to idle panel): {latency:.2f} s")
        self.assertLess(latency, 2.0)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes)
        self.assertIn("Cancelled", self.ui.statusLabel.text)
        self.assertEqual(self.ui.applyButton.text, "Apply")
        self.assertFalse(job.folder.exists())

    def test_KilledChildLeavesSceneUnchanged(self):
        """SIGKILL the child mid-Apply (as an out-of-memory killer would): the scene is as it was (nodes, names,
        content), the panel names the kill, the job folder is removed."""
        jobs = runtimeJobs()
        if jobs is None:
            self.skipTest("needs the test runtime's slicer_test_runtime.jobs")
        self.selectPair(907)
        # the scene's subject hierarchy singleton exists in Slicer from the start; the runtime makes it on first use
        slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        before = jobs.scene_fingerprint()
        self.ui.applyButton.click()
        job = self.widget.jobs.job("recontouring")
        jobs.kill_job_child(job)
        waitUntil(lambda: not self.widget.isRunning())
        self.assertEqual(jobs.scene_fingerprint(), before)
        self.assertIn("SIGKILL", self.ui.statusLabel.text)
        self.assertFalse(job.folder.exists())
        self.assertEqual(self.ui.applyButton.text, "Apply")

    def test_FailingChildShowsItsMessage(self):
        """A training option the configuration does not have: the child exits 2 and its one-line message is shown
        in the panel (and in Slicer's error display); nothing is added, the job folder is gone."""
        self.selectPair(908)
        self.parameters.trainingFolder = self.folder / "pairs"
        self.parameters.trainingOutputFolder = self.folder / "run"
        self.parameters.referenceSegmentation = self.ui.planningSegmentationSelector.currentNode()
        self.ui.addCaseButton.click()
        self.widget.trainingOptions = {"no_such_field": 3}
        nodes = slicer.mrmlScene.GetNumberOfNodes()
        self.ui.trainButton.click()
        job = self.widget._trainingJob
        self.assertIsInstance(job, ProcessJob)
        waitUntil(lambda: not self.widget.isTraining())
        text = self.ui.trainingStatusLabel.text
        self.assertTrue(text.startswith("Error:"), text)
        self.assertIn("no_such_field", text)
        self.assertEqual(len(text.splitlines()), 1)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes)
        self.assertFalse(job.folder.exists())
        self.assertFalse((self.folder / "run" / "model.safetensors").exists())
        self.assertEqual(self.ui.trainButton.text, "Start training")
