"""The "MedNets" Segment Editor effect: run one of the SlicerMedNets networks inside a box or around a clicked point
and add what it finds to the selected segment, with the editor's undo, never touching other segments.

Loaded by Slicer's effect adaptor (``qSlicerSegmentEditorScriptedEffect.setPythonSource``): Slicer
(``Modules/Loadable/Segmentations/EditorEffects/qSlicerSegmentEditorScriptedEffect.cxx`` and
``Base/QTCore/qSlicerScriptedUtils.cxx``) loads this file AS the module named after its parent folder
(``SegmentEditorMedNetsEffect``) and instantiates the class named after the file (``SegmentEditorEffect``). That is
why this file lives in its own folder: in ``SegmentEditorMedNetsLib/`` it would become ``sys.modules
["SegmentEditorMedNetsLib"]`` itself and its imports from that package would fail. Registered by the hidden module
``SegmentEditorMedNets``.

The network runs in a child process (``python -m SegmentEditorMedNetsLib segment``, ``PythonSlicer`` in Slicer): in
real Slicer a Python thread of the Slicer process starves (PythonQt keeps the GIL in the main thread) and a run on the
GUI thread freezes the application. The effect writes the image the network needs to a private job folder, polls the
child's JSON progress with a QTimer (``mednets.widgets.JobPoller``) and, once it succeeded, reads the mask and adds it
to the selected segment. A failed, cancelled or killed child changes nothing.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Optional, Sequence

import numpy as np
import qt
import slicer
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

from mednets import mrml
from mednets.jobs import ProcessJob, job_folder, package_search_path
from mednets.progress import OperationCancelled
from mednets.widgets import DeviceChoice, JobPoller, ensure_packages, show_error

from SegmentEditorMedNetsLib.methods import RegionMethod, available_methods
from SegmentEditorMedNetsLib.regions import box_around_point, box_of_roi

REGION_BOX, REGION_POINT = "box", "point"
JOB_NAME = "segmentation"
DEFAULT_RADIUS_MM = 30.0


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    """Effect adaptor's Python side (see the module docstring)."""

    def __init__(self, scriptedEffect):
        scriptedEffect.name = "MedNets"
        scriptedEffect.perSegment = True  # it changes the selected segment
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.methods = []
        self.lastChangedVoxels = 0
        self.poller = None  # a mednets.widgets.JobPoller, made with the options frame (it owns a qt.QTimer)
        self.lastError = ""

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def cleanup(self):
        """The editor drops the effect: end a running child (its result is discarded, nothing changes)."""
        if self.poller is not None:
            self.poller.stop_all(timeout=2.0)
        AbstractScriptedSegmentEditorEffect.cleanup(self)

    def icon(self):
        path = os.path.join(os.path.dirname(__file__), "SegmentEditorEffect.png")
        return qt.QIcon(path) if os.path.exists(path) else qt.QIcon()

    def helpText(self):
        return ("<html>Segment with a SlicerMedNets network, locally.<p>Choose the network and the structure, then "
                "either a box (a markups ROI) and <b>Apply</b>, or <b>Around a point</b> and click in a slice view "
                "(or pick a point list). What the network finds there is added to the selected segment; other "
                "segments are never changed; Undo reverts it. Research use only, not for clinical use.</html>")

    # ------------------------------------------------------------------------------------------------ options
    def setupOptionsFrame(self):
        self.methods = available_methods()
        form = qt.QFormLayout()
        frame = qt.QWidget()
        frame.setLayout(form)

        self.methodComboBox = qt.QComboBox()
        for method in self.methods:
            self.methodComboBox.addItem(method.title)
        self.methodComboBox.setToolTip("The SlicerMedNets network to run (only installed modules are listed).")
        form.addRow("Network:", self.methodComboBox)
        self.structureComboBox = qt.QComboBox()
        self.structureComboBox.setToolTip("The structure of the network's output added to the selected segment.")
        form.addRow("Structure:", self.structureComboBox)

        self.regionComboBox = qt.QComboBox()
        self.regionComboBox.addItem("Inside a box (ROI)", REGION_BOX)
        self.regionComboBox.addItem("Around a point", REGION_POINT)
        form.addRow("Region:", self.regionComboBox)
        self.roiSelector = self._nodeSelector("vtkMRMLMarkupsROINode", "The box the network works in.")
        form.addRow("Box:", self.roiSelector)
        self.pointSelector = self._nodeSelector("vtkMRMLMarkupsFiducialNode",
                                                "Its first point is the centre (or click in a slice view).")
        form.addRow("Point:", self.pointSelector)
        self.radiusSpinBox = qt.QDoubleSpinBox()
        self.radiusSpinBox.setRange(2.0, 500.0)
        self.radiusSpinBox.setValue(DEFAULT_RADIUS_MM)
        self.radiusSpinBox.setSuffix(" mm")
        self.radiusSpinBox.setToolTip("Half the edge of the cube around the point; the structure found nearest to "
                                      "the point within this distance is added.")
        form.addRow("Neighbourhood:", self.radiusSpinBox)
        self.deviceComboBox = qt.QComboBox()
        for choice in DeviceChoice:
            self.deviceComboBox.addItem(choice.label(), choice.value)
        form.addRow("Device:", self.deviceComboBox)

        self.applyButton = qt.QPushButton("Apply")
        self.applyButton.setToolTip("Run the network in the region and add the result to the selected segment.")
        form.addRow(self.applyButton)
        self.progressBar = qt.QProgressBar()
        self.progressBar.setRange(0, 100)
        self.progressBar.setVisible(False)
        form.addRow(self.progressBar)
        self.statusLabel = qt.QLabel("")
        self.statusLabel.setWordWrap(True)
        form.addRow(self.statusLabel)
        self.scriptedEffect.addOptionsWidget(frame)
        self.poller = JobPoller()

        self.methodComboBox.currentIndexChanged.connect(self.onMethodChanged)
        self.regionComboBox.currentIndexChanged.connect(self.onRegionChanged)
        self.applyButton.clicked.connect(self.onApply)
        if not self.methods:
            self.statusLabel.setText("No SlicerMedNets module with a network is installed.")
            self.applyButton.setEnabled(False)
        self.onMethodChanged()
        self.onRegionChanged()

    def _nodeSelector(self, nodeType: str, tip: str):
        selector = slicer.qMRMLNodeComboBox()
        selector.setNodeTypes([nodeType])
        selector.setNoneEnabled(True)
        selector.setAddEnabled(False)
        selector.setMRMLScene(slicer.mrmlScene)
        selector.setToolTip(tip)
        return selector

    def selectedMethod(self) -> Optional[RegionMethod]:
        index = self.methodComboBox.currentIndex
        return self.methods[index] if 0 <= index < len(self.methods) else None

    def _regionMode(self) -> str:
        return self.regionComboBox.currentData

    def _device(self) -> str:
        return self.deviceComboBox.currentData

    def onMethodChanged(self, index: int = -1) -> None:
        self.structureComboBox.clear()
        method = self.selectedMethod()
        if method is None:
            return
        try:
            for name in method.structures(self._device()):
                self.structureComboBox.addItem(name)
        except Exception as error:  # a missing or broken model: say so, keep the effect usable for other networks
            logging.exception("MedNets effect: could not load the %s model", method.module)
            self.statusLabel.setText(f"Error: the {method.module} model could not be loaded: {error}")

    def onRegionChanged(self, index: int = -1) -> None:
        pointMode = self._regionMode() == REGION_POINT
        self.roiSelector.setEnabled(not pointMode)
        self.pointSelector.setEnabled(pointMode)
        self.radiusSpinBox.setEnabled(pointMode)

    # ------------------------------------------------------------------------------------------------ interaction
    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        """In "around a point" mode a left click in a slice view segments around the clicked position."""
        import vtk

        if eventId != vtk.vtkCommand.LeftButtonPressEvent or self._regionMode() != REGION_POINT:
            return False
        if viewWidget.className() != "qMRMLSliceWidget":
            return False
        ras = self.xyToRas(callerInteractor.GetEventPosition(), viewWidget)
        self.applyAtPoint(ras)
        return True

    def isRunning(self) -> bool:
        return self.poller is not None and self.poller.running(JOB_NAME)

    def job(self):
        """The running child-process job (a ``mednets.jobs.ProcessJob``), or None."""
        return self.poller.job(JOB_NAME) if self.poller is not None else None

    def onApply(self) -> None:
        if self.isRunning():  # the button reads "Cancel" while the network runs
            self.poller.cancel(JOB_NAME)
            self.statusLabel.setText("Cancelling ...")
            return
        if self._regionMode() == REGION_POINT:
            node = self.pointSelector.currentNode()
            if node is None or node.GetNumberOfControlPoints() == 0:
                show_error(self.statusLabel, "choose a point list with a point, or click in a slice view",
                           "MedNets effect")
                return
            position = [0.0, 0.0, 0.0]
            node.GetNthControlPointPositionWorld(0, position)
            self.applyAtPoint(position)
        else:
            roi = self.roiSelector.currentNode()
            if roi is None:
                show_error(self.statusLabel, "choose a box (markups ROI) first", "MedNets effect")
                return
            self.applyInBox(roi)

    def applyInBox(self, roiNode, wait: bool = False) -> int:
        """Segment inside the markups ROI ``roiNode`` (in a child process). With ``wait`` keep the GUI running until
        the child ended and return the number of voxels added; else return 0 at once (see ``lastChangedVoxels``)."""
        center, size = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
        roiNode.GetCenterWorld(center)
        roiNode.GetSizeWorld(size)
        axes = np.array([[roiNode.GetObjectToWorldMatrix().GetElement(r, c) for c in range(3)] for r in range(3)])
        axes = axes / np.linalg.norm(axes, axis=0)
        return self._apply(REGION_BOX, center=center, size=size, axes=axes, wait=wait)

    def applyAtPoint(self, pointRas: Sequence[float], wait: bool = False) -> int:
        """Segment around ``pointRas`` (keep the structure nearest to it), in a child process; ``wait`` as in
        :meth:`applyInBox`."""
        return self._apply(REGION_POINT, center=list(pointRas), radius=float(self.radiusSpinBox.value), wait=wait)

    def waitForJob(self, timeout: float = 600.0) -> None:
        """Keep the GUI running (the poller's QTimer fires) until the running job ended (scripts and tests)."""
        deadline = time.monotonic() + timeout
        while self.isRunning():
            if time.monotonic() > deadline:
                self.poller.stop(JOB_NAME)
                break
            slicer.app.processEvents()
            time.sleep(0.02)

    # ------------------------------------------------------------------------------------------------ work
    def _apply(self, mode: str, center, size=None, axes=None, radius: float = DEFAULT_RADIUS_MM,
               wait: bool = False) -> int:
        self.lastChangedVoxels = 0
        self.lastError = ""
        if self.isRunning():
            show_error(self.statusLabel, "the network is still running: wait for it or cancel it", "MedNets effect")
            return 0
        try:
            request = self._prepare(mode, center, size, axes, radius)
        except Exception as error:
            logging.exception("MedNets effect failed")
            self.lastError = str(error)
            show_error(self.statusLabel, str(error), "MedNets effect")
            return 0
        if request is None:
            return 0
        if not ensure_packages(self.statusLabel, "SegmentEditorMedNets"):  # GUI thread, before the job
            return 0
        try:
            self._start(request)
        except Exception as error:
            logging.exception("MedNets effect could not start its job")
            self.lastError = str(error)
            show_error(self.statusLabel, str(error), "MedNets effect")
            return 0
        if wait:
            self.waitForJob()
        return self.lastChangedVoxels

    def _prepare(self, mode, center, size, axes, radius):
        """GUI thread: check the inputs, cut out the image the network needs; returns the job's request."""
        editor = self.scriptedEffect.parameterSetNode()
        source = editor.GetSourceVolumeNode() if hasattr(editor, "GetSourceVolumeNode") else \
            editor.GetMasterVolumeNode()
        segmentationNode = editor.GetSegmentationNode()
        segmentId = editor.GetSelectedSegmentID()
        if source is None or segmentationNode is None or not segmentId:
            raise ValueError("select a source volume and a segment first")
        method = self.selectedMethod()
        if method is None:
            raise ValueError("no network is available")
        structure = self.structureComboBox.currentText
        volume = mrml.volume_from_node(source)
        if mode == REGION_BOX:
            box = box_of_roi(volume, center, size, axes)
        else:
            box = box_around_point(volume, center, radius)
        if method.whole_image:  # the network sees the whole image; the region's part is kept
            start, stop = (0, 0, 0), tuple(volume.shape)
        else:  # the region plus the context the network needs
            margin = method.context_voxels(self._device(), volume.spacing)
            start = tuple(max(0, first - extra) for first, extra in zip(box[0], margin))
            stop = tuple(min(n, last + extra) for n, last, extra in zip(volume.shape, box[1], margin))
        region = [b - a for a, b in zip(start, box[0])] + [b - a for a, b in zip(start, box[1])]
        def joined(values) -> str:
            return ",".join(repr(float(v)) for v in values)

        # "--option=value": a value starting with "-" (a negative coordinate) would read as an option otherwise.
        args = ["segment", f"--method={method.module.lower()}", f"--structure={structure}",
                "--region=" + ",".join(str(int(v)) for v in region), f"--device={self._device()}"]
        if mode == REGION_BOX:
            args += ["--box-center=" + joined(center), "--box-size=" + joined(size),
                     "--box-axes=" + joined(np.asarray(axes).ravel())]
        else:
            args += ["--point=" + joined(center), f"--radius={float(radius)!r}"]
        return dict(method=method, structure=structure, volume=volume, box=box, input=volume.crop(start, stop),
                    args=args, source=source, segmentationNode=segmentationNode, segmentId=segmentId)

    def _start(self, request) -> None:
        from mednets.io import write_volume

        method = request["method"]
        folder = job_folder("SegmentEditorMedNets")
        try:
            write_volume(request["input"], folder / "input.nrrd")
        except Exception:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise
        args = request["args"] + [f"--input={folder / 'input.nrrd'}", f"--output={folder / 'mask.nrrd'}"]
        # The child finds the code through PYTHONPATH: this package, the network's <Module>Lib and mednets (Slicer
        # puts module folders on sys.path of its own process only).
        search_path = package_search_path("SegmentEditorMedNetsLib", f"{method.module}Lib", "mednets")
        job = ProcessJob("SegmentEditorMedNetsLib", args, folder, search_path=search_path,
                         name=f"MedNets effect ({method.module})")
        self.statusLabel.setText(f"Running {method.module} ...")
        self.progressBar.setValue(0)
        self.progressBar.setVisible(True)
        self.applyButton.setText("Cancel")
        self.applyButton.setToolTip("Stop the network (nothing is changed).")
        self.poller.start(JOB_NAME, job, self._onProgress, lambda finished: self._onFinished(finished, request))

    def _onProgress(self, event) -> None:
        self.progressBar.setValue(int(round(100 * (event.fraction or 0.0))))
        if event.message:
            self.statusLabel.setText(event.message)

    def _onFinished(self, job, request) -> None:
        self.progressBar.setVisible(False)
        self.applyButton.setText("Apply")
        self.applyButton.setToolTip("Run the network in the region and add the result to the selected segment.")
        try:
            result = job.result(timeout=0)
            self.lastChangedVoxels = self._applyMask(request, result.folder / "mask.nrrd")
        except OperationCancelled:
            self.statusLabel.setText("Cancelled: nothing changed.")
        except Exception as error:  # the child's error line (ProcessJobError), or a mask that does not fit
            logging.error("MedNets effect failed: %s", error)
            self.lastError = str(error)
            show_error(self.statusLabel, str(error), "MedNets effect")

    def _applyMask(self, request, maskPath) -> int:
        """GUI thread: paste the child's region mask, drop other segments' voxels, add it to the selected segment."""
        from mednets.io import read_volume

        editor = self.scriptedEffect.parameterSetNode()
        if editor.GetSegmentationNode() is not request["segmentationNode"] or \
                editor.GetSelectedSegmentID() != request["segmentId"]:
            raise ValueError("the selected segment changed while the network ran: nothing changed")
        volume, box, structure = request["volume"], request["box"], request["structure"]
        method = request["method"]
        (k0, j0, i0), (k1, j1, i1) = box
        mask = np.asarray(read_volume(maskPath).array) > 0
        if mask.shape != (k1 - k0, j1 - j0, i1 - i0):
            raise ValueError(f"the network's mask has shape {mask.shape}, not the region's")
        whole = np.zeros(volume.shape, dtype=bool)
        whole[k0:k1, j0:j1, i0:i1] = mask
        whole &= ~self._otherSegments(request["segmentationNode"], request["segmentId"], request["source"])
        added = int(np.count_nonzero(whole))
        if added == 0:
            self.statusLabel.setText(f"{method.module} found no {structure} in the region: nothing changed.")
            return 0
        self.scriptedEffect.saveStateForUndo()
        image = mrml.oriented_image(whole.astype(np.uint8), volume.ijk_to_ras)
        self.scriptedEffect.modifySelectedSegmentByLabelmap(
            image, slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeAdd)
        millilitres = added * float(np.prod(volume.spacing)) / 1000.0
        self.statusLabel.setText(f"Added {added} voxels ({millilitres:.2f} ml) of {structure} to the selected "
                                 "segment (Undo reverts it).")
        return added

    @staticmethod
    def _otherSegments(segmentationNode, segmentId: str, source) -> np.ndarray:
        """Voxels of the source grid that belong to any segment other than the selected one."""
        segmentation = segmentationNode.GetSegmentation()
        others = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())
                  if segmentation.GetNthSegmentID(i) != segmentId]
        if not others:
            return np.zeros(mrml.volume_from_node(source).shape, dtype=bool)
        labels, _mapping = mrml.labelmap_from_segmentation(segmentationNode, source, others)
        return labels > 0
