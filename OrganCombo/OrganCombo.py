"""OrganCombo: multi-organ segmentation with the Combo loss (Taghanaki et al., CMIG 2019) in 3D Slicer.

Segments the organs of a PET whole-body scan (brain, heart, kidneys, bladder), the prostate in MRI or the
left-ventricular myocardium in ultrasound into a NEW segmentation with standard names, colours and terminology,
evaluates a result against a reference (Jaccard, Dice, FPR, FNR, Hausdorff distance per organ) and trains or
fine-tunes the network from Slicer. The Logic class is the scripting API; the widget only gathers inputs and shows
results. The same file runs in 3D Slicer and under pytest (Testing/runtime).
"""

from __future__ import annotations

import enum
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import *  # noqa: F403 - Slicer's module convention
from slicer.util import VTKObservationMixin

from mednets import mrml
from mednets.jobs import ProcessJob, ProcessJobError, job_folder
from mednets.progress import CancelCallback, OperationCancelled, ProgressCallback, report
from mednets.terminology import segment_specs
from mednets.widgets import (DeviceChoice, JobPoller, ModelSelector, TrainingCurve, chosen_folder, ensure_packages,
                             show_error, start_cli_job)

# Only torch-free imports here, so the module loads in a Slicer without PyTorch and can offer to install it
# (mednets.dependencies.ensure_torch); the network code is imported by the Logic methods that need it.
from OrganComboLib.configs import DEFAULT_MODEL, MODULE_NAME, OrganComboConfig, config_from_dict, get_config
from OrganComboLib.inputs import InputError, check_input_volume

if TYPE_CHECKING:
    from OrganComboLib.pipeline import SegmentationResult

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
#: The command line the panel's jobs run as a child process (``PythonSlicer -m OrganComboLib ...``).
CLI_PACKAGE = "OrganComboLib"


# --------------------------------------------------------------------------------------------------------- module
class OrganCombo(ScriptedLoadableModule):  # noqa: F405
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)  # noqa: F405
        self.parent.title = _("Organ Combo")
        self.parent.categories = [_("Segmentation"), _("SlicerMedNets")]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["SlicerMedNets developers"]
        self.parent.helpText = _(
            "Multi-organ segmentation with the Combo loss (Taghanaki et al., Computerized Medical Imaging and "
            "Graphics 2019): PET whole body (brain, heart, kidneys, bladder), MRI prostate, ultrasound left "
            "ventricle. Choose a volume and a model, press Apply: a new segmentation appears, ready to edit in the "
            "Segment Editor. Evaluate compares it with a reference; Train fine-tunes the network on your cases. "
            "Research use only, not for clinical use.")
        self.parent.acknowledgementText = _(
            "Method: S. Asgari Taghanaki et al., Combo loss: handling input and output imbalance in multi-organ "
            "segmentation, CMIG 75 (2019). Part of SlicerMedNets (Apache-2.0).")
        # The bundled PET phantom in File > Download Sample Data (registered once the application has started).
        slicer.app.startupCompleted.connect(registerSampleData)


def registerSampleData() -> None:
    """Offer the bundled PET phantom (and its reference organs) in Slicer's Sample Data module, offline."""
    from mednets.sampledata import register_with_slicer
    from OrganComboLib.samples import SAMPLES

    register_with_slicer(SAMPLES)


# ------------------------------------------------------------------------------------------------ parameter node
OrganComboDevice = DeviceChoice  # where the network runs (shared by all SlicerMedNets panels)


class OrganComboTask(enum.Enum):
    """The paper's three training configurations (OrganComboLib.configs)."""

    PET = "pet"
    MRI = "mri"
    ULTRASOUND = "ultrasound"

    def label(self) -> str:
        return get_config(self.value).title


@parameterNodeWrapper
class OrganComboParameterNode:
    """Persistent settings of the OrganCombo panel (saved with the scene).

    inputVolume: image to segment; model: name of the chosen model source (the selector's list is built at run time,
    so it is kept in sync by the widget rather than by a GUI connector); device: where the network runs;
    outputSegmentation: existing segmentation to write into (a new one when empty); threshold: probability threshold
    (0.5 in the paper); batchSize: sliding windows per network call; resultSegmentation/referenceSegmentation: what
    Evaluate compares; trainingFolder/trainingOutputFolder/trainingTask/epochs: what Train uses; fineTune: Train
    starts from the selected model's weights instead of a new network.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: OrganComboDevice = OrganComboDevice.AUTO
    outputSegmentation: vtkMRMLSegmentationNode
    threshold: Annotated[float, WithinRange(0.01, 0.99)] = 0.5  # the paper's t
    batchSize: Annotated[int, WithinRange(1, 64)] = 4
    resultSegmentation: vtkMRMLSegmentationNode
    referenceSegmentation: vtkMRMLSegmentationNode
    trainingFolder: Path
    trainingOutputFolder: Path
    trainingTask: OrganComboTask = OrganComboTask.PET
    epochs: Annotated[int, WithinRange(1, 100000)] = 50
    fineTune: bool = False


# --------------------------------------------------------------------------------------------------------- widget
class OrganComboWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):  # noqa: F405
    """The OrganCombo panel: gathers inputs, runs the module's command line in child processes, shows results.

    Segmentation, evaluation and training run as child processes of ``python -m OrganComboLib`` (``PythonSlicer`` in
    Slicer; :class:`mednets.jobs.ProcessJob`), polled by a QTimer; their buttons turn into Cancel buttons while they
    run, and NEW nodes are created on the GUI thread from the child's output files once it succeeded, so a failed,
    cancelled or killed run leaves the scene as it was. ``trainingOptions`` holds extra training settings with the
    keyword names of :meth:`OrganComboLogic.train` (``iterations``, ``seed``, ``validationFraction``,
    ``configChanges``, ``modelOverrides``; e.g. ``{"iterations": 20}`` for a quick run from the Python console),
    passed to ``OrganComboLib train`` as command-line options.
    """

    POLL_INTERVAL_MS = 100

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)  # noqa: F405
        VTKObservationMixin.__init__(self)
        self.logic: Optional[OrganComboLogic] = None
        self._parameterNode: Optional[OrganComboParameterNode] = None
        self._parameterNodeGuiTag = None
        self._lastTrainingTask: Optional[OrganComboTask] = None
        self._jobTarget = None  # (input volume, output segmentation or None, first device message index)
        self._evaluationName = ""
        self._trainingOutput: Optional[Path] = None
        self._trainingLog: List[str] = []  # the training child's log lines (emit_log)
        self.trainingOptions: Dict[str, Any] = {}
        self.lastTableNode = None

    # ------------------------------------------------------------------------------------------------ set-up
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)  # noqa: F405
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/OrganCombo.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = OrganComboLogic()
        for widget in (self.ui.progressBar, self.ui.trainingProgressBar, self.ui.trainingCurveLabel,
                       self.ui.metricsTableView):  # shown once there is something to show
            widget.hide()
        self.jobs = JobPoller(self.POLL_INTERVAL_MS)  # segmentation, evaluation and training run in the background
        self.models = ModelSelector(self.ui.modelComboBox, lambda: self.logic.availableModels(), DEFAULT_MODEL,
                                    self._showModelListError)
        self.curve = TrainingCurve(self.ui.trainingCurveLabel, lambda: self.ui.trainCollapsibleButton.width)
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
        self._cancelJob()
        self._cancelEvaluation()
        self._cancelTraining()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelJob()  # its result would go into the closing scene; a training run needs no scene and goes on
        self._cancelEvaluation()
        self.lastTableNode = None
        self.ui.metricsTableView.setMRMLTableNode(None)
        self.ui.metricsTableView.hide()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------------------------------------ parameters
    def initializeParameterNode(self) -> None:
        self.setParameterNode(OrganComboParameterNode(self.logic.getParameterNode()))
        parameters = self._parameterNode
        if not parameters.inputVolume:
            parameters.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        base = Path(slicer.app.defaultScenePath) / "OrganCombo"
        if self._folder(parameters.trainingFolder) is None:
            parameters.trainingFolder = base / "TrainingCases"
        if self._folder(parameters.trainingOutputFolder) is None:
            parameters.trainingOutputFolder = base / "TrainingRun"

    def setParameterNode(self, parameterNode: Optional[OrganComboParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self._lastTrainingTask = self._parameterNode.trainingTask
            self._selectModel(name=self._parameterNode.model)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._checkCanApply()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        if parameters is not None and parameters.trainingTask != self._lastTrainingTask:
            self._lastTrainingTask = parameters.trainingTask
            parameters.epochs = get_config(parameters.trainingTask.value).epochs  # the configuration's default
        self._checkCanApply()

    _folder = staticmethod(chosen_folder)  # None when no folder was chosen

    def _checkCanApply(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        if parameters is None:
            return
        if not self.isRunning():  # while a job runs, Apply is the Cancel button
            model = self._selectedModel()
            canApply = bool(parameters.inputVolume and model is not None)
            self.ui.applyButton.setEnabled(canApply)
            if canApply:
                tip = _("Segment the organs of '{volume}' with '{model}'.").format(
                    volume=parameters.inputVolume.GetName(), model=model.name)
            elif model is None:
                tip = _("No model to segment with: load a weights file or train a model first.")
            else:
                tip = _("Select an input volume.")
            self.ui.applyButton.setToolTip(tip)
        canEvaluate = bool(parameters.inputVolume and parameters.resultSegmentation
                           and parameters.referenceSegmentation)
        self.ui.evaluateButton.setEnabled(canEvaluate or self.isEvaluating())
        self.ui.addCaseButton.setEnabled(bool(parameters.inputVolume and self._folder(parameters.trainingFolder)
                                              and (parameters.referenceSegmentation or parameters.resultSegmentation)))
        if not self.isTraining():
            self.ui.trainButton.setEnabled(bool(self._folder(parameters.trainingFolder)
                                                and self._folder(parameters.trainingOutputFolder)))

    # ------------------------------------------------------------------------------------------------ models
    def refreshModels(self, selectPath: Optional[Union[str, Path]] = None) -> None:
        """Fill the model selector from ``logic.availableModels()``; keep the selection (or select ``selectPath``)."""
        current = self.models.selected()
        name = current.name if current is not None else (self._parameterNode.model if self._parameterNode else "")
        if not self.models.refresh(selectPath, name):
            self.onModelSelected()

    def _showModelListError(self, message: str) -> None:
        self.ui.statusLabel.setText(_("Error: the model list could not be read: {message}").format(message=message))

    def _selectModel(self, name: str = "", path: Optional[Union[str, Path]] = None) -> None:
        """Select the model called ``name`` (or stored at ``path``); else the bundled default, else the first."""
        if not self.models.select(name, path):
            self.onModelSelected()

    def _selectedModel(self) -> Optional[Any]:
        return self.models.selected()

    def onModelSelected(self, index: int = -1) -> None:
        source = self._selectedModel()
        self.ui.modelComboBox.setToolTip(self.models.tooltip(
            _("No model available: load a weights file or train a model.")))
        if source is not None and self._parameterNode is not None and self._parameterNode.model != source.name:
            self._parameterNode.model = source.name  # triggers _checkCanApply
        else:
            self._checkCanApply()

    def onLoadWeightsButton(self) -> None:
        path = self._askWeightsFile()
        if path:
            self.importWeightsFile(path)

    def _askWeightsFile(self) -> str:
        chosen = qt.QFileDialog.getOpenFileName(self.parent, _("Load OrganCombo weights"), "",
                                                _("Weights (*.safetensors);;All files (*)"))
        return chosen[0] if isinstance(chosen, tuple) else chosen  # PySide returns (path, filter), PythonQt the path

    def importWeightsFile(self, path: Union[str, Path]) -> Optional[Any]:
        """Verify and import a weights file into the user model folder, list it and select it; None on error."""
        from mednets.sources import import_weights

        if not ensure_packages(self.ui.statusLabel, MODULE_NAME):  # safetensors/torch to verify the checkpoint
            return None
        try:
            source = import_weights(path, expected_module=MODULE_NAME)
        except (ValueError, OSError) as error:  # checkpoint, checksum, wrong-module errors are ValueErrors
            self._showError(str(error), _("Loading the weights failed"))
            return None
        self.refreshModels(selectPath=source.path)
        selected = self._selectedModel()
        self.ui.statusLabel.setText(_("Imported the weights '{name}'; they are selected in the model list.").format(
            name=selected.name if selected is not None else source.name))
        return selected

    # ------------------------------------------------------------------------------------------------ segmentation
    # Every job of this panel runs as a child process of the module's command line (mednets.jobs.ProcessJob through
    # mednets.widgets.start_cli_job: ``PythonSlicer -m OrganComboLib --progress json ...`` in Slicer): PythonQt keeps
    # the GIL in Slicer's main thread while Qt's event loop waits (Slicer and CTK never call PythonQt's
    # setEnableThreadSupport), so a Python worker thread would starve. The panel writes its inputs into the job's
    # private folder (NRRD with the full geometry, JSON for names), reads the child's JSON progress lines at each
    # QTimer tick, and builds NEW nodes from the child's output files once it succeeded; the folder is removed after
    # the finish handler ran, whatever the outcome.
    def isRunning(self) -> bool:
        return self.jobs.running("segmentation")

    def _modelArguments(self, option: str, model: Any) -> List[str]:
        """``--model NAME`` (or ``--initial-weights NAME``) and the session's training output folders to find it in."""
        arguments = [option, model.name if hasattr(model, "name") else str(model)]
        for folder in self.logic.trainingOutputFolders:
            arguments += ["--model-folder", str(folder)]
        return arguments

    def onApplyButton(self) -> None:
        if self.isRunning():
            self.jobs.cancel("segmentation")
            self.ui.statusLabel.setText(_("Cancelling..."))
            return
        parameters = self._parameterNode
        if parameters is None:
            return
        model = self._selectedModel()
        try:
            if model is None:
                raise ValueError(_("No model to segment with: load a weights file or train a model first."))
            volume = self.logic.inputVolume(parameters.inputVolume)  # a copy with its geometry; refuses empty input
        except ValueError as error:
            self._showError(str(error))
            return
        if not ensure_packages(self.ui.statusLabel, MODULE_NAME):  # torch & co., with consent, on the GUI thread
            return
        folder = job_folder(f"{CLI_PACKAGE}-segmentation")
        try:
            from mednets.io import write_volume

            write_volume(volume, folder / "input.nrrd")
        except (OSError, ValueError) as error:
            shutil.rmtree(folder, ignore_errors=True)
            self._showError(str(error))
            return
        arguments = (["predict", "--input", folder / "input.nrrd", "--output", folder / "labels.nrrd",
                      "--device", parameters.device.value, "--threshold", f"{float(parameters.threshold):g}",
                      "--batch-size", int(parameters.batchSize)] + self._modelArguments("--model", model))
        self._jobTarget = (parameters.inputVolume, parameters.outputSegmentation)
        start_cli_job(self.jobs, "segmentation", CLI_PACKAGE, arguments, self._onSegmentationProgress,
                      self._finishJob, folder=folder)
        self.ui.applyButton.setText(_("Cancel"))
        self.ui.applyButton.setToolTip(_("Stop the segmentation; nothing is added to the scene."))
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.show()
        self.ui.statusLabel.setText(_("Segmenting '{volume}' with '{model}'...").format(
            volume=parameters.inputVolume.GetName(), model=model.name))

    def _onSegmentationProgress(self, event) -> None:
        self.ui.progressBar.setValue(int(round(100 * event.fraction)))
        self.ui.statusLabel.setText(event.message)

    @staticmethod
    def _readSegmentation(job: ProcessJob):
        """``(result, config, messages)`` from the child's label map (NRRD on the input's grid) and result object;
        re-raises the child's error (ProcessJobError) or OperationCancelled."""
        from types import SimpleNamespace

        from mednets.io import read_volume

        outputs = job.result(timeout=0).last
        if "output" not in outputs:
            raise ProcessJobError(_("The segmentation process ended without a result."))
        labels = np.rint(np.asarray(read_volume(outputs["output"]).array)).astype(np.uint8)
        config = config_from_dict(outputs["config"])
        # createSegmentationNode reads .labels (and the status the volumes): the probabilities stay in the child
        result = SimpleNamespace(labels=labels, volumes_ml=dict(outputs.get("volumes_ml") or {}),
                                 class_names=config.class_names)
        return result, config, [str(message) for message in outputs.get("messages") or []]

    def _finishJob(self, job: ProcessJob) -> None:
        inputVolume, outputSegmentation = self._jobTarget
        self._jobTarget = None
        self.ui.applyButton.setText(_("Apply"))
        self.ui.progressBar.hide()
        try:
            result, config, deviceMessages = self._readSegmentation(job)
            segmentationNode = self.logic.createSegmentationNode(inputVolume, result, config, outputSegmentation)
        except OperationCancelled:
            self.ui.statusLabel.setText(_("Cancelled: nothing was added to the scene."))
        except Exception as error:  # noqa: BLE001 - any failure is reported in the panel
            if not isinstance(error, (ValueError, ProcessJobError)):
                logging.exception("OrganCombo segmentation failed")
            self._showError(str(error))
        else:
            for message in deviceMessages:
                self.logic._deviceMessage(message)
            self._showSegmentation(segmentationNode, inputVolume)
            if self._parameterNode is not None:  # ready for Evaluate and "add current case"
                self._parameterNode.resultSegmentation = segmentationNode
            volumes = ", ".join(_("{organ} {volume:.1f} ml").format(organ=name, volume=volume)
                                for name, volume in result.volumes_ml.items())
            lines = [_("Created segmentation '{name}' in {seconds:.1f} s.").format(
                name=segmentationNode.GetName(), seconds=job.elapsed), _("Organ volumes: {volumes}.").format(
                volumes=volumes)]
            self.ui.statusLabel.setText("\n".join(lines + deviceMessages))
        self._checkCanApply()

    @staticmethod
    def _showSegmentation(segmentationNode, inputVolume) -> None:
        """Show the segments in the slice views over the input (views exist only in the full application)."""
        if segmentationNode.GetDisplayNode() is None:
            segmentationNode.CreateDefaultDisplayNodes()
        segmentationNode.GetDisplayNode().SetVisibility(True)
        if slicer.app.layoutManager() is not None:
            slicer.util.setSliceViewerLayers(background=inputVolume)

    def _cancelJob(self) -> None:
        """Stop a running segmentation for good (scene closing, module unloading); its result is dropped."""
        self.jobs.stop("segmentation", 10.0)  # the child is terminated, then killed after 1 s

    # ------------------------------------------------------------------------------------------------ evaluation
    def isEvaluating(self) -> bool:
        return self.jobs.running("evaluation")

    def onEvaluateButton(self) -> None:
        """Evaluate in the child (``python -m OrganComboLib evaluate``): the spacing-aware Hausdorff distance needs a
        distance transform per organ, seconds on a whole-body scan. The label maps are copied out of the scene here."""
        if self.isEvaluating():
            self.jobs.cancel("evaluation")
            self.ui.evaluateStatusLabel.setText(_("Cancelling..."))
            return
        parameters = self._parameterNode
        folder = None
        try:
            labels, referenceLabels, names, _spacing = self.logic.evaluationInputs(
                parameters.resultSegmentation, parameters.referenceSegmentation, parameters.inputVolume)
            if not ensure_packages(self.ui.evaluateStatusLabel, MODULE_NAME):
                return
            from mednets.io import write_volume

            grid = mrml.volume_from_node(parameters.inputVolume)  # the grid evaluationInputs sampled on
            folder = job_folder(f"{CLI_PACKAGE}-evaluation")
            write_volume(grid.with_array(labels.astype(np.uint16)), folder / "result.nrrd")
            write_volume(grid.with_array(referenceLabels.astype(np.uint16)), folder / "reference.nrrd")
        except Exception as error:  # noqa: BLE001 - reported in the panel
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            if not isinstance(error, (ValueError, OSError)):
                logging.exception("OrganCombo evaluation failed")
            self._showError(str(error), _("Evaluation failed"), self.ui.evaluateStatusLabel)
            return
        self._evaluationName = f"{parameters.resultSegmentation.GetName()} metrics"
        arguments = ["evaluate", "--prediction", folder / "result.nrrd", "--reference", folder / "reference.nrrd",
                     "--organs", json.dumps(list(names))]
        start_cli_job(self.jobs, "evaluation", CLI_PACKAGE, arguments,
                      lambda event: self.ui.evaluateStatusLabel.setText(event.message or _("Computing the metrics...")),
                      self._finishEvaluation, folder=folder)
        self.ui.evaluateButton.setText(_("Cancel"))
        self.ui.evaluateStatusLabel.setText(_("Computing the metrics of {count} organs...").format(count=len(names)))

    def _finishEvaluation(self, job: ProcessJob) -> None:
        self.ui.evaluateButton.setText(_("Evaluate"))
        try:
            rows = job.result(timeout=0).last.get("rows")
            if rows is None:
                raise ProcessJobError(_("The evaluation process ended without a result."))
            table = self.logic.createMetricsTable(rows, self._evaluationName)
        except OperationCancelled:
            self.ui.evaluateStatusLabel.setText(_("Cancelled: no table was added."))
            return
        except Exception as error:  # noqa: BLE001 - reported in the panel
            if not isinstance(error, (ValueError, ProcessJobError)):
                logging.exception("OrganCombo evaluation failed")
            self._showError(str(error), _("Evaluation failed"), self.ui.evaluateStatusLabel)
            return
        finally:
            self._checkCanApply()
        self.lastTableNode = table
        self.ui.metricsTableView.setMRMLTableNode(table)
        self.ui.metricsTableView.show()
        dice = [float(row["dice"]) for row in rows if np.isfinite(float(row["dice"]))]
        self.ui.evaluateStatusLabel.setText(_("Mean Dice {dice:.3f} over {count} organs; all metrics are in the "
                                              "table '{table}'.").format(
            dice=float(np.mean(dice)) if dice else float("nan"), count=len(rows), table=table.GetName()))

    def _cancelEvaluation(self) -> None:
        self.jobs.stop("evaluation", 10.0)

    # ------------------------------------------------------------------------------------------------ training
    def isTraining(self) -> bool:
        return self.jobs.running("training")

    def onAddCaseButton(self) -> None:
        parameters = self._parameterNode
        segmentation = parameters.referenceSegmentation or parameters.resultSegmentation
        folder = self._folder(parameters.trainingFolder)
        try:
            if parameters.inputVolume is None:
                raise ValueError(_("Select the input volume of the case."))
            if segmentation is None:
                raise ValueError(_("Select a reference or result segmentation of the case."))
            if folder is None:
                raise ValueError(_("Choose a training folder."))
            imagePath, labelPath = self.logic.addCaseToTrainingSet(parameters.inputVolume, segmentation, folder,
                                                                   parameters.trainingTask.value)
        except (ValueError, OSError) as error:
            self._showError(str(error), _("Adding the case failed"), self.ui.trainingStatusLabel)
            return
        count = len(list(folder.glob("*_label.nrrd")))
        self.ui.trainingStatusLabel.setText(_("Added '{image}' and '{label}' (from '{segmentation}'); the training "
                                              "folder has {count} cases.").format(
            image=Path(imagePath).name, label=Path(labelPath).name, segmentation=segmentation.GetName(), count=count))

    #: ``trainingOptions`` keys (the keyword arguments of OrganComboLogic.train) -> options of ``OrganComboLib train``.
    TRAINING_OPTIONS = {"epochs": "--epochs", "iterations": "--iterations", "seed": "--seed",
                        "validationFraction": "--validation-fraction", "configChanges": "--config-changes",
                        "modelOverrides": "--model-overrides"}

    def _trainingArguments(self, folder: Path, output: Path, initialModel: Any) -> List[str]:
        parameters = self._parameterNode
        options = {"epochs": parameters.epochs, **self.trainingOptions}
        unknown = sorted(set(options) - set(self.TRAINING_OPTIONS))
        if unknown:
            raise ValueError(_("Unknown training options: {names}; use {known}.").format(
                names=", ".join(unknown), known=", ".join(self.TRAINING_OPTIONS)))
        arguments = ["train", "--data", folder, "--output", output, "--config", parameters.trainingTask.value,
                     "--device", parameters.device.value]
        for key, value in options.items():
            if value is None:
                continue
            if isinstance(value, dict):
                value = json.dumps(value)
            arguments += [self.TRAINING_OPTIONS[key], value]
        if initialModel is not None:
            arguments += self._modelArguments("--initial-weights", initialModel)
        return arguments

    def onTrainButton(self) -> None:
        if self.isTraining():
            self.jobs.cancel("training")
            self.ui.trainingStatusLabel.setText(_("Stopping the training..."))
            return
        parameters = self._parameterNode
        if parameters is None:
            return
        folder, output = self._folder(parameters.trainingFolder), self._folder(parameters.trainingOutputFolder)
        if folder is None or not folder.is_dir():
            self._showError(_("Choose a training folder that holds labelled cases (add some with 'Add current case "
                              "to training set')."), _("Training failed"), self.ui.trainingStatusLabel)
            return
        if output is None:
            self._showError(_("Choose an output folder for the checkpoints."), _("Training failed"),
                            self.ui.trainingStatusLabel)
            return
        try:
            initialModel = self.models.fine_tuning_start(parameters.fineTune)
            arguments = self._trainingArguments(folder, output, initialModel)
        except ValueError as error:
            self._showError(str(error), _("Training failed"), self.ui.trainingStatusLabel)
            return
        if not ensure_packages(self.ui.trainingStatusLabel, MODULE_NAME):
            return
        self._trainingOutput = output
        self.curve.watch(output)  # a previous run's plot is not shown
        self._trainingLog = []
        # the checkpoints go to the chosen output folder; the job folder only holds the child's stdout/stderr
        start_cli_job(self.jobs, "training", CLI_PACKAGE, arguments, self._onTrainingProgress, self._finishTraining,
                      folder=job_folder(f"{CLI_PACKAGE}-training"), on_log=self._trainingLog.append)
        self.ui.trainButton.setText(_("Cancel training"))
        self.ui.trainButton.setToolTip(_("Stop the training; the checkpoints written so far stay in the output "
                                         "folder."))
        self.ui.trainingProgressBar.setValue(0)
        self.ui.trainingProgressBar.show()
        self.ui.trainingStatusLabel.setText(_("Training on '{folder}'...").format(folder=folder))

    def _onTrainingProgress(self, event) -> None:
        self.ui.trainingProgressBar.setValue(int(round(100 * event.fraction)))
        lastEvent = self._trainingLog[-1:]  # e.g. the last validation's Dice (an emit_log line of the child)
        self.ui.trainingStatusLabel.setText("\n".join([event.message] + lastEvent))
        self.curve.refresh()

    def _finishTraining(self, job: ProcessJob) -> None:
        output = self._trainingOutput
        self.ui.trainButton.setText(_("Start training"))
        self.ui.trainButton.setToolTip(_("Train a network on the training folder; the best checkpoint is added to "
                                         "the model list."))
        self.ui.trainingProgressBar.hide()
        try:
            outputs = job.result(timeout=0).last
            if not outputs.get("checkpoint"):
                raise ProcessJobError(_("The training process ended without a checkpoint."))
        except OperationCancelled:
            self.ui.trainingStatusLabel.setText(_("Training cancelled; the checkpoints written so far stay in "
                                                  "'{folder}'.").format(folder=output))
        except Exception as error:  # noqa: BLE001 - reported in the panel
            if not isinstance(error, (ValueError, ProcessJobError)):
                logging.exception("OrganCombo training failed")
            self._showError(str(error), _("Training failed"), self.ui.trainingStatusLabel)
        else:
            if str(output) not in self.logic.trainingOutputFolders:  # as OrganComboLogic.train does
                self.logic.trainingOutputFolders.append(str(output))
            self.refreshModels(selectPath=outputs["checkpoint"])
            selected = self._selectedModel()
            bestMetric = outputs.get("best_metric")
            metric = (_("best validation Dice {dice:.3f}").format(dice=float(bestMetric))
                      if bestMetric is not None else _("no validation"))
            self.ui.trainingStatusLabel.setText(_("Training finished after {iterations} iterations ({metric}); the "
                                                  "model '{model}' is selected.").format(
                iterations=outputs.get("iterations"), metric=metric,
                model=selected.name if selected is not None else "?"))
        self.curve.refresh()
        self._checkCanApply()

    def _cancelTraining(self) -> None:
        self.jobs.stop("training", 30.0)

    # ------------------------------------------------------------------------------------------------ helpers
    def _showError(self, message: str, title: Optional[str] = None, label=None) -> None:
        """Show ``message`` in the panel (``label``, default the status line) and in an error dialog."""
        show_error(label or self.ui.statusLabel, message, title or _("Segmentation failed"))


# ---------------------------------------------------------------------------------------------------------- logic
class OrganComboLogic(ScriptedLoadableModuleLogic):  # noqa: F405
    """Scripting API of OrganCombo; every method works without the GUI.

    Typical use (Slicer Python console or ``Slicer --no-main-window --python-script``)::

        logic = slicer.util.getModuleLogic("OrganCombo")
        segmentation = logic.run(volumeNode)                       # bundled PET demo weights, CPU/GPU auto
        rows, table = logic.evaluate(segmentation, referenceSegmentation, volumeNode)

    ``progress(fraction, message)`` and ``cancel() -> bool`` follow :mod:`mednets.progress`; a cancelled run raises
    ``OperationCancelled`` and leaves the scene as it was.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)  # noqa: F405
        self.trainingOutputFolders: List[str] = []  # training runs of this session (listed among the models)
        self.deviceMessages: List[str] = []

    # ------------------------------------------------------------------------------------------------ models
    def availableModels(self) -> List[Any]:
        """Model sources to choose from: bundled demo weights, registered sources, the user's own checkpoints."""
        from OrganComboLib.models import available_models

        return available_models(self.trainingOutputFolders)

    def loadModel(self, model: Any = None, device: str = "auto"):
        """``(LoadedModel, OrganComboConfig)`` for a source name, a ``.safetensors`` path or None (default model)."""
        if device not in DEVICE_CHOICES and not str(device).startswith("cuda:"):
            raise ValueError(_("Unknown device '{device}'; choose one of {choices}.").format(
                device=device, choices=", ".join(DEVICE_CHOICES)))
        from OrganComboLib.models import load_organcombo_model

        return load_organcombo_model(model, device=device, report=self._deviceMessage,
                                     extra_folders=self.trainingOutputFolders)

    def _deviceMessage(self, message: str) -> None:
        self.deviceMessages.append(message)
        logging.info(message)

    # --------------------------------------------------------------------------------------------- inference
    @staticmethod
    def inputVolume(inputVolumeNode) -> Any:
        """The node's voxels and geometry as a :class:`mednets.image.Volume` (a copy; the node is not touched)."""
        if inputVolumeNode is None:
            raise ValueError(_("No input volume: select the image to segment."))
        if not inputVolumeNode.IsA("vtkMRMLScalarVolumeNode") and not inputVolumeNode.IsA("vtkMRMLVectorVolumeNode"):
            raise ValueError(_("'{name}' is not an image volume.").format(name=inputVolumeNode.GetName()))
        image = inputVolumeNode.GetImageData()
        if image is None or image.GetNumberOfPoints() == 0:
            raise ValueError(_("The input volume '{name}' is empty: it has no voxels.").format(
                name=inputVolumeNode.GetName()))
        try:
            return mrml.volume_from_node(inputVolumeNode)
        except ValueError as error:
            raise InputError(_("The geometry of '{name}' is unusable ({reason}); check its spacing and directions in "
                               "the Volumes module (Volume Information).").format(
                name=inputVolumeNode.GetName(), reason=error)) from None

    def computeSegmentation(self, volume, model: Any = None, device: str = "auto", threshold: Optional[float] = None,
                            batchSize: int = 4, progress: Optional[ProgressCallback] = None,
                            cancel: Optional[CancelCallback] = None) -> Tuple[SegmentationResult, OrganComboConfig]:
        """Segment a :class:`mednets.image.Volume` (no MRML access: safe in a worker thread)."""
        import warnings

        from OrganComboLib.pipeline import segment_volume

        check_input_volume(volume)  # refuse unusable input before loading any model
        report(progress, 0.0, _("Loading the model"))
        loaded, config = self.loadModel(model, device)
        with warnings.catch_warnings(record=True) as caught:  # e.g. CT-like values in a PET model: shown to the user
            warnings.simplefilter("always")
            result = segment_volume(volume, loaded.network, config, device=loaded.device, threshold=threshold,
                                    batch_size=batchSize, progress=progress, cancel=cancel,
                                    report_fallback=self._deviceMessage)
        for warning in caught:
            self._deviceMessage(str(warning.message))
        return result, config

    def createSegmentationNode(self, inputVolumeNode, result: SegmentationResult, config: OrganComboConfig,
                               outputSegmentationNode=None):
        """Store the result as segments with standard names/colours/terminology (GUI thread only).

        A NEW segmentation named after the input is created unless ``outputSegmentationNode`` is given, in which case
        only the segments of this module's organs in it are replaced (other segments stay). On error the scene is
        left as it was.
        """
        if inputVolumeNode is None or not inputVolumeNode.GetScene():
            raise ValueError(_("The input volume was removed from the scene before the result could be stored."))
        specs = segment_specs(config.classes)
        created = mrml.new_segmentation_node(result.labels, inputVolumeNode, specs,
                                             name=f"{inputVolumeNode.GetName()} organs")
        created.SetAttribute("OrganCombo.Model", config.name)
        if outputSegmentationNode is None:
            return created
        try:
            self._replaceOrganSegments(outputSegmentationNode, created, config)
        finally:
            slicer.mrmlScene.RemoveNode(created)
        return outputSegmentationNode

    @staticmethod
    def _replaceOrganSegments(target, source, config: OrganComboConfig) -> None:
        targetSegmentation, sourceSegmentation = target.GetSegmentation(), source.GetSegmentation()
        for name in config.class_names:
            existing = targetSegmentation.GetSegmentIdBySegmentName(name)
            if existing:
                targetSegmentation.RemoveSegment(existing)
            sourceId = sourceSegmentation.GetSegmentIdBySegmentName(name)
            if sourceId:
                targetSegmentation.CopySegmentFromSegmentation(sourceSegmentation, sourceId)

    def run(self, inputVolumeNode, model: Any = None, device: str = "auto", threshold: Optional[float] = None,
            outputSegmentationNode=None, batchSize: int = 4, progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelCallback] = None):
        """Segment ``inputVolumeNode`` (blocking) and return the segmentation node.

        Args:
            inputVolumeNode: scalar volume (PET, MRI or ultrasound, matching the model).
            model: source name from :meth:`availableModels`, a ``.safetensors`` path, or None (bundled PET demo).
            device: ``"auto"``, ``"cuda"``, ``"mps"`` or ``"cpu"``.
            threshold: probability threshold (default: the model's, 0.5 in the paper).
            outputSegmentationNode: write into this segmentation instead of a new one.
            batchSize: sliding windows per network call.

        Raises:
            ValueError (incl. ``InputError``) with a plain-language reason; ``OperationCancelled``.
        """
        volume = self.inputVolume(inputVolumeNode)
        result, config = self.computeSegmentation(volume, model, device, threshold, batchSize, progress, cancel)
        return self.createSegmentationNode(inputVolumeNode, result, config, outputSegmentationNode)

    # -------------------------------------------------------------------------------------------- evaluation
    def evaluate(self, segmentationNode, referenceSegmentationNode, referenceVolumeNode,
                 classNames: Optional[Sequence[str]] = None, createTable: bool = True,
                 progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelCallback] = None) -> Tuple[List[Dict[str, Any]], Any]:
        """Per-organ Jaccard, Dice, FPR, FNR and Hausdorff distance (mm) of a result against a reference.

        Segments are matched by organ name in both segmentations (case-insensitive), on the grid of
        ``referenceVolumeNode``. Returns ``(rows, tableNode)``; ``tableNode`` is a NEW table (None when
        ``createTable`` is False). An organ missing from a segmentation counts as empty.
        """
        labels, referenceLabels, names, spacing = self.evaluationInputs(segmentationNode, referenceSegmentationNode,
                                                                        referenceVolumeNode, classNames)
        rows = self.computeEvaluation(labels, referenceLabels, names, spacing, progress=progress, cancel=cancel)
        table = self.createMetricsTable(rows, f"{segmentationNode.GetName()} metrics") if createTable else None
        return rows, table

    def evaluationInputs(self, segmentationNode, referenceSegmentationNode, referenceVolumeNode,
                         classNames: Optional[Sequence[str]] = None
                         ) -> Tuple[np.ndarray, np.ndarray, List[str], Tuple[float, ...]]:
        """Copy what :meth:`evaluate` needs out of the scene: ``(labels, referenceLabels, organNames, spacing)``.

        Reads MRML (call it on the main thread); :meth:`computeEvaluation` then needs no scene and can run in a
        worker thread.
        """
        if segmentationNode is None or referenceSegmentationNode is None or referenceVolumeNode is None:
            raise ValueError(_("Select the result segmentation, the reference segmentation and the image."))
        names = list(classNames) if classNames else self._organNames(segmentationNode)
        if not names:
            raise ValueError(_("The segmentation '{name}' has no segments to evaluate.").format(
                name=segmentationNode.GetName()))
        result = mrml.case_from_nodes(referenceVolumeNode, segmentationNode, names, allow_missing=True)
        reference = mrml.case_from_nodes(referenceVolumeNode, referenceSegmentationNode, names, allow_missing=True)
        return result.label, reference.label, names, tuple(result.spacing)

    @staticmethod
    def computeEvaluation(labels: np.ndarray, referenceLabels: np.ndarray, classNames: Sequence[str],
                          spacing: Sequence[float], progress: Optional[ProgressCallback] = None,
                          cancel: Optional[CancelCallback] = None) -> List[Dict[str, Any]]:
        """The per-organ metric rows of two label maps (no scene access: safe in a worker thread)."""
        from OrganComboLib.pipeline import evaluate_labels

        return evaluate_labels(labels, referenceLabels, classNames, spacing, progress=progress, cancel=cancel)

    @staticmethod
    def createMetricsTable(rows: Sequence[Mapping[str, Any]], name: str):
        """A NEW table node with one row per organ: Jaccard, Dice, FPR, FNR, HD (mm)."""
        columns: Dict[str, List[Any]] = {"organ": [row["name"] for row in rows]}
        for key, title in (("jaccard", "Jaccard"), ("dice", "Dice"), ("false_positive_rate", "FPR"),
                           ("false_negative_rate", "FNR"), ("hausdorff_distance", "HD (mm)")):
            columns[title] = [float(row[key]) for row in rows]
        return mrml.new_table_node(columns, scene=slicer.mrmlScene, name=name)

    @staticmethod
    def _organNames(segmentationNode) -> List[str]:
        segmentation = segmentationNode.GetSegmentation()
        return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]

    # ---------------------------------------------------------------------------------------------- training
    @staticmethod
    def addCaseToTrainingSet(volumeNode, segmentationNode, folder: Union[str, Path], configName: str = "pet",
                             allowMissingOrgans: bool = True) -> Tuple[Path, Path]:
        """Write the volume and its (corrected) segmentation to a training folder (``<name>_image/label.nrrd``).

        Segments are matched to the organs of ``configName`` by name; organs without a segment count as absent.
        Nothing existing is overwritten (a numbered name is chosen).
        """
        from mednets.training import write_training_case

        config = get_config(configName)
        case = mrml.case_from_nodes(volumeNode, segmentationNode, config.class_names,
                                    allow_missing=allowMissingOrgans)
        if not np.any(case.label):
            raise ValueError(_("The segmentation '{name}' contains none of the organs {organs}.").format(
                name=segmentationNode.GetName(), organs=", ".join(config.class_names)))
        return write_training_case(folder, volumeNode.GetName(), mrml.volume_from_node(volumeNode), case.label)

    def train(self, trainingFolder: Union[str, Path], outputFolder: Union[str, Path], configName: str = "pet",
              epochs: Optional[int] = None, iterations: Optional[int] = None, validationFraction: float = 0.2,
              initialModel: Any = None, device: str = "auto", seed: int = 0, modelOverrides: Optional[dict] = None,
              configChanges: Optional[dict] = None, progress: Optional[ProgressCallback] = None,
              cancel: Optional[CancelCallback] = None, log: Optional[Callable[[str], None]] = None):
        """Train (or fine-tune) on a training folder with the paper's recipe; returns the engine's TrainingResult.

        The folder holds ``<case>_image.nrrd`` / ``<case>_label.nrrd`` pairs (see :meth:`addCaseToTrainingSet`);
        ``validationFraction`` of the cases (at least one) validate. The best checkpoint is added to the model list.
        No MRML access: safe in a worker thread.
        """
        from OrganComboLib.training import TrainingRequest, train
        from mednets.training import training_folder_cases

        cases = list(training_folder_cases(trainingFolder))
        if len(cases) < 2:
            raise ValueError(_("The training folder needs at least 2 labelled cases (one to train, one to validate); "
                               "it has {count}.").format(count=len(cases)))
        validationCount = max(1, int(round(len(cases) * validationFraction)))
        config = get_config(configName)
        if configChanges:
            config = config.replace(**configChanges)
        initialWeights = None
        if initialModel is not None:
            from OrganComboLib.models import find_model
            from mednets.sources import resolve

            initialWeights = str(resolve(find_model(initialModel, self.trainingOutputFolders)))
        request = TrainingRequest(config=config, train_cases=cases[:-validationCount],
                                  validation_cases=cases[-validationCount:], output_dir=str(outputFolder),
                                  epochs=epochs, iterations=iterations, device=device, seed=seed,
                                  model_overrides=dict(modelOverrides or {}), initial_weights=initialWeights,
                                  training_data=f"{len(cases)} cases from {trainingFolder}")
        result = train(request, progress=progress, cancel=cancel, log=log)
        if str(outputFolder) not in self.trainingOutputFolders:
            self.trainingOutputFolders.append(str(outputFolder))
        return result


# ----------------------------------------------------------------------------------------------------------- test
class OrganComboTest(ScriptedLoadableModuleTest):  # noqa: F405
    """Runs in Slicer (Reload and Test) and under pytest through the test runtime."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_OrganComboSegmentsPetPhantom()
        self.setUp()
        self.test_OrganComboBadInput()

    def _phantomNode(self, seed: int = 11):
        from mednets.image import Volume
        from mednets.phantoms import KJI_LPS_DIRECTIONS, pet_whole_body_phantom

        phantom = pet_whole_body_phantom(seed=seed)
        volume = Volume(phantom.image, spacing=phantom.spacing, directions_ras=KJI_LPS_DIRECTIONS)
        node = mrml.new_volume_node(volume, slicer.mrmlScene, "PET phantom")
        return node, phantom

    def test_OrganComboSegmentsPetPhantom(self):
        """The bundled demo weights find the five organs of a held-out PET phantom; Evaluate gives a metric table."""
        self.delayDisplay("Segmenting a PET phantom with the bundled demo weights")
        volumeNode, phantom = self._phantomNode()
        before = slicer.util.arrayFromVolume(volumeNode).copy()
        logic = OrganComboLogic()
        fractions = []
        segmentationNode = logic.run(volumeNode, device="cpu", batchSize=8, progress=lambda f, m: fractions.append(f))
        segmentation = segmentationNode.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        self.assertEqual(names, list(get_config("pet").class_names))
        self.assertEqual(segmentationNode.GetName(), "PET phantom organs")
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(volumeNode), before)  # input untouched
        self.assertEqual(fractions[-1], 1.0)
        reference = mrml.new_segmentation_node(phantom.labels, volumeNode,
                                               segment_specs(get_config("pet").classes), name="reference")
        rows, table = logic.evaluate(segmentationNode, reference, volumeNode)
        self.assertEqual(table.GetNumberOfRows(), 5)
        meanDice = float(np.mean([row["dice"] for row in rows]))
        self.assertGreater(meanDice, 0.7, f"mean Dice {meanDice:.3f} of the demo weights on a held-out phantom")
        self.delayDisplay(f"Test passed (mean Dice {meanDice:.3f})")

    def test_OrganComboBadInput(self):
        """Missing, constant and NaN inputs raise clear errors and add nothing to the scene."""
        logic = OrganComboLogic()
        from mednets.image import Volume

        constant = mrml.new_volume_node(Volume(np.ones((32, 32, 32), np.float32)), slicer.mrmlScene, "constant")
        nanVolume = Volume(np.random.default_rng(0).random((32, 32, 32)).astype(np.float32))
        nanVolume.array[3, 4, 5] = np.nan
        nanNode = mrml.new_volume_node(nanVolume, slicer.mrmlScene, "with NaN")
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaisesRegex(ValueError, "No input volume"):
            logic.run(None)
        with self.assertRaisesRegex(InputError, "constant"):
            logic.run(constant, device="cpu")
        with self.assertRaisesRegex(InputError, "NaN"):
            logic.run(nanNode, device="cpu")
        zeroSpacing = mrml.new_volume_node(Volume(np.random.default_rng(1).random((8, 8, 8))), slicer.mrmlScene, "flat")
        zeroSpacing.SetSpacing(0.0, 1.0, 1.0)
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaisesRegex(InputError, "spacing"):
            logic.run(zeroSpacing, device="cpu")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.delayDisplay("Test passed")
