"""The "MedNets" Segment Editor effect: run one of the SlicerMedNets networks inside a box or around a clicked point
and add what it finds to the selected segment, with the editor's undo, never touching other segments.

Loaded by Slicer's effect adaptor (``qSlicerSegmentEditorScriptedEffect.setPythonSource``), which expects the class
name ``SegmentEditorEffect``; registered by the hidden module ``SegmentEditorMedNets``.
"""

from __future__ import annotations

import logging
import os
from typing import Optional, Sequence

import numpy as np
import qt
import slicer
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

from mednets import mrml
from mednets.widgets import DeviceChoice, show_error

from SegmentEditorMedNetsLib.methods import RegionMethod, available_methods
from SegmentEditorMedNetsLib.regions import (box_around_point, box_of_roi, component_at_point, inside_roi)

REGION_BOX, REGION_POINT = "box", "point"
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

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

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
        self.statusLabel = qt.QLabel("")
        self.statusLabel.setWordWrap(True)
        form.addRow(self.statusLabel)
        self.scriptedEffect.addOptionsWidget(frame)

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

    def onApply(self) -> None:
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

    def applyInBox(self, roiNode) -> int:
        """Segment inside the markups ROI ``roiNode``; returns the number of voxels added."""
        center, size = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
        roiNode.GetCenterWorld(center)
        roiNode.GetSizeWorld(size)
        axes = np.array([[roiNode.GetObjectToWorldMatrix().GetElement(r, c) for c in range(3)] for r in range(3)])
        axes = axes / np.linalg.norm(axes, axis=0)
        return self._apply(REGION_BOX, center=center, size=size, axes=axes)

    def applyAtPoint(self, pointRas: Sequence[float]) -> int:
        """Segment around ``pointRas`` (keep the structure nearest to it); returns the number of voxels added."""
        return self._apply(REGION_POINT, center=list(pointRas), radius=float(self.radiusSpinBox.value))

    # ------------------------------------------------------------------------------------------------ work
    def _apply(self, mode: str, center, size=None, axes=None, radius: float = DEFAULT_RADIUS_MM) -> int:
        self.lastChangedVoxels = 0
        try:
            added = self._segmentRegion(mode, center, size, axes, radius)
        except Exception as error:
            logging.exception("MedNets effect failed")
            show_error(self.statusLabel, str(error), "MedNets effect")
            return 0
        self.lastChangedVoxels = added
        return added

    def _segmentRegion(self, mode, center, size, axes, radius) -> int:
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
        (k0, j0, i0), (k1, j1, i1) = box
        self.statusLabel.setText(f"Running {method.module} ...")
        slicer.app.processEvents()
        crop = volume.crop(*box)
        if method.whole_image:
            mask = method.segment(volume, structure, self._device())[k0:k1, j0:j1, i0:i1]
        else:  # the region plus the context the network needs, then the region's part
            margin = method.context_voxels(self._device(), volume.spacing)
            start = [max(0, first - extra) for first, extra in zip(box[0], margin)]
            stop = [min(size, last + extra) for size, last, extra in zip(volume.shape, box[1], margin)]
            context = method.segment(volume.crop(start, stop), structure, self._device())
            (c0, c1, c2) = (k0 - start[0], j0 - start[1], i0 - start[2])
            mask = context[c0:c0 + k1 - k0, c1:c1 + j1 - j0, c2:c2 + i1 - i0]
        if mode == REGION_BOX:
            mask &= inside_roi(crop, center, size, axes)
        else:
            mask = component_at_point(mask, crop, center, radius)
        whole = np.zeros(volume.shape, dtype=bool)
        whole[k0:k1, j0:j1, i0:i1] = mask
        whole &= ~self._otherSegments(segmentationNode, segmentId, source)
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
