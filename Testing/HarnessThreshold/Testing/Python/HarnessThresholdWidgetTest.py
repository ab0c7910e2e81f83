"""Widget tests of HarnessThreshold: what a user does in the module panel.

The same file runs inside 3D Slicer (ctest through ``slicer_add_python_unittest``, or ``Testing/run_in_slicer.py``)
and under pytest with the test runtime (``Testing/test_harness_threshold.py``). It uses only the Slicer API, in
PythonQt style: widget properties are read as attributes (``statusLabel.text``) and changed with their setters.
"""

from __future__ import annotations

import threading
import time
import unittest

import numpy as np

import slicer
from mednets.progress import check_cancel, report

TIMEOUT_S = 20.0


def waitUntil(condition, timeout: float = TIMEOUT_S) -> None:
    """Keep the GUI running (timers fire) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} s")
        slicer.app.processEvents()
        time.sleep(0.01)


def segmentationNodes() -> list:
    return slicer.util.getNodesByClass("vtkMRMLSegmentationNode")


class HarnessThresholdWidgetTest(unittest.TestCase):
    def setUp(self):
        slicer.mrmlScene.Clear(0)
        self.widget = slicer.util.getModuleWidget("HarnessThreshold")
        self.widget.enter()
        self.ui = self.widget.ui

    def tearDown(self):
        self.widget.exit()

    def addSyntheticVolume(self, name: str = "Synthetic"):
        voxels = np.random.default_rng(3).integers(-200, 400, size=(5, 16, 18)).astype(np.int16)
        ijkToRas = np.diag([-1.2, -1.2, 3.0, 1.0])
        ijkToRas[:3, 3] = (40.0, 25.0, -60.0)
        return voxels, slicer.util.addVolumeFromArray(voxels, ijkToRAS=ijkToRas, name=name)

    def test_apply_creates_a_new_segmentation(self):
        voxels, volume = self.addSyntheticVolume()
        self.ui.inputSelector.setCurrentNode(volume)
        self.ui.thresholdSliderWidget.setValue(150.0)  # lives in the collapsed "Advanced" section
        parameters = self.widget.logic.getParameterNode()
        self.assertEqual(parameters.inputVolume.GetID(), volume.GetID())
        self.assertEqual(parameters.threshold, 150.0)
        self.assertTrue(self.ui.applyButton.enabled)
        existing = {node.GetID() for node in segmentationNodes()}

        self.ui.applyButton.click()
        self.assertEqual(self.ui.applyButton.text, "Cancel")
        waitUntil(lambda: not self.widget.isRunning())

        created = [node for node in segmentationNodes() if node.GetID() not in existing]
        self.assertEqual([node.GetName() for node in created], ["Synthetic threshold"])
        segmentation = created[0].GetSegmentation()
        segmentId = segmentation.GetSegmentIdBySegmentName("Above threshold")
        result = slicer.util.arrayFromSegmentBinaryLabelmap(created[0], segmentId, volume)
        self.assertEqual(int(result.sum()), int((voxels >= 150).sum()))
        np.testing.assert_array_equal(result, (voxels >= 150).astype(result.dtype))
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(volume), voxels)  # the input is untouched
        self.assertIn("Synthetic threshold", self.ui.statusLabel.text)
        self.assertEqual(self.ui.applyButton.text, "Apply")
        self.assertIsNone(self.ui.outputSelector.currentNode())  # the user's output choice is left alone

    def test_empty_input_is_reported_and_adds_nothing(self):
        empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Empty")
        self.ui.inputSelector.setCurrentNode(empty)
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()

        self.ui.applyButton.click()

        self.assertFalse(self.widget.isRunning())
        self.assertIn("'Empty' is empty", self.ui.statusLabel.text)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.assertEqual(self.ui.applyButton.text, "Apply")

    def test_cancel_leaves_no_segmentation(self):
        _, volume = self.addSyntheticVolume()
        self.ui.inputSelector.setCurrentNode(volume)
        started = threading.Event()

        def computeUntilCancelled(voxels, threshold, progress=None, cancel=None):
            report(progress, 0.25, "Waiting to be cancelled")
            started.set()
            deadline = time.monotonic() + TIMEOUT_S
            while time.monotonic() < deadline:
                check_cancel(cancel)
                time.sleep(0.005)
            raise AssertionError("the job was never cancelled")

        logic = self.widget.logic
        logic.computeMask = computeUntilCancelled
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        try:
            self.ui.applyButton.click()
            waitUntil(lambda: self.ui.statusLabel.text == "Waiting to be cancelled")  # progress reached the panel
            self.assertTrue(started.is_set())
            self.assertEqual(self.ui.applyButton.text, "Cancel")
            self.assertEqual(self.ui.progressBar.value, 25)
            self.ui.applyButton.click()
            waitUntil(lambda: not self.widget.isRunning())
        finally:
            del logic.computeMask

        self.assertEqual(segmentationNodes(), [])
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.assertIn("Cancelled", self.ui.statusLabel.text)
        self.assertEqual(self.ui.applyButton.text, "Apply")
