"""HarnessThreshold: a test-only scripted module that proves the SlicerMedNets test runtime.

It thresholds a scalar volume into a NEW segmentation (one segment), the way every SlicerMedNets module runs its work:
the widget copies the input out of MRML, computes in a worker thread (``mednets.jobs.BackgroundJob``) while a QTimer
polls progress, Apply turns into Cancel, and the result node is created on the GUI thread only once the computation
succeeded. The same file runs in 3D Slicer and under pytest (Testing/runtime).
"""

from __future__ import annotations

import logging
from typing import Annotated, Optional

import numpy as np
import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import *  # noqa: F403 - Slicer's module convention
from slicer.util import VTKObservationMixin
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from mednets.jobs import BackgroundJob
from mednets.progress import CancelCallback, OperationCancelled, ProgressCallback, check_cancel, report


class HarnessThreshold(ScriptedLoadableModule):  # noqa: F405
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)  # noqa: F405
        self.parent.title = _("Harness Threshold")
        self.parent.categories = [_("Testing")]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["SlicerMedNets developers"]
        self.parent.helpText = _("Test-only module of SlicerMedNets: thresholds a volume into a new segmentation. "
                                 "It exists to prove that modules run unchanged in Slicer and in the test runtime.")
        self.parent.acknowledgementText = _("Part of SlicerMedNets. Research use only, not for clinical use.")


@parameterNodeWrapper
class HarnessThresholdParameterNode:
    """inputVolume: volume to threshold; threshold: lowest value inside the segment; outputSegmentation: optional
    existing segmentation to write into (a new one is created when empty)."""

    inputVolume: vtkMRMLScalarVolumeNode
    threshold: Annotated[float, WithinRange(-1024.0, 3071.0)] = 100.0
    outputSegmentation: vtkMRMLSegmentationNode


class HarnessThresholdWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):  # noqa: F405
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)  # noqa: F405
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job: Optional[BackgroundJob] = None
        self._jobTarget = None  # (input volume, output segmentation or None) of the running job

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)  # noqa: F405
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/HarnessThreshold.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = HarnessThresholdLogic()
        self.ui.progressBar.hide()
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(50)
        self._pollTimer.timeout.connect(self._onPoll)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.clicked.connect(self.onApplyButton)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._cancelJob()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelJob()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, parameterNode: Optional[HarnessThresholdParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self._job is not None:
            return  # the button is the Cancel button while a job runs
        canApply = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.setEnabled(canApply)
        self.ui.applyButton.setToolTip(_("Threshold the input volume into a segmentation.") if canApply
                                       else _("Select an input volume."))

    def isRunning(self) -> bool:
        return self._job is not None

    def onApplyButton(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.ui.statusLabel.setText(_("Cancelling..."))
            return
        inputVolume = self._parameterNode.inputVolume
        try:
            voxels = self.logic.inputArray(inputVolume)
        except ValueError as error:
            self._showError(str(error))
            return
        self._jobTarget = (inputVolume, self._parameterNode.outputSegmentation)
        self._job = BackgroundJob(self.logic.computeMask, voxels, self._parameterNode.threshold).start()
        self.ui.applyButton.setText(_("Cancel"))
        self.ui.applyButton.setToolTip(_("Stop thresholding; nothing is added to the scene."))
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.show()
        self.ui.statusLabel.setText(_("Thresholding..."))
        self._pollTimer.start()

    def _onPoll(self) -> None:
        finished = self._job.done  # read first: once done, poll() returns the final event too
        for event in self._job.poll():
            if event.kind == "progress":
                self.ui.progressBar.setValue(int(100 * event.fraction))
                self.ui.statusLabel.setText(event.message)
        if finished:
            self._finishJob()

    def _finishJob(self) -> None:
        self._pollTimer.stop()
        job, (inputVolume, outputSegmentation) = self._job, self._jobTarget
        self._job, self._jobTarget = None, None
        self.ui.applyButton.setText(_("Apply"))
        self.ui.progressBar.hide()
        self._checkCanApply()
        try:
            segmentationNode = self.logic.createSegmentation(inputVolume, job.result(timeout=0), outputSegmentation)
        except OperationCancelled:
            self.ui.statusLabel.setText(_("Cancelled: nothing was added to the scene."))
        except Exception as error:  # noqa: BLE001 - any failure is reported in the panel
            logging.exception("HarnessThreshold failed")
            self._showError(str(error))
        else:
            self.ui.statusLabel.setText(_("Created segmentation '{name}' ({seconds:.1f} s).").format(
                name=segmentationNode.GetName(), seconds=job.elapsed))

    def _cancelJob(self) -> None:
        """Stop a running job for good (scene closing, module unloading); its result is dropped."""
        if self._job is not None:
            self._job.cancel()
            self._job.wait(10.0)
            self._finishJob()  # reports a job that did not stop in time as an error

    def _showError(self, message: str) -> None:
        self.ui.statusLabel.setText(_("Error: {message}").format(message=message))
        slicer.util.errorDisplay(_("Thresholding failed: {message}").format(message=message))


class HarnessThresholdLogic(ScriptedLoadableModuleLogic):  # noqa: F405
    """Threshold a scalar volume into a new segmentation. Scripting: ``HarnessThresholdLogic().process(volume, 100)``."""

    SEGMENT_NAME = "Above threshold"
    SEGMENT_COLOR = (0.95, 0.55, 0.15)

    def getParameterNode(self) -> HarnessThresholdParameterNode:
        return HarnessThresholdParameterNode(super().getParameterNode())

    def process(self, inputVolume, threshold: float, outputSegmentation=None,
                progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None):
        """Segment the voxels of ``inputVolume`` at or above ``threshold`` (blocking; GUI thread).

        Returns ``outputSegmentation`` (segment replaced) or a new vtkMRMLSegmentationNode named after the input.
        Raises ``ValueError`` for a missing or empty input, ``OperationCancelled`` when ``cancel()`` turns true; in
        both cases the scene is left as it was.
        """
        mask = self.computeMask(self.inputArray(inputVolume), threshold, progress=progress, cancel=cancel)
        return self.createSegmentation(inputVolume, mask, outputSegmentation)

    @staticmethod
    def inputArray(inputVolume) -> np.ndarray:
        """A copy of the volume's voxels (K, J, I order); ``ValueError`` if there is no volume or it has no voxels."""
        if inputVolume is None:
            raise ValueError(_("No input volume: select the scalar volume to threshold."))
        image = inputVolume.GetImageData()
        if image is None or image.GetNumberOfPoints() == 0 or image.GetPointData().GetScalars() is None:
            raise ValueError(_("The input volume '{name}' is empty: it has no voxels.").format(name=inputVolume.GetName()))
        return np.array(slicer.util.arrayFromVolume(inputVolume), copy=True)

    @staticmethod
    def computeMask(voxels: np.ndarray, threshold: float, progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelCallback] = None) -> np.ndarray:
        """``uint8`` mask of ``voxels >= threshold``, slice by slice (progress and cancel per slice). Pure numpy:
        safe to run in a worker thread."""
        mask = np.empty(voxels.shape, dtype=np.uint8)
        for k in range(voxels.shape[0]):
            check_cancel(cancel)
            np.greater_equal(voxels[k], threshold, out=mask[k], casting="unsafe")
            report(progress, (k + 1) / voxels.shape[0], _("Thresholding slice {k} of {n}").format(k=k + 1, n=voxels.shape[0]))
        return mask

    def createSegmentation(self, inputVolume, mask: np.ndarray, outputSegmentation=None):
        """Write ``mask`` (input's geometry) as the segment ``SEGMENT_NAME``; GUI thread only. A segmentation created
        here is removed again if writing fails, so no half-made node stays in the scene."""
        if inputVolume is None or not slicer.mrmlScene.IsNodePresent(inputVolume):
            raise ValueError(_("The input volume was removed from the scene before the result could be stored."))
        created = outputSegmentation is None
        segmentationNode = outputSegmentation or slicer.mrmlScene.AddNewNodeByClass(
            "vtkMRMLSegmentationNode", slicer.mrmlScene.GenerateUniqueName(f"{inputVolume.GetName()} threshold"))
        try:
            if created:
                segmentationNode.CreateDefaultDisplayNodes()
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(inputVolume)
            segmentation = segmentationNode.GetSegmentation()
            segmentId = segmentation.GetSegmentIdBySegmentName(self.SEGMENT_NAME) or segmentation.AddEmptySegment(
                "", self.SEGMENT_NAME, self.SEGMENT_COLOR)
            slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentationNode, segmentId, inputVolume)
            self._placeNextTo(segmentationNode, inputVolume)
        except Exception:
            if created:
                for index in reversed(range(segmentationNode.GetNumberOfDisplayNodes())):
                    slicer.mrmlScene.RemoveNode(segmentationNode.GetNthDisplayNode(index))
                slicer.mrmlScene.RemoveNode(segmentationNode)
            raise
        return segmentationNode

    @staticmethod
    def _placeNextTo(node, inputVolume) -> None:
        """Put ``node`` under the input's parent (study) in the subject hierarchy, as DICOM export expects."""
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        if shNode is not None:
            inputItem, item = shNode.GetItemByDataNode(inputVolume), shNode.GetItemByDataNode(node)
            if inputItem and item:
                shNode.SetItemParent(item, shNode.GetItemParent(inputItem))


class HarnessThresholdTest(ScriptedLoadableModuleTest):  # noqa: F405
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_HarnessThreshold1()
        self.setUp()
        self.test_HarnessThresholdBadInput()

    def test_HarnessThreshold1(self):
        """A synthetic volume with known geometry; the segment must equal numpy's ``voxels >= threshold``."""
        self.delayDisplay("Starting the test")
        voxels = np.random.default_rng(7).integers(-300, 500, size=(6, 20, 24)).astype(np.int16)
        ijkToRas = np.diag([-0.8, -0.7, 2.5, 1.0])
        ijkToRas[:3, 3] = (12.0, -30.0, 5.0)
        inputVolume = slicer.util.addVolumeFromArray(voxels, ijkToRAS=ijkToRas, name="Synthetic")
        logic = HarnessThresholdLogic()
        reports = []
        segmentationNode = logic.process(inputVolume, 120.0, progress=lambda f, m: reports.append(f))
        segmentation = segmentationNode.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), 1)
        segmentId = segmentation.GetSegmentIdBySegmentName(logic.SEGMENT_NAME)
        segment = segmentation.GetSegment(segmentId)
        np.testing.assert_allclose(segment.GetColor(), logic.SEGMENT_COLOR, atol=1e-6)
        self.assertEqual(segmentationNode.GetName(), "Synthetic threshold")
        result = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, inputVolume)
        self.assertEqual(int(result.sum()), int((voxels >= 120).sum()))
        np.testing.assert_array_equal(result, (voxels >= 120).astype(result.dtype))
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(inputVolume), voxels)  # input untouched
        self.assertEqual(reports[-1], 1.0)
        self.delayDisplay("Test passed")

    def test_HarnessThresholdBadInput(self):
        """Missing and empty inputs raise ValueError and add nothing to the scene."""
        logic = HarnessThresholdLogic()
        emptyVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Empty")
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaisesRegex(ValueError, "No input volume"):
            logic.process(None, 0.0)
        with self.assertRaisesRegex(ValueError, "'Empty' is empty"):
            logic.process(emptyVolume, 0.0)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.delayDisplay("Test passed")
