"""AxillaryLNDetect: two-stage 3D U-Net detection of axillary lymph nodes in contrast-enhanced CT (Altun et al.).

Stage 1 finds the axillary volume of interest (VOI) at 3 mm, stage 2 the lymph nodes at 1 mm inside it. Apply
creates a point list of the detected nodes (confidence and size in each point's description), a segmentation with the
detected blobs and the VOI; Evaluate compares the detections with reference nodes (a point list whose descriptions
give the short-axis diameter, or a segmentation) and fills a FROC table and plot; Train trains both stages. The Logic
class is the scripting API; the widget only gathers inputs and shows results. The same file runs in 3D Slicer and
under pytest (Testing/runtime).
"""

from __future__ import annotations

import enum
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import qt
import vtk

import slicer
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import *  # noqa: F403 - Slicer's module convention
from slicer.util import VTKObservationMixin

from mednets import mrml
from mednets.jobs import BackgroundJob
from mednets.progress import CancelCallback, OperationCancelled, ProgressCallback, report
from mednets.widgets import DeviceChoice, JobPoller, ModelSelector, TrainingCurve, chosen_folder, show_error

# torch-free imports only (the module loads before PyTorch is installed)
from AxillaryLNDetectLib.configs import DEFAULT_MODEL, MODULE_NAME, SEGMENT_LN, SEGMENT_VOI
from AxillaryLNDetectLib.inputs import (DEFAULT_REFERENCE_DIAMETER_MM, InputError, check_input_volume,
                                        parse_diameter_mm)

if TYPE_CHECKING:
    from AxillaryLNDetectLib.pipeline import DetectionResult

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
#: SNOMED CT terminology of the lymph-node segment (Slicer terminology entry string).
LN_TERMINOLOGY = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
                  "~SCT^59441001^Lymph node~^^~Anatomic codes - DICOM master list~^^~^^")
RESULT_ROLE = "AxillaryLNDetect.Segmentation"


# --------------------------------------------------------------------------------------------------------- module
class AxillaryLNDetect(ScriptedLoadableModule):  # noqa: F405
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)  # noqa: F405
        self.parent.title = _("Axillary LN Detect")
        self.parent.categories = [_("Segmentation"), _("SlicerMedNets")]
        self.parent.dependencies = ["Markups", "Segmentations"]
        self.parent.contributors = ["SlicerMedNets developers"]
        self.parent.helpText = _(
            "Detects axillary lymph nodes in contrast-enhanced CT with a two-stage 3D U-Net (Altun et al.): a first "
            "network finds the axillary region (VOI) at 3 mm, a second one the lymph nodes at 1 mm inside it. Apply "
            "adds a point list of the detected nodes (confidence and size in the descriptions) and a segmentation with "
            "the detections and the VOI. Evaluate computes FROC curves against reference nodes. Research use only, "
            "not for clinical use.")
        self.parent.acknowledgementText = _(
            "Method: H. C. Altun, G. Chlebus, C. Jacobs, H. Meine, B. van Ginneken, H. K. Hahn, Feasibility of "
            "end-to-end trainable two-stage U-Net for detection of axillary lymph nodes in contrast-enhanced CT based "
            "scans on sparse annotations. Part of SlicerMedNets (Apache-2.0).")
        # The bundled CT phantom in File > Download Sample Data (registered once the application has started).
        slicer.app.startupCompleted.connect(registerSampleData)


def registerSampleData() -> None:
    """Offer the bundled CT axilla phantom (and its reference lymph nodes) in Slicer's Sample Data module, offline."""
    from mednets.sampledata import register_with_slicer
    from AxillaryLNDetectLib.samples import SAMPLES

    register_with_slicer(SAMPLES)


# ------------------------------------------------------------------------------------------------ parameter node
AxillaryLNDetectDevice = DeviceChoice  # where the network runs (shared by all SlicerMedNets panels)


class AxillaryLNDetectCriterion(enum.Enum):
    """Hit criteria of the paper (sec. 2.4)."""

    OVERLAP = "overlap"
    CENTRE = "centre"

    def label(self) -> str:
        return {"overlap": _("Overlap (eq. 1)"), "centre": _("Centre of mass (eq. 2)")}[self.value]


@parameterNodeWrapper
class AxillaryLNDetectParameterNode:
    """Persistent settings of the panel (saved with the scene).

    inputVolume: CT in HU; model: chosen detector; device; voiThreshold / lnThreshold: probability thresholds (0.5);
    batchSize: windows per network call; resultPoints: the detections to evaluate; referencePoints /
    referenceSegmentation: the reference nodes; criterion: hit criterion; training folders and iterations.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: AxillaryLNDetectDevice = AxillaryLNDetectDevice.AUTO
    voiThreshold: Annotated[float, WithinRange(0.01, 0.99)] = 0.5
    lnThreshold: Annotated[float, WithinRange(0.01, 0.99)] = 0.5
    batchSize: Annotated[int, WithinRange(1, 64)] = 2
    resultPoints: vtkMRMLMarkupsFiducialNode
    referencePoints: vtkMRMLMarkupsFiducialNode
    referenceSegmentation: vtkMRMLSegmentationNode
    criterion: AxillaryLNDetectCriterion = AxillaryLNDetectCriterion.OVERLAP
    trainingFolder: Path
    trainingOutputFolder: Path
    iterations: Annotated[int, WithinRange(1, 1000000)] = 1000
    fineTune: bool = False  # Train starts from the selected detector's networks


# --------------------------------------------------------------------------------------------------------- widget
class AxillaryLNDetectWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):  # noqa: F405
    """The panel: gathers inputs, runs the Logic in background jobs (Apply becomes Cancel), shows results."""

    POLL_INTERVAL_MS = 100

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)  # noqa: F405
        VTKObservationMixin.__init__(self)
        self.logic: Optional[AxillaryLNDetectLogic] = None
        self._parameterNode: Optional[AxillaryLNDetectParameterNode] = None
        self._parameterNodeGuiTag = None
        self._jobInput = None
        self._evaluationName = ""
        self._trainingOutput: Optional[Path] = None
        self._trainingLog: List[str] = []
        self.trainingOptions: Dict[str, Any] = {}
        self.lastTableNode = None
        self.lastPlotChartNode = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)  # noqa: F405
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AxillaryLNDetect.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AxillaryLNDetectLogic()
        for widget in (self.ui.progressBar, self.ui.trainingProgressBar, self.ui.metricsTableView,
                       self.ui.frocPlotLabel, self.ui.trainingCurveLabel):
            widget.hide()
        self.jobs = JobPoller(self.POLL_INTERVAL_MS)  # detection, evaluation and training run in the background
        self.models = ModelSelector(self.ui.modelComboBox, lambda: self.logic.availableModels(), DEFAULT_MODEL,
                                    self._showModelListError)
        # the two stages train one after the other, each writing its own history.png (voi/, then ln/)
        self.curves = [TrainingCurve(self.ui.trainingCurveLabel, lambda: self.ui.trainCollapsibleButton.width)
                       for _stage in ("voi", "ln")]
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.clicked.connect(self.onApplyButton)
        self.ui.loadWeightsButton.clicked.connect(self.onLoadWeightsButton)
        self.ui.modelComboBox.currentIndexChanged.connect(self.onModelSelected)
        self.ui.evaluateButton.clicked.connect(self.onEvaluateButton)
        self.ui.addCaseButton.clicked.connect(self.onAddCaseButton)
        self.ui.trainButton.clicked.connect(self.onTrainButton)
        self.refreshModels()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.jobs.stop_all(10.0)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.jobs.stop("detection", 10.0)  # its result would go into the closing scene
        self.lastTableNode = self.lastPlotChartNode = None
        self.ui.metricsTableView.setMRMLTableNode(None)
        self.ui.metricsTableView.hide()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------------------------------------ parameters
    def initializeParameterNode(self) -> None:
        self.setParameterNode(AxillaryLNDetectParameterNode(self.logic.getParameterNode()))
        parameters = self._parameterNode
        if not parameters.inputVolume:
            parameters.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        base = Path(slicer.app.defaultScenePath) / "AxillaryLNDetect"
        if self._folder(parameters.trainingFolder) is None:
            parameters.trainingFolder = base / "TrainingCases"
        if self._folder(parameters.trainingOutputFolder) is None:
            parameters.trainingOutputFolder = base / "TrainingRun"

    def setParameterNode(self, parameterNode: Optional[AxillaryLNDetectParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self._selectModel(name=self._parameterNode.model)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    _folder = staticmethod(chosen_folder)  # None when no folder was chosen

    def _checkCanApply(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        if parameters is None:
            return
        if not self.isRunning():  # while a job runs, Apply is the Cancel button
            detector = self._selectedModel()
            canApply = bool(parameters.inputVolume and detector is not None)
            self.ui.applyButton.setEnabled(canApply)
            if canApply:
                tip = _("Detect lymph nodes in '{volume}' with '{model}'.").format(
                    volume=parameters.inputVolume.GetName(), model=detector.name)
            elif detector is None:
                tip = _("No detector: load weights or train one first.")
            else:
                tip = _("Select a CT volume.")
            self.ui.applyButton.setToolTip(tip)
        canEvaluate = bool(parameters.inputVolume and parameters.resultPoints
                           and (parameters.referencePoints or parameters.referenceSegmentation))
        self.ui.evaluateButton.setEnabled(canEvaluate or self.isEvaluating())
        self.ui.addCaseButton.setEnabled(bool(parameters.inputVolume and parameters.referencePoints
                                              and self._folder(parameters.trainingFolder)))
        if not self.isTraining():
            self.ui.trainButton.setEnabled(bool(self._folder(parameters.trainingFolder)
                                                and self._folder(parameters.trainingOutputFolder)))

    # ------------------------------------------------------------------------------------------------ models
    def refreshModels(self, selectPath: Optional[Union[str, Path]] = None) -> None:
        """Fill the model selector from ``logic.availableModels()``; keep the selection (or select the detector of
        ``selectPath``: a training folder or one of its stage files)."""
        current = self.models.selected()
        name = current.name if current is not None else (self._parameterNode.model if self._parameterNode else "")
        if not self.models.refresh(self._detectorPath(selectPath), name):
            self.onModelSelected()

    @staticmethod
    def _detectorPath(path: Optional[Union[str, Path]]) -> Optional[Union[str, Path]]:
        """The path the model selector knows a detector by (its lymph-node stage file) for a training folder or a
        ``-voi``/``-ln`` file; ``path`` itself when it is neither."""
        if path is None:
            return None
        from AxillaryLNDetectLib.models import detector_from_path

        try:
            return detector_from_path(path).ln.path
        except (ValueError, OSError):
            return path

    def _showModelListError(self, message: str) -> None:
        self.ui.statusLabel.setText(_("Error: the model list could not be read: {message}").format(message=message))

    def _selectModel(self, name: str = "", path: Optional[Union[str, Path]] = None) -> None:
        if not self.models.select(name, self._detectorPath(path)):
            self.onModelSelected()

    def _selectedModel(self) -> Optional[Any]:
        return self.models.selected()

    def onModelSelected(self, index: int = -1) -> None:
        detector = self._selectedModel()
        self.ui.modelComboBox.setToolTip(self.models.tooltip(_("No detector available: load weights or train one.")))
        if detector is not None and self._parameterNode is not None and self._parameterNode.model != detector.name:
            self._parameterNode.model = detector.name
        else:
            self._checkCanApply()

    def onLoadWeightsButton(self) -> None:
        chosen = qt.QFileDialog.getOpenFileName(self.parent, _("Load an AxillaryLNDetect stage file"), "",
                                                _("Weights (*-voi.safetensors *-ln.safetensors);;All files (*)"))
        path = chosen[0] if isinstance(chosen, tuple) else chosen
        if path:
            self.importWeights(path)

    def importWeights(self, path: Union[str, Path]) -> Optional[Any]:
        """Verify a detector (a training folder or one file of a ``-voi``/``-ln`` pair), list it and select it."""
        try:
            detector = self.logic.importDetector(path)
        except (ValueError, OSError) as error:
            self._showError(str(error), _("Loading the weights failed"))
            return None
        self.refreshModels(selectPath=detector.ln.path)
        self.ui.statusLabel.setText(_("Loaded the detector '{name}'; it is selected.").format(name=detector.name))
        return self._selectedModel()

    # ------------------------------------------------------------------------------------------------ detection
    def isRunning(self) -> bool:
        return self.jobs.running("detection")

    def onApplyButton(self) -> None:
        if self.isRunning():
            self.jobs.cancel("detection")
            self.ui.statusLabel.setText(_("Cancelling..."))
            return
        parameters = self._parameterNode
        if parameters is None:
            return
        detector = self._selectedModel()
        if not self._ensureTorch():
            return
        try:
            if detector is None:
                raise ValueError(_("No detector: load weights or train one first."))
            volume = self.logic.inputVolume(parameters.inputVolume)
        except ValueError as error:
            self._showError(str(error))
            return
        self._jobInput = parameters.inputVolume
        self.jobs.start("detection", BackgroundJob(self.logic.computeDetection, volume, detector,
                                                   parameters.device.value, parameters.voiThreshold,
                                                   parameters.lnThreshold, parameters.batchSize),
                        self._onDetectionProgress, self._finishJob)
        self.ui.applyButton.setText(_("Cancel"))
        self.ui.applyButton.setToolTip(_("Stop the detection; nothing is added to the scene."))
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.show()
        self.ui.statusLabel.setText(_("Detecting lymph nodes in '{volume}'...").format(
            volume=parameters.inputVolume.GetName()))

    def _onDetectionProgress(self, event) -> None:
        self.ui.progressBar.setValue(int(round(100 * event.fraction)))
        self.ui.statusLabel.setText(event.message)

    def _finishJob(self, job: BackgroundJob) -> None:
        inputVolume, self._jobInput = self._jobInput, None
        self.ui.applyButton.setText(_("Apply"))
        self.ui.progressBar.hide()
        try:
            result = job.result(timeout=0)
            pointsNode, segmentationNode = self.logic.createOutputNodes(inputVolume, result)
        except OperationCancelled:
            self.ui.statusLabel.setText(_("Cancelled: nothing was added to the scene."))
        except Exception as error:  # noqa: BLE001 - reported in the panel
            if not isinstance(error, ValueError):
                logging.exception("AxillaryLNDetect detection failed")
            self._showError(str(error))
        else:
            if self._parameterNode is not None:
                self._parameterNode.resultPoints = pointsNode
            if slicer.app.layoutManager() is not None:
                slicer.util.setSliceViewerLayers(background=inputVolume)
            self.ui.statusLabel.setText(_("Found {count} lymph-node candidate(s) in {seconds:.1f} s ('{points}', "
                                          "'{segmentation}'); the VOI covers {voi:.1f} % of the volume.").format(
                count=len(result.candidates), seconds=job.elapsed, points=pointsNode.GetName(),
                segmentation=segmentationNode.GetName(), voi=100.0 * result.voi_fraction))
        self._checkCanApply()

    # ------------------------------------------------------------------------------------------------ evaluation
    def isEvaluating(self) -> bool:
        return self.jobs.running("evaluation")

    def onEvaluateButton(self) -> None:
        if self.isEvaluating():
            self.jobs.cancel("evaluation")
            return
        parameters = self._parameterNode
        try:
            inputs = self.logic.evaluationInputs(parameters.inputVolume, parameters.resultPoints,
                                                 parameters.referencePoints, parameters.referenceSegmentation)
        except Exception as error:  # noqa: BLE001 - reported in the panel
            if not isinstance(error, ValueError):
                logging.exception("AxillaryLNDetect evaluation failed")
            self._showError(str(error), _("Evaluation failed"), self.ui.evaluateStatusLabel)
            return
        self._evaluationName = f"{parameters.resultPoints.GetName()} FROC"
        self.jobs.start("evaluation", BackgroundJob(self.logic.computeEvaluation, inputs, parameters.criterion.value),
                        None, self._finishEvaluation)
        self.ui.evaluateButton.setText(_("Cancel"))
        self.ui.evaluateStatusLabel.setText(_("Computing the FROC..."))

    def _finishEvaluation(self, job: BackgroundJob) -> None:
        self.ui.evaluateButton.setText(_("Evaluate"))
        try:
            metrics = job.result(timeout=0)
            table, chart, png = self.logic.createEvaluationNodes(metrics, self._evaluationName)
        except OperationCancelled:
            self.ui.evaluateStatusLabel.setText(_("Cancelled: no table was added."))
            return
        except Exception as error:  # noqa: BLE001
            if not isinstance(error, ValueError):
                logging.exception("AxillaryLNDetect evaluation failed")
            self._showError(str(error), _("Evaluation failed"), self.ui.evaluateStatusLabel)
            return
        finally:
            self._checkCanApply()
        self.lastTableNode, self.lastPlotChartNode = table, chart
        self.ui.metricsTableView.setMRMLTableNode(table)
        self.ui.metricsTableView.show()
        pixmap = qt.QPixmap(str(png))
        if not pixmap.isNull():
            self.ui.frocPlotLabel.setPixmap(pixmap)
            self.ui.frocPlotLabel.show()
        overall = metrics.get("all", {})
        at = overall.get("sensitivity_at", {})
        self.ui.evaluateStatusLabel.setText(_("{detected} of {targets} lymph nodes detected; sensitivity {sens:.2f} "
                                              "at 6.7 FPs/volume. Table '{table}', plot '{chart}'.").format(
            detected=overall.get("detected", 0), targets=overall.get("targets", 0), sens=at.get(6.7, float("nan")),
            table=table.GetName(), chart=chart.GetName()))

    # ------------------------------------------------------------------------------------------------ training
    def isTraining(self) -> bool:
        return self.jobs.running("training")

    def onAddCaseButton(self) -> None:
        parameters = self._parameterNode
        folder = self._folder(parameters.trainingFolder)
        try:
            if folder is None or parameters.inputVolume is None or parameters.referencePoints is None:
                raise ValueError(_("Select the CT, its reference lymph-node points and a training folder."))
            written = self.logic.addCaseToTrainingSet(parameters.inputVolume, parameters.referencePoints, folder)
        except (ValueError, OSError) as error:
            self._showError(str(error), _("Adding the case failed"), self.ui.trainingStatusLabel)
            return
        count = len(list(folder.glob("*_nodes.json")))
        self.ui.trainingStatusLabel.setText(_("Added '{name}'; the training folder has {count} cases.").format(
            name=Path(written[0]).name, count=count))

    def onTrainButton(self) -> None:
        if self.isTraining():
            self.jobs.cancel("training")
            self.ui.trainingStatusLabel.setText(_("Stopping the training..."))
            return
        parameters = self._parameterNode
        if parameters is None or not self._ensureTorch(self.ui.trainingStatusLabel):
            return
        folder, output = self._folder(parameters.trainingFolder), self._folder(parameters.trainingOutputFolder)
        if folder is None or not folder.is_dir():
            self._showError(_("Choose a training folder that holds annotated cases (add some with 'Add current case "
                              "to training set')."), _("Training failed"), self.ui.trainingStatusLabel)
            return
        self._trainingOutput = output
        for stage, curve in zip(("voi", "ln"), self.curves):
            curve.watch(output / stage)  # a previous run's plots are not shown
        self._trainingLog = []
        try:
            initialModel = self.models.fine_tuning_start(parameters.fineTune)
        except ValueError as error:
            self._showError(str(error), _("Training failed"), self.ui.trainingStatusLabel)
            return
        self.jobs.start("training", BackgroundJob(self.logic.train, str(folder), str(output),
                                                  iterations=parameters.iterations, device=parameters.device.value,
                                                  log=self._trainingLog.append, initialModel=initialModel,
                                                  **self.trainingOptions),
                        self._onTrainingProgress, self._finishTraining)
        self.ui.trainButton.setText(_("Cancel training"))
        self.ui.trainingProgressBar.setValue(0)
        self.ui.trainingProgressBar.show()
        self.ui.trainingStatusLabel.setText(_("Training on '{folder}'...").format(folder=folder))

    def _onTrainingProgress(self, event) -> None:
        self.ui.trainingProgressBar.setValue(int(round(100 * event.fraction)))
        self.ui.trainingStatusLabel.setText("\n".join([event.message] + self._trainingLog[-1:]))
        self._refreshTrainingCurve()

    def _refreshTrainingCurve(self) -> None:
        """Show the newest plot: the VOI stage's, then the lymph-node stage's once it trains."""
        for curve in self.curves:
            curve.refresh()

    def _finishTraining(self, job: BackgroundJob) -> None:
        output = self._trainingOutput
        self.ui.trainButton.setText(_("Start training"))
        self.ui.trainingProgressBar.hide()
        try:
            results = job.result(timeout=0)
        except OperationCancelled:
            self.ui.trainingStatusLabel.setText(_("Training cancelled; the checkpoints written so far stay in "
                                                  "'{folder}'.").format(folder=output))
        except Exception as error:  # noqa: BLE001
            if not isinstance(error, ValueError):
                logging.exception("AxillaryLNDetect training failed")
            self._showError(str(error), _("Training failed"), self.ui.trainingStatusLabel)
        else:
            self.refreshModels(selectPath=output)
            self.ui.trainingStatusLabel.setText(_("Training finished (VOI Jaccard {voi:.3f}, LN Jaccard {ln:.3f}); "
                                                  "the detector '{name}' is selected.").format(
                voi=results["voi"].best_metric or float("nan"), ln=results["ln"].best_metric or float("nan"),
                name=output.name))
        self._refreshTrainingCurve()
        self._checkCanApply()

    # ------------------------------------------------------------------------------------------------ helpers
    def _ensureTorch(self, label=None) -> bool:
        from mednets.dependencies import MissingDependencyError, ensure_torch

        try:
            ensure_torch()
        except MissingDependencyError as error:
            self._showError(str(error), _("PyTorch is missing"), label)
            return False
        return True

    def _showError(self, message: str, title: Optional[str] = None, label=None) -> None:
        show_error(label or self.ui.statusLabel, message, title or _("Detection failed"))


# ---------------------------------------------------------------------------------------------------------- logic
class AxillaryLNDetectLogic(ScriptedLoadableModuleLogic):  # noqa: F405
    """Scripting API of AxillaryLNDetect; every method works without the GUI.

    Typical use (Slicer Python console or ``Slicer --no-main-window --python-script``)::

        logic = slicer.util.getModuleLogic("AxillaryLNDetect")
        points, segmentation = logic.run(ctVolumeNode)             # bundled demo detector
        metrics, table, chart = logic.evaluate(ctVolumeNode, points, referencePoints=referenceNode)
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)  # noqa: F405
        self.trainingOutputFolders: List[str] = []
        self.deviceMessages: List[str] = []
        self._results: Dict[str, Any] = {}  # points node ID -> DetectionResult (exact blobs for Evaluate)

    # ------------------------------------------------------------------------------------------------ models
    def availableModels(self) -> List[Any]:
        from AxillaryLNDetectLib.models import available_detectors

        return available_detectors(self.trainingOutputFolders)

    def importDetector(self, path: Union[str, Path]):
        """A detector from a training folder or a ``-voi``/``-ln`` file; both checkpoints are verified now."""
        from AxillaryLNDetectLib.models import detector_from_path, load_detector

        detector = detector_from_path(path)
        load_detector(detector, device="cpu")  # raises for corrupted, tampered or foreign weights
        folder = str(Path(detector.ln.path).parent.parent if Path(path).is_dir() else Path(detector.ln.path).parent)
        for candidate in (folder, str(Path(path).parent), str(path)):
            if Path(candidate).is_dir() and candidate not in self.trainingOutputFolders:
                self.trainingOutputFolders.append(candidate)
        return detector

    def loadModel(self, model: Any = None, device: str = "auto"):
        if device not in DEVICE_CHOICES and not str(device).startswith("cuda:"):
            raise ValueError(_("Unknown device '{device}'; choose one of {choices}.").format(
                device=device, choices=", ".join(DEVICE_CHOICES)))
        from AxillaryLNDetectLib.models import load_detector

        return load_detector(model, device=device, report=self._deviceMessage,
                             extra_folders=self.trainingOutputFolders)

    def _deviceMessage(self, message: str) -> None:
        self.deviceMessages.append(message)
        logging.info(message)

    # ------------------------------------------------------------------------------------------------ detection
    @staticmethod
    def inputVolume(inputVolumeNode) -> Any:
        if inputVolumeNode is None:
            raise ValueError(_("No input volume: select the CT to examine."))
        image = inputVolumeNode.GetImageData()
        if image is None or image.GetNumberOfPoints() == 0:
            raise ValueError(_("The input volume '{name}' is empty: it has no voxels.").format(
                name=inputVolumeNode.GetName()))
        try:
            return mrml.volume_from_node(inputVolumeNode)
        except ValueError as error:
            raise InputError(_("The geometry of '{name}' is unusable ({reason}); check its spacing and directions in "
                               "the Volumes module.").format(name=inputVolumeNode.GetName(), reason=error)) from None

    def computeDetection(self, volume, model: Any = None, device: str = "auto", voiThreshold: Optional[float] = None,
                         lnThreshold: Optional[float] = None, batchSize: int = 2,
                         progress: Optional[ProgressCallback] = None,
                         cancel: Optional[CancelCallback] = None) -> "DetectionResult":
        """Both stages on a :class:`mednets.image.Volume` (no MRML access: safe in a worker thread)."""
        import warnings

        from AxillaryLNDetectLib.pipeline import detect_lymph_nodes

        check_input_volume(volume)
        report(progress, 0.0, _("Loading the detector"))
        detector = self.loadModel(model, device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = detect_lymph_nodes(volume, detector.voi.network, detector.ln.network, detector.config,
                                        device=detector.ln.device, batch_size=batchSize, voi_threshold=voiThreshold,
                                        ln_threshold=lnThreshold, progress=progress, cancel=cancel,
                                        report_fallback=self._deviceMessage)
        for warning in caught:
            self._deviceMessage(str(warning.message))
        return result

    def createOutputNodes(self, inputVolumeNode, result: "DetectionResult") -> Tuple[Any, Any]:
        """NEW point list (one point per candidate) and NEW segmentation (detections + VOI) named after the input."""
        if inputVolumeNode is None or not inputVolumeNode.GetScene():
            raise ValueError(_("The input volume was removed from the scene before the result could be stored."))
        name = inputVolumeNode.GetName()
        labels = np.where(result.candidate_labels > 0, 1, np.where(result.voi_mask, 2, 0)).astype(np.uint8)
        segments = [(1, SEGMENT_LN[0], SEGMENT_LN[1], LN_TERMINOLOGY), (2, SEGMENT_VOI[0], SEGMENT_VOI[1])]
        segmentationNode = mrml.new_segmentation_node(labels, inputVolumeNode, segments,
                                                      name=f"{name} detections")
        # the VOI overlaps the detections: its segment is the whole VOI, in its own layer
        segmentation = segmentationNode.GetSegmentation()
        voiId = segmentation.GetSegmentIdBySegmentName(SEGMENT_VOI[0])
        if voiId and result.voi_mask.any():
            segmentation.RemoveSegment(voiId)
            voiOnly = mrml.new_segmentation_node(result.voi_mask.astype(np.uint8), inputVolumeNode,
                                                 [(1, SEGMENT_VOI[0], SEGMENT_VOI[1])], name="temporary VOI")
            segmentation.CopySegmentFromSegmentation(voiOnly.GetSegmentation(),
                                                     voiOnly.GetSegmentation().GetNthSegmentID(0))
            slicer.mrmlScene.RemoveNode(voiOnly)
        centres = np.array([c.centre_ras for c in result.candidates], dtype=float).reshape(-1, 3)
        labelsText = [f"LN {index}" for index in range(1, len(result.candidates) + 1)]
        pointsNode = mrml.new_point_list_node(centres, labels=labelsText,
                                              descriptions=[c.description() for c in result.candidates],
                                              scene=slicer.mrmlScene, name=f"{name} lymph nodes")
        pointsNode.SetNodeReferenceID(RESULT_ROLE, segmentationNode.GetID())
        self._results[pointsNode.GetID()] = result
        return pointsNode, segmentationNode

    def run(self, inputVolumeNode, model: Any = None, device: str = "auto", voiThreshold: Optional[float] = None,
            lnThreshold: Optional[float] = None, batchSize: int = 2, progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelCallback] = None) -> Tuple[Any, Any]:
        """Detect lymph nodes (blocking); returns ``(pointListNode, segmentationNode)``."""
        volume = self.inputVolume(inputVolumeNode)
        result = self.computeDetection(volume, model, device, voiThreshold, lnThreshold, batchSize, progress, cancel)
        return self.createOutputNodes(inputVolumeNode, result)

    # ------------------------------------------------------------------------------------------------ evaluation
    def evaluationInputs(self, volumeNode, resultPointsNode, referencePointsNode=None, referenceSegmentationNode=None
                         ) -> Dict[str, Any]:
        """Copy what the evaluation needs out of the scene (main thread): candidates and reference objects."""
        from AxillaryLNDetectLib.pipeline import instance_sizes_mm, reference_instances
        from mednets.metrics.froc import Candidate
        from mednets.sparse_annotations import sphere_instances

        if volumeNode is None or resultPointsNode is None:
            raise ValueError(_("Select the CT and the detected lymph nodes (point list)."))
        if referencePointsNode is None and referenceSegmentationNode is None:
            raise ValueError(_("Select reference lymph nodes: a point list (diameter in the descriptions) or a "
                               "segmentation."))
        volume = mrml.volume_from_node(volumeNode)
        # candidates: the exact blobs of this session's run, else spheres from the points' descriptions
        cached = self._results.get(resultPointsNode.GetID())
        points, _labels, descriptions = mrml.points_from_markups(resultPointsNode)
        if cached is not None and cached.candidate_labels.shape == volume.shape:
            candidateLabels, candidates = cached.candidate_labels, cached.froc_candidates(volume)
        else:
            confidences = [self._confidence(text) for text in descriptions]
            diameters = [parse_diameter_mm(text, DEFAULT_REFERENCE_DIAMETER_MM) for text in descriptions]
            centres = volume.ras_to_kji(np.asarray(points, dtype=float).reshape(-1, 3))
            candidateLabels = sphere_instances(volume.shape, centres, diameters, volume.spacing)
            candidates = [Candidate(i + 1, c, tuple(float(v) for v in centre), int((candidateLabels == i + 1).sum()), d)
                          for i, (c, centre, d) in enumerate(zip(confidences, centres, diameters))]
        if referencePointsNode is not None:
            refPoints, _refLabels, refDescriptions = mrml.points_from_markups(referencePointsNode)
            sizes = [parse_diameter_mm(text, DEFAULT_REFERENCE_DIAMETER_MM) for text in refDescriptions]
            reference = reference_instances(volume, refPoints, sizes)
        else:
            from scipy import ndimage

            labels, _mapping = mrml.labelmap_from_segmentation(referenceSegmentationNode, volumeNode)
            reference, _count = ndimage.label(labels > 0, structure=np.ones((3, 3, 3), bool))
            sizes = instance_sizes_mm(reference, volume.spacing)
        if not len(sizes):
            raise ValueError(_("The reference has no lymph nodes to evaluate against."))
        return {"candidateLabels": candidateLabels, "candidates": candidates, "reference": reference,
                "sizes": list(sizes)}

    @staticmethod
    def _confidence(description: str) -> float:
        import re

        match = re.search(r"confidence\s*[=:]\s*([0-9.]+)", description or "")
        return float(match.group(1)) if match else 1.0

    @staticmethod
    def computeEvaluation(inputs: Dict[str, Any], criterion: str = "overlap",
                          progress: Optional[ProgressCallback] = None,
                          cancel: Optional[CancelCallback] = None) -> Dict[str, dict]:
        """FROC overall and per size group for one volume (no scene access)."""
        from AxillaryLNDetectLib.pipeline import OPERATING_POINTS
        from mednets.metrics.froc import PAPER_SIZE_GROUPS, evaluate_detections, match_detections

        match = match_detections(inputs["candidateLabels"], inputs["candidates"], inputs["reference"], criterion)
        return evaluate_detections([match], [inputs["sizes"]], PAPER_SIZE_GROUPS, OPERATING_POINTS)

    @staticmethod
    def createEvaluationNodes(metrics: Dict[str, dict], name: str) -> Tuple[Any, Any, Path]:
        """NEW metrics table, NEW FROC plot chart (one series per size group) and a PNG of the plot."""
        from AxillaryLNDetectLib.pipeline import metrics_rows
        from mednets.metrics.froc import plot_froc

        table = mrml.new_table_node(metrics_rows(metrics), scene=slicer.mrmlScene, name=name)
        curves = {group: (values["fps"], values["sensitivity"]) for group, values in metrics.items()
                  if values["targets"] > 0}
        columns: Dict[str, List[float]] = {}
        length = max((len(fps) for fps, _s in curves.values()), default=0)
        for group, (fps, sensitivity) in curves.items():  # columns padded with the last point (same step curve)
            order = np.argsort(fps, kind="stable")
            fps, sensitivity = np.asarray(fps)[order], np.asarray(sensitivity)[order]
            pad = length - len(fps)
            columns[f"{group} FPs/volume"] = list(np.concatenate([fps, np.repeat(fps[-1:], pad)]).astype(float))
            columns[f"{group} sensitivity"] = list(np.concatenate([sensitivity, np.repeat(sensitivity[-1:], pad)])
                                                   .astype(float))
        curveTable = mrml.new_table_node(columns, scene=slicer.mrmlScene, name=f"{name} curves")
        chart = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotChartNode", slicer.mrmlScene.GenerateUniqueName(name))
        chart.SetTitle("FROC")
        chart.SetXAxisTitle("false positives per volume")
        chart.SetYAxisTitle("sensitivity")
        for group in curves:
            series = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {group}")
            series.SetAndObserveTableNodeID(curveTable.GetID())
            series.SetXColumnName(f"{group} FPs/volume")
            series.SetYColumnName(f"{group} sensitivity")
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
            series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
        png = Path(tempfile.mkdtemp(prefix="axillary-froc-")) / "froc.png"
        plot_froc(curves, png, title=name, operating_points=(6.7,))
        if slicer.app.layoutManager() is not None and hasattr(slicer.modules, "plots"):
            slicer.modules.plots.logic().ShowChartInLayout(chart)
        return table, chart, png

    def evaluate(self, volumeNode, resultPointsNode, referencePoints=None, referenceSegmentation=None,
                 criterion: str = "overlap") -> Tuple[Dict[str, dict], Any, Any]:
        """FROC of a detection result against reference nodes; returns ``(metrics, tableNode, plotChartNode)``."""
        inputs = self.evaluationInputs(volumeNode, resultPointsNode, referencePoints, referenceSegmentation)
        metrics = self.computeEvaluation(inputs, criterion)
        table, chart, _png = self.createEvaluationNodes(metrics, f"{resultPointsNode.GetName()} FROC")
        return metrics, table, chart

    # ---------------------------------------------------------------------------------------------- training
    @staticmethod
    def addCaseToTrainingSet(volumeNode, referencePointsNode, folder: Union[str, Path]) -> Tuple[Path, Path]:
        """Write the CT (``<name>_image.nrrd``) and its annotated nodes (``<name>_nodes.json``: RAS centres and
        short-axis diameters from the point descriptions) to a training folder; nothing is overwritten."""
        from AxillaryLNDetectLib.cases import write_annotated_case

        points, _labels, descriptions = mrml.points_from_markups(referencePointsNode)
        if not len(points):
            raise ValueError(_("The point list '{name}' has no points.").format(name=referencePointsNode.GetName()))
        diameters = [parse_diameter_mm(text, DEFAULT_REFERENCE_DIAMETER_MM) for text in descriptions]
        return write_annotated_case(folder, volumeNode.GetName(), mrml.volume_from_node(volumeNode), points,
                                    diameters)

    def train(self, trainingFolder: Union[str, Path], outputFolder: Union[str, Path], iterations: Optional[int] = None,
              configName: str = "paper", device: str = "auto", seed: int = 0, fineTune: bool = False,
              configChanges: Optional[dict] = None, validationFraction: float = 0.2,
              progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None,
              log: Optional[Callable[[str], None]] = None, initialModel: Any = None) -> Dict[str, Any]:
        """Train both stages on a folder of annotated cases; returns ``{"voi": result, "ln": result}``.

        ``fineTune`` starts stage 2 from the trained VOI network (dropout 0.5), as in the paper's second variant.
        ``initialModel`` (a detector name, source or LN checkpoint path) fine-tunes an existing detector instead: each
        stage starts from that detector's network of the same stage, with the detector's own configuration
        (``configName`` is then not used; ``configChanges`` still apply) and the paper's fine-tuning dropout.
        """
        from AxillaryLNDetectLib.cases import read_annotated_folder
        from AxillaryLNDetectLib.configs import get_config
        from AxillaryLNDetectLib.training import train_stage
        from mednets.progress import sub_progress

        items = read_annotated_folder(trainingFolder)
        if len(items) < 2:
            raise ValueError(_("The training folder needs at least 2 annotated cases (one to train, one to "
                               "validate); it has {count}.").format(count=len(items)))
        validationCount = max(1, int(round(len(items) * validationFraction)))
        start = None
        if initialModel is not None:
            from AxillaryLNDetectLib.models import load_detector

            start = load_detector(initialModel, device="cpu", extra_folders=self.trainingOutputFolders)
        config = start.config if start is not None else get_config(configName)
        if configChanges:
            config = config.replace(**configChanges)
        output = Path(outputFolder)
        results = {}
        voiResult, voiNetwork = train_stage("voi", items[validationCount:], items[:validationCount], config,
                                            str(output / "voi"), iterations, seed,
                                            initial_network=start.voi.network if start is not None else None,
                                            device=device, progress=sub_progress(progress, 0.0, 0.5, "VOI: "),
                                            cancel=cancel, log=log)
        results["voi"] = voiResult
        lnStart = start.ln.network if start is not None else (voiNetwork if fineTune else None)
        lnResult, _ln = train_stage("ln", items[validationCount:], items[:validationCount], config,
                                    str(output / "ln"), iterations, seed, initial_network=lnStart, device=device,
                                    progress=sub_progress(progress, 0.5, 1.0, "Lymph nodes: "), cancel=cancel,
                                    log=log)
        results["ln"] = lnResult
        if str(output.parent) not in self.trainingOutputFolders:  # the detector folder is listed from its parent
            self.trainingOutputFolders.append(str(output.parent))
        return results


# ------------------------------------------------------------------------------------------------------------ test
class AxillaryLNDetectTest(ScriptedLoadableModuleTest):  # noqa: F405
    """Logic-level tests (they also run inside Slicer). A small detector is trained on phantoms when no bundled demo
    weights exist (a few iterations: the tests check the outputs' form, not accuracy)."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_AxillaryLNDetectPhantom()
        self.setUp()
        self.test_AxillaryLNDetectBadInput()

    @staticmethod
    def _phantomNode():
        from mednets.image import Volume
        from mednets.phantoms.axilla_ct import axilla_ct_phantom

        case = axilla_ct_phantom(seed=11, shape=(32, 48, 96), spacing=(4.0, 4.0, 4.0), node_diameter_mm=(8.0, 20.0))
        volume = Volume(case.image, spacing=case.spacing, directions_ras=case.extra["directions_ras"])
        node = mrml.new_volume_node(volume, slicer.mrmlScene, "AxillaPhantom")
        centres = volume.kji_to_ras(case.extra["centres_kji"])
        reference = mrml.new_point_list_node(centres, descriptions=[f"diameter={d:.1f}"
                                                                    for d in case.extra["short_axis_mm"]],
                                             scene=slicer.mrmlScene, name="Reference nodes")
        return node, reference, case

    @staticmethod
    def _model():
        from AxillaryLNDetectLib.demo import make_test_detector

        return make_test_detector()

    def test_AxillaryLNDetectPhantom(self) -> None:
        self.delayDisplay("Detect lymph nodes in a CT axilla phantom and evaluate")
        logic = AxillaryLNDetectLogic()
        volumeNode, referenceNode, case = self._phantomNode()
        messages = []
        points, segmentation = logic.run(volumeNode, model=self._model(), device="cpu",
                                         progress=lambda f, m: messages.append((f, m)))
        self.assertTrue(points.IsA("vtkMRMLMarkupsFiducialNode"))
        self.assertEqual(points.GetName(), "AxillaPhantom lymph nodes")
        names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
        self.assertIn("lymph node", names)
        for i in range(points.GetNumberOfControlPoints()):
            self.assertIn("confidence=", points.GetNthControlPointDescription(i))
            self.assertIn("short_axis_mm=", points.GetNthControlPointDescription(i))
        self.assertEqual(messages[-1][0], 1.0)
        metrics, table, chart = logic.evaluate(volumeNode, points, referencePoints=referenceNode)
        self.assertEqual(metrics["all"]["targets"], int(case.labels.max()))
        self.assertEqual(table.GetNumberOfRows(), 4)
        self.assertTrue(chart.IsA("vtkMRMLPlotChartNode"))
        self.assertGreaterEqual(chart.GetNumberOfPlotSeriesNodes(), 1)
        self.delayDisplay("Test passed")

    def test_AxillaryLNDetectBadInput(self) -> None:
        self.delayDisplay("Bad input is refused with a plain message")
        from mednets.image import Volume

        logic = AxillaryLNDetectLogic()
        flat = mrml.new_volume_node(Volume(np.full((20, 20, 20), 40.0, np.float32)), slicer.mrmlScene, "Flat")
        with self.assertRaises(InputError) as caught:
            logic.run(flat, model=self._model(), device="cpu")
        self.assertIn("constant", str(caught.exception))
        nan = np.zeros((20, 20, 20), np.float32)
        nan[1, 2, 3] = np.nan
        with self.assertRaises(InputError):
            logic.run(mrml.new_volume_node(Volume(nan), slicer.mrmlScene, "NaN"), model=self._model(), device="cpu")
        single = mrml.new_volume_node(Volume(np.linspace(-1000, 500, 400, dtype=np.float32).reshape(1, 20, 20)),
                                      slicer.mrmlScene, "Slice")
        with self.assertRaises(InputError) as caught:
            logic.run(single, model=self._model(), device="cpu")
        self.assertIn("single slice", str(caught.exception))
        self.delayDisplay("Test passed")
