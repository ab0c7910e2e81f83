"""AneurysmSeg: intracranial aneurysm segmentation on CT angiography with GLIA-Net (Bo et al., Patterns 2021).

Segments aneurysms of a head CTA (Hounsfield units, no preprocessing) into a NEW segmentation with the standard
'aneurysm' segment, a probability volume (the risk map) and a table with one row per detected aneurysm (volume,
maximal diameter, centre, mean probability); evaluates a result against a reference (voxel-wise precision, recall,
DSC, HD95, AUC, AP; target-wise hits and false positives; case-wise detection) and trains or fine-tunes the network.
The Logic class is the scripting API; the widget only gathers inputs and shows results. The same file runs in
3D Slicer and under pytest (Testing/runtime).
"""

from __future__ import annotations

import enum
import logging
from types import SimpleNamespace
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
from mednets.jobs import ProcessJob, job_folder
from mednets.progress import CancelCallback, OperationCancelled, ProgressCallback, report
from mednets.terminology import segment_specs
from mednets.widgets import (DeviceChoice, JobPoller, ModelSelector, TrainingCurve, chosen_folder, ensure_packages,
                             show_error, start_cli_job)

# Only torch-free imports here, so the module loads in a Slicer without PyTorch; the network code is imported by the
# Logic methods that need it.
from AneurysmSegLib.configs import (ANEURYSM, CONFIGS, DEFAULT_MODEL, MODULE_NAME, AneurysmSegConfig, get_config,
                                    scaled_overlap)
from AneurysmSegLib.inputs import InputError, check_input_volume

if TYPE_CHECKING:
    from AneurysmSegLib.pipeline import SegmentationResult

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
#: The command line the panel's jobs run as a child process (``PythonSlicer -m AneurysmSegLib ...`` in Slicer).
CLI_PACKAGE = "AneurysmSegLib"


# --------------------------------------------------------------------------------------------------------- module
class AneurysmSeg(ScriptedLoadableModule):  # noqa: F405
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)  # noqa: F405
        self.parent.title = _("Aneurysm Seg")
        self.parent.categories = [_("Segmentation"), _("SlicerMedNets")]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["SlicerMedNets developers"]
        self.parent.helpText = _(
            "Intracranial aneurysm segmentation on CT angiography with GLIA-Net (Bo et al., Patterns 2021): a global "
            "positioning network looks at the whole head, a local network segments 96-voxel windows. Choose a CTA "
            "(Hounsfield units) and a model, press Apply: a new segmentation, a probability volume (risk map) and a "
            "table of the detected aneurysms appear. Evaluate compares with a reference; Train fine-tunes the "
            "network on your cases. Research use only, not for clinical use.")
        self.parent.acknowledgementText = _(
            "Method: Z.-H. Bo et al., Toward human intervention-free clinical diagnosis of intracranial aneurysm via "
            "deep neural network, Patterns 2 (2021) 100197. Part of SlicerMedNets (Apache-2.0).")
        # The bundled CTA phantom in File > Download Sample Data (registered once the application has started).
        slicer.app.startupCompleted.connect(registerSampleData)


def registerSampleData() -> None:
    """Offer the bundled CTA head phantom (and its reference aneurysms) in Slicer's Sample Data module, offline."""
    from mednets.sampledata import register_with_slicer
    from AneurysmSegLib.samples import SAMPLES

    register_with_slicer(SAMPLES)


# ------------------------------------------------------------------------------------------------ parameter node
AneurysmSegDevice = DeviceChoice  # where the network runs (shared by all SlicerMedNets panels)


class AneurysmSegTrainingConfig(enum.Enum):
    """Training recipes (AneurysmSegLib.configs)."""

    PAPER = "paper"
    OFFICIAL = "official"
    SMALL = "small"

    def label(self) -> str:
        return get_config(self.value).title


@parameterNodeWrapper
class AneurysmSegParameterNode:
    """Persistent settings of the AneurysmSeg panel (saved with the scene).

    inputVolume: CTA to segment; model: name of the chosen model; device: where the network runs;
    outputSegmentation: existing segmentation to write into (a new one when empty); threshold: probability threshold
    (0.5 in the paper); batchSize: windows per network call; overlap: sliding-window overlap in voxels (64 in the
    paper); resultSegmentation/referenceSegmentation: what Evaluate compares; trainingFolder/trainingOutputFolder/
    trainingConfig/iterations: what Train uses; fineTune: Train starts from the selected model's weights.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: AneurysmSegDevice = AneurysmSegDevice.AUTO
    outputSegmentation: vtkMRMLSegmentationNode
    threshold: Annotated[float, WithinRange(0.01, 0.99)] = 0.5
    batchSize: Annotated[int, WithinRange(1, 64)] = 4
    overlap: Annotated[int, WithinRange(0, 95)] = 64
    resultSegmentation: vtkMRMLSegmentationNode
    referenceSegmentation: vtkMRMLSegmentationNode
    trainingFolder: Path
    trainingOutputFolder: Path
    trainingConfig: AneurysmSegTrainingConfig = AneurysmSegTrainingConfig.PAPER
    iterations: Annotated[int, WithinRange(1, 1000000)] = 200000
    fineTune: bool = False


# --------------------------------------------------------------------------------------------------------- widget
class AneurysmSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):  # noqa: F405
    """The AneurysmSeg panel: gathers inputs, runs the module's command line as a child process, shows results.

    Segmentation, evaluation and training run as a child process of ``python -m AneurysmSegLib ...`` (``PythonSlicer``
    in Slicer; :func:`mednets.widgets.start_cli_job`). In real Slicer a Python worker thread would starve: PythonQt
    keeps the GIL in the main thread while Qt's event loop waits (Slicer never turns PythonQt's thread support on). The
    panel writes its inputs as NRRD files (full geometry) into a private job folder, a QTimer reads the child's JSON
    progress lines, and once the child succeeded the outputs are read back into NEW nodes on the GUI thread; a failed,
    cancelled or killed child leaves the scene as it was, and the job folder is removed in every case. The buttons
    turn into Cancel buttons while a job runs. ``trainingOptions`` holds extra training settings (keys of
    :meth:`AneurysmSegLogic.train`: iterations, seed, configChanges, modelOverrides, validateEvery,
    validationFraction, initialModel), mapped to options of ``python -m AneurysmSegLib train``.
    """

    POLL_INTERVAL_MS = 100

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)  # noqa: F405
        VTKObservationMixin.__init__(self)
        self.logic: Optional[AneurysmSegLogic] = None
        self._parameterNode: Optional[AneurysmSegParameterNode] = None
        self._parameterNodeGuiTag = None
        self._lastTrainingConfig: Optional[AneurysmSegTrainingConfig] = None
        self._jobTarget = None
        self._jobMessages: List[str] = []
        self._evaluationName = ""
        self._trainingOutput: Optional[Path] = None
        self._trainingLog: List[str] = []
        self.trainingOptions: Dict[str, Any] = {}
        self.lastOutputs: Dict[str, Any] = {}
        self.lastTableNode = None

    # ------------------------------------------------------------------------------------------------ set-up
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)  # noqa: F405
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AneurysmSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AneurysmSegLogic()
        for widget in (self.ui.progressBar, self.ui.trainingProgressBar, self.ui.trainingCurveLabel,
                       self.ui.metricsTableView):
            widget.hide()
        self.jobs = JobPoller(self.POLL_INTERVAL_MS)  # segmentation, evaluation and training: child processes
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
        self._cancelJob()
        self._cancelEvaluation()
        self.lastTableNode = None
        self.lastOutputs = {}
        self.ui.metricsTableView.setMRMLTableNode(None)
        self.ui.metricsTableView.hide()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------------------------------------ parameters
    def initializeParameterNode(self) -> None:
        self.setParameterNode(AneurysmSegParameterNode(self.logic.getParameterNode()))
        parameters = self._parameterNode
        if not parameters.inputVolume:
            parameters.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        base = Path(slicer.app.defaultScenePath) / "AneurysmSeg"
        if self._folder(parameters.trainingFolder) is None:
            parameters.trainingFolder = base / "TrainingCases"
        if self._folder(parameters.trainingOutputFolder) is None:
            parameters.trainingOutputFolder = base / "TrainingRun"

    def setParameterNode(self, parameterNode: Optional[AneurysmSegParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self._lastTrainingConfig = self._parameterNode.trainingConfig
            self._selectModel(name=self._parameterNode.model)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._checkCanApply()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        if parameters is not None and parameters.trainingConfig != self._lastTrainingConfig:
            self._lastTrainingConfig = parameters.trainingConfig
            parameters.iterations = get_config(parameters.trainingConfig.value).steps
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
                tip = _("Segment the aneurysms of '{volume}' with '{model}'.").format(
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
            self._parameterNode.model = source.name
        else:
            self._checkCanApply()

    def onLoadWeightsButton(self) -> None:
        chosen = qt.QFileDialog.getOpenFileName(self.parent, _("Load AneurysmSeg weights"), "",
                                                _("Weights (*.safetensors *.pt *.pth);;All files (*)"))
        path = chosen[0] if isinstance(chosen, tuple) else chosen
        if path:
            self.importWeightsFile(path)

    def importWeightsFile(self, path: Union[str, Path]) -> Optional[Any]:
        """Verify and import a weights file (a mednets checkpoint, or a checkpoint of the official GLIA-Net code,
        converted) into the user model folder, list it and select it; None on error."""
        if not ensure_packages(self.ui.statusLabel, MODULE_NAME):  # safetensors and torch read the weights
            return None
        try:
            source = self.logic.importWeights(path)
        except (ValueError, OSError) as error:
            self._showError(str(error), _("Loading the weights failed"))
            return None
        self.refreshModels(selectPath=source.path)
        selected = self._selectedModel()
        self.ui.statusLabel.setText(_("Imported the weights '{name}'; they are selected in the model list.").format(
            name=selected.name if selected is not None else source.name))
        return selected

    # ------------------------------------------------------------------------------------------------ segmentation
    def isRunning(self) -> bool:
        return self.jobs.running("segmentation")

    def onApplyButton(self) -> None:
        if self.isRunning():
            self.jobs.cancel("segmentation")
            self.ui.statusLabel.setText(_("Cancelling..."))
            return
        parameters = self._parameterNode
        if parameters is None or not ensure_packages(self.ui.statusLabel, MODULE_NAME):
            return
        model = self._selectedModel()
        try:
            if model is None:
                raise ValueError(_("No model to segment with: load a weights file or train a model first."))
            volume = self.logic.inputVolume(parameters.inputVolume)
        except ValueError as error:
            self._showError(str(error))
            return
        from mednets.io import write_volume

        folder = job_folder("AneurysmSeg-segmentation")
        try:
            inputPath = folder / "input.nrrd"
            write_volume(volume, inputPath)  # voxels with spacing, origin and directions
        except (OSError, ValueError) as error:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            self._showError(str(error))
            return
        args = ["predict", "--input", inputPath, "--output", folder / "labels.nrrd",
                "--risk-map", folder / "risk.nrrd", "--model", self._modelArgument(model),
                "--device", parameters.device.value, "--threshold", repr(float(parameters.threshold)),
                "--batch-size", int(parameters.batchSize), "--overlap", int(parameters.overlap)]
        args += self._modelFolderArguments()
        self._jobTarget = (parameters.inputVolume, parameters.outputSegmentation)
        self._jobMessages = []
        start_cli_job(self.jobs, "segmentation", CLI_PACKAGE, args, self._onSegmentationProgress, self._finishJob,
                      folder=folder, on_log=self._jobMessages.append)
        self.ui.applyButton.setText(_("Cancel"))
        self.ui.applyButton.setToolTip(_("Stop the segmentation; nothing is added to the scene."))
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.show()
        self.ui.statusLabel.setText(_("Segmenting '{volume}' with '{model}'...").format(
            volume=parameters.inputVolume.GetName(), model=model.name))

    @staticmethod
    def _modelArgument(source) -> str:
        """What ``--model`` gets: the source's name (the child finds it among the bundled, user and
        ``--model-folder`` weights, as the panel's list does)."""
        return str(source.name)

    def _modelFolderArguments(self) -> List[str]:
        args: List[str] = []
        for folder in self.logic.trainingOutputFolders:
            args += ["--model-folder", str(folder)]
        return args

    def _onSegmentationProgress(self, event) -> None:
        self.ui.progressBar.setValue(int(round(100 * event.fraction)))
        self.ui.statusLabel.setText("\n".join([event.message] + self._jobMessages[-3:]))

    @staticmethod
    def _jobError(error: BaseException) -> str:
        """The one-line message of a failed child (or of a failure reading its outputs)."""
        text = str(error).strip() or type(error).__name__
        return text.splitlines()[0]

    def _finishJob(self, job: ProcessJob) -> None:
        inputVolume, outputSegmentation = self._jobTarget
        self._jobTarget = None
        self.ui.applyButton.setText(_("Apply"))
        self.ui.progressBar.hide()
        try:
            outcome = job.result(timeout=0).last  # raises the child's error, or OperationCancelled
            from mednets.io import read_volume

            result = SimpleNamespace(
                labels=np.asarray(read_volume(outcome["output"]).array).astype(np.uint8),
                probability=np.asarray(read_volume(outcome["risk_map"]).array, dtype=np.float32),
                targets=list(outcome.get("targets", [])), threshold=float(outcome.get("threshold", 0.5)))
            outputs = self.logic.createOutputNodes(inputVolume, result, outputSegmentation)
        except OperationCancelled:
            self.ui.statusLabel.setText(_("Cancelled: nothing was added to the scene."))
        except Exception as error:  # noqa: BLE001 - any failure is reported in the panel
            if not isinstance(error, (ValueError, RuntimeError, KeyError, OSError)):
                logging.exception("AneurysmSeg segmentation failed")
            self._showError(self._jobError(error))
        else:
            self.lastOutputs = outputs
            segmentationNode = outputs["segmentation"]
            if segmentationNode.GetDisplayNode() is None:
                segmentationNode.CreateDefaultDisplayNodes()
            if slicer.app.layoutManager() is not None:
                slicer.util.setSliceViewerLayers(background=inputVolume, foreground=outputs["riskMap"],
                                                 foregroundOpacity=0.3)
            if self._parameterNode is not None:
                self._parameterNode.resultSegmentation = segmentationNode
            self.lastTableNode = outputs["table"]
            self.ui.metricsTableView.setMRMLTableNode(outputs["table"])
            self.ui.metricsTableView.show()
            lines = [_("Created '{segmentation}', the risk map '{risk}' and the table '{table}' in {seconds:.1f} s: "
                       "{count} aneurysm candidate(s).").format(
                segmentation=segmentationNode.GetName(), risk=outputs["riskMap"].GetName(),
                table=outputs["table"].GetName(), seconds=job.elapsed, count=len(result.targets))]
            self.ui.statusLabel.setText("\n".join(lines + list(outcome.get("messages", []))))
        self._checkCanApply()

    def _cancelJob(self) -> None:
        """Stop a running segmentation for good (scene closing, module unloading); its result is dropped."""
        self.jobs.stop("segmentation", 10.0)  # a job that did not stop in time is reported as an error

    # ------------------------------------------------------------------------------------------------ evaluation
    def isEvaluating(self) -> bool:
        return self.jobs.running("evaluation")

    def onEvaluateButton(self) -> None:
        # Evaluation runs in the child too: HD95 (surface distances) and AUC/AP over every voxel take seconds on a
        # head CTA, which would freeze Slicer's GUI if run here.
        if self.isEvaluating():
            self.jobs.cancel("evaluation")
            self.ui.evaluateStatusLabel.setText(_("Cancelling..."))
            return
        parameters = self._parameterNode
        if parameters is None or not ensure_packages(self.ui.evaluateStatusLabel, MODULE_NAME):
            return
        folder = None
        try:
            labels, reference, probability, _spacing = self.logic.evaluationInputs(
                parameters.resultSegmentation, parameters.referenceSegmentation, parameters.inputVolume)
            from mednets.io import write_volume

            grid = mrml.volume_from_node(parameters.inputVolume)
            folder = job_folder("AneurysmSeg-evaluation")
            paths = {name: folder / f"{name}.nrrd" for name in ("prediction", "reference", "risk")}
            write_volume(grid.with_array(labels.astype(np.uint8)), paths["prediction"])
            write_volume(grid.with_array(reference.astype(np.uint8)), paths["reference"])
            write_volume(grid.with_array(probability.astype(np.float32)), paths["risk"])
        except Exception as error:  # noqa: BLE001 - reported in the panel
            if folder is not None:
                import shutil

                shutil.rmtree(folder, ignore_errors=True)
            if not isinstance(error, (ValueError, OSError)):
                logging.exception("AneurysmSeg evaluation failed")
            self._showError(str(error), _("Evaluation failed"), self.ui.evaluateStatusLabel)
            return
        self._evaluationName = f"{parameters.resultSegmentation.GetName()} metrics"
        start_cli_job(self.jobs, "evaluation", CLI_PACKAGE,
                      ["evaluate", "--prediction", paths["prediction"], "--reference", paths["reference"],
                       "--risk-map", paths["risk"]], None, self._finishEvaluation, folder=folder)
        self.ui.evaluateButton.setText(_("Cancel"))
        self.ui.evaluateStatusLabel.setText(_("Computing the metrics..."))

    def _finishEvaluation(self, job: ProcessJob) -> None:
        self.ui.evaluateButton.setText(_("Evaluate"))
        try:
            metrics = job.result(timeout=0).last["metrics"]
            table = self.logic.createMetricsTable(metrics, self._evaluationName)
        except OperationCancelled:
            self.ui.evaluateStatusLabel.setText(_("Cancelled: no table was added."))
            return
        except Exception as error:  # noqa: BLE001 - reported in the panel
            if not isinstance(error, (ValueError, RuntimeError, KeyError)):
                logging.exception("AneurysmSeg evaluation failed")
            self._showError(self._jobError(error), _("Evaluation failed"), self.ui.evaluateStatusLabel)
            return
        finally:
            self._checkCanApply()
        self.lastTableNode = table
        self.ui.metricsTableView.setMRMLTableNode(table)
        self.ui.metricsTableView.show()
        target = metrics["target"]
        self.ui.evaluateStatusLabel.setText(_(
            "DSC {dsc:.3f}; {tp} of {total} aneurysms found, {fp} false positive(s); all metrics are in the table "
            "'{table}'.").format(dsc=metrics["voxel"]["dsc"], tp=int(target["tp"]),
                                 total=int(target["tp"] + target["fn"]), fp=int(target["fp"]), table=table.GetName()))

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
            if parameters.inputVolume is None or segmentation is None or folder is None:
                raise ValueError(_("Select the input volume, a reference or result segmentation and a training "
                                   "folder."))
            imagePath, labelPath = self.logic.addCaseToTrainingSet(parameters.inputVolume, segmentation, folder)
        except (ValueError, OSError) as error:
            self._showError(str(error), _("Adding the case failed"), self.ui.trainingStatusLabel)
            return
        count = len(list(folder.glob("*_label.nrrd")))
        self.ui.trainingStatusLabel.setText(_("Added '{image}' and '{label}' (from '{segmentation}'); the training "
                                              "folder has {count} cases.").format(
            image=Path(imagePath).name, label=Path(labelPath).name, segmentation=segmentation.GetName(), count=count))

    def onTrainButton(self) -> None:
        if self.isTraining():
            self.jobs.cancel("training")
            self.ui.trainingStatusLabel.setText(_("Stopping the training..."))
            return
        parameters = self._parameterNode
        if parameters is None or not ensure_packages(self.ui.trainingStatusLabel, MODULE_NAME):
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
            args = self._trainingArguments(folder, output, parameters, initialModel)
        except ValueError as error:
            self._showError(str(error), _("Training failed"), self.ui.trainingStatusLabel)
            return
        self._trainingOutput = output
        self.curve.watch(output)  # a previous run's plot is not shown
        self._trainingLog = []
        start_cli_job(self.jobs, "training", CLI_PACKAGE, args, self._onTrainingProgress, self._finishTraining,
                      folder=job_folder("AneurysmSeg-training"), on_log=self._trainingLog.append)
        self.ui.trainButton.setText(_("Cancel training"))
        self.ui.trainingProgressBar.setValue(0)
        self.ui.trainingProgressBar.show()
        self.ui.trainingStatusLabel.setText(_("Training on '{folder}'...").format(folder=folder))

    #: ``trainingOptions`` keys (the Logic's train() arguments) and the CLI options they map to.
    TRAINING_OPTION_FLAGS = {"iterations": "--iterations", "seed": "--seed", "validateEvery": "--validate-every",
                             "validationFraction": "--validation-fraction", "configChanges": "--config-changes",
                             "modelOverrides": "--model-overrides", "device": "--device"}

    def _trainingArguments(self, folder: Path, output: Path, parameters, initialModel) -> List[str]:
        """``python -m AneurysmSegLib train`` arguments for the panel's settings and ``trainingOptions``."""
        import json

        options = {"iterations": parameters.iterations, "device": parameters.device.value,
                   "initialModel": initialModel, **self.trainingOptions}
        unknown = sorted(set(options) - set(self.TRAINING_OPTION_FLAGS) - {"initialModel"})
        if unknown:
            raise ValueError(_("Unknown training options: {names}.").format(names=", ".join(unknown)))
        args = ["train", "--data", str(folder), "--output", str(output), "--config", parameters.trainingConfig.value,
                "--validation-split", "first"]  # the Logic's split: the first cases validate
        for key, flag in self.TRAINING_OPTION_FLAGS.items():
            value = options.get(key)
            if value is None:
                continue
            if key in ("configChanges", "modelOverrides"):
                value = json.dumps(value) if value else None
                if value is None:
                    continue
            args += [flag, str(value)]
        start = options.get("initialModel")
        if start is not None:
            args += ["--initial-weights", start if isinstance(start, (str, Path)) else self._modelArgument(start)]
        return args + self._modelFolderArguments()

    def _onTrainingProgress(self, event) -> None:
        self.ui.trainingProgressBar.setValue(int(round(100 * event.fraction)))
        self.ui.trainingStatusLabel.setText("\n".join([event.message] + self._trainingLog[-1:]))
        self.curve.refresh()

    def _finishTraining(self, job: ProcessJob) -> None:
        output = self._trainingOutput
        self.ui.trainButton.setText(_("Start training"))
        self.ui.trainingProgressBar.hide()
        try:
            result = job.result(timeout=0).last
            checkpoint = result["checkpoint"]
        except OperationCancelled:
            self.ui.trainingStatusLabel.setText(_("Training cancelled; the checkpoints written so far stay in "
                                                  "'{folder}'.").format(folder=output))
        except Exception as error:  # noqa: BLE001 - reported in the panel
            if not isinstance(error, (ValueError, RuntimeError, KeyError)):
                logging.exception("AneurysmSeg training failed")
            self._showError(self._jobError(error), _("Training failed"), self.ui.trainingStatusLabel)
        else:
            if str(output) not in self.logic.trainingOutputFolders:  # listed once finished (as Logic.train does)
                self.logic.trainingOutputFolders.append(str(output))
            self.refreshModels(selectPath=checkpoint)
            selected = self._selectedModel()
            best = result.get("best_metric")
            metric = (_("best validation target F1 {value:.3f}").format(value=best)
                      if best is not None else _("no validation"))
            self.ui.trainingStatusLabel.setText(_("Training finished after {iterations} iterations ({metric}); the "
                                                  "model '{model}' is selected.").format(
                iterations=result.get("iterations"), metric=metric,
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
class AneurysmSegLogic(ScriptedLoadableModuleLogic):  # noqa: F405
    """Scripting API of AneurysmSeg; every method works without the GUI.

    Typical use (Slicer Python console or ``Slicer --no-main-window --python-script``)::

        logic = slicer.util.getModuleLogic("AneurysmSeg")
        outputs = logic.run(ctaNode)              # {"segmentation", "riskMap", "table"}
        metrics, table = logic.evaluate(outputs["segmentation"], referenceSegmentation, ctaNode,
                                        riskMapNode=outputs["riskMap"])

    ``progress(fraction, message)`` and ``cancel() -> bool`` follow :mod:`mednets.progress`; a cancelled run raises
    ``OperationCancelled`` and leaves the scene as it was.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)  # noqa: F405
        self.trainingOutputFolders: List[str] = []
        self.deviceMessages: List[str] = []

    # ------------------------------------------------------------------------------------------------ models
    def availableModels(self) -> List[Any]:
        from AneurysmSegLib.models import available_models

        return available_models(self.trainingOutputFolders)

    def loadModel(self, model: Any = None, device: str = "auto"):
        """``(LoadedModel, AneurysmSegConfig)`` for a source name, a ``.safetensors`` path or None (default)."""
        if device not in DEVICE_CHOICES and not str(device).startswith("cuda:"):
            raise ValueError(_("Unknown device '{device}'; choose one of {choices}.").format(
                device=device, choices=", ".join(DEVICE_CHOICES)))
        from AneurysmSegLib.models import load_aneurysmseg_model

        return load_aneurysmseg_model(model, device=device, report=self._deviceMessage,
                                      extra_folders=self.trainingOutputFolders)

    def importWeights(self, path: Union[str, Path]) -> Any:
        """Import a mednets checkpoint of this module, or convert a checkpoint of the official GLIA-Net code
        (``.pt``/``.pth``), into the user model folder; returns its ModelSource."""
        from mednets.sources import import_weights, user_models_dir

        path = Path(path)
        if path.suffix.lower() in (".pt", ".pth", ".ckpt"):
            from AneurysmSegLib.models import import_official_checkpoint

            converted = Path(user_models_dir()) / f"{path.stem}-converted.safetensors"
            converted.parent.mkdir(parents=True, exist_ok=True)
            path = import_official_checkpoint(path, converted)
        return import_weights(path, expected_module=MODULE_NAME)

    def _deviceMessage(self, message: str) -> None:
        self.deviceMessages.append(message)
        logging.info(message)

    # --------------------------------------------------------------------------------------------- inference
    @staticmethod
    def inputVolume(inputVolumeNode) -> Any:
        """The node's voxels and geometry as a :class:`mednets.image.Volume` (a copy; the node is not touched)."""
        if inputVolumeNode is None:
            raise ValueError(_("No input volume: select the CTA to segment."))
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
                            batchSize: int = 4, overlap: Optional[int] = None,
                            progress: Optional[ProgressCallback] = None,
                            cancel: Optional[CancelCallback] = None) -> Tuple["SegmentationResult", AneurysmSegConfig]:
        """Segment a :class:`mednets.image.Volume` (no MRML access: safe in a worker thread).

        ``overlap`` (voxels of a 96-voxel window, the paper's 64 by default) overrides the model configuration's window
        overlap; for models with other window sizes the same fraction of their window is used.
        """
        import warnings

        from AneurysmSegLib.pipeline import segment_volume

        check_input_volume(volume)
        report(progress, 0.0, _("Loading the model"))
        loaded, config = self.loadModel(model, device)
        if overlap is not None:
            config = config.replace(window_overlap=scaled_overlap(overlap, config))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = segment_volume(volume, loaded.network, config, device=loaded.device, threshold=threshold,
                                    batch_size=batchSize, progress=progress, cancel=cancel,
                                    report_fallback=self._deviceMessage)
        for warning in caught:
            self._deviceMessage(str(warning.message))
        return result, config

    def createOutputNodes(self, inputVolumeNode, result: "SegmentationResult",
                          outputSegmentationNode=None) -> Dict[str, Any]:
        """Store a result as nodes (GUI thread): ``{"segmentation", "riskMap", "table"}``.

        A NEW segmentation '<input> aneurysms' with the 'aneurysm' segment (SNOMED CT terminology) is created unless
        ``outputSegmentationNode`` is given (then only its 'aneurysm' segment is replaced); the risk map is a NEW
        scalar volume '<input> aneurysm risk' (probability 0-1) on the input grid; the table '<input> aneurysms'
        has one row per detected aneurysm. On error the scene is left as it was.
        """
        if inputVolumeNode is None or not inputVolumeNode.GetScene():
            raise ValueError(_("The input volume was removed from the scene before the result could be stored."))
        from AneurysmSegLib.pipeline import TABLE_COLUMNS

        name = inputVolumeNode.GetName()
        created = []
        try:
            segmentation = mrml.new_segmentation_node(result.labels, inputVolumeNode, segment_specs([ANEURYSM]),
                                                      name=f"{name} aneurysms")
            created.append(segmentation)
            risk = mrml.new_volume_node(result.probability.astype(np.float32), slicer.mrmlScene,
                                        name=f"{name} aneurysm risk", reference_node=inputVolumeNode)
            created.append(risk)
            risk.SetAttribute("AneurysmSeg.Threshold", str(result.threshold))
            display = risk.GetDisplayNode()
            if display is not None:
                display.SetAutoWindowLevel(False)
                display.SetWindowLevelMinMax(0.0, 1.0)
                display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeFileColdToHotRainbow.txt")
            columns = {column: [row[column] for row in result.targets] for column in TABLE_COLUMNS}
            table = mrml.new_table_node(columns, scene=slicer.mrmlScene, name=f"{name} aneurysms")
            created.append(table)
        except Exception:
            for node in created:
                slicer.mrmlScene.RemoveNode(node)
            raise
        if outputSegmentationNode is not None:
            try:
                target = outputSegmentationNode.GetSegmentation()
                existing = target.GetSegmentIdBySegmentName(ANEURYSM.name)
                if existing:
                    target.RemoveSegment(existing)
                source = segmentation.GetSegmentation()
                sourceId = source.GetSegmentIdBySegmentName(ANEURYSM.name)
                if sourceId:
                    target.CopySegmentFromSegmentation(source, sourceId)
            finally:
                slicer.mrmlScene.RemoveNode(segmentation)
            segmentation = outputSegmentationNode
        return {"segmentation": segmentation, "riskMap": risk, "table": table}

    def run(self, inputVolumeNode, model: Any = None, device: str = "auto", threshold: Optional[float] = None,
            outputSegmentationNode=None, batchSize: int = 4, overlap: Optional[int] = None,
            progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None) -> Dict[str, Any]:
        """Segment ``inputVolumeNode`` (blocking); returns ``{"segmentation", "riskMap", "table"}`` nodes.

        Raises ValueError (incl. ``InputError``) with a plain-language reason; ``OperationCancelled``.
        """
        volume = self.inputVolume(inputVolumeNode)
        result, _config = self.computeSegmentation(volume, model, device, threshold, batchSize, overlap, progress,
                                                   cancel)
        return self.createOutputNodes(inputVolumeNode, result, outputSegmentationNode)

    # -------------------------------------------------------------------------------------------- evaluation
    def evaluate(self, segmentationNode, referenceSegmentationNode, referenceVolumeNode, riskMapNode=None,
                 createTable: bool = True) -> Tuple[Dict[str, Any], Any]:
        """The paper's metrics of a result against a reference: ``(metrics, tableNode)``.

        ``metrics = {"voxel": {precision, recall, dsc, hd95, auc, ap}, "target": {tp, fp, fn, recall},
        "case": {predicted_positive, reference_positive}}``. AUC and AP need the risk map (probabilities); without it
        they are computed from the binary segmentation. The 'aneurysm' segment of each segmentation is used (all
        segments when there is none).
        """
        inputs = self.evaluationInputs(segmentationNode, referenceSegmentationNode, referenceVolumeNode, riskMapNode)
        metrics = self.computeEvaluation(*inputs)
        table = self.createMetricsTable(metrics, f"{segmentationNode.GetName()} metrics") if createTable else None
        return metrics, table

    def evaluationInputs(self, segmentationNode, referenceSegmentationNode, referenceVolumeNode, riskMapNode=None
                         ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Tuple[float, ...]]:
        """``(labels, referenceMask, probability, spacing)`` copied out of the scene (main thread)."""
        if segmentationNode is None or referenceSegmentationNode is None or referenceVolumeNode is None:
            raise ValueError(_("Select the result segmentation, the reference segmentation and the image."))
        labels = self._aneurysmMask(segmentationNode, referenceVolumeNode)
        reference = self._aneurysmMask(referenceSegmentationNode, referenceVolumeNode)
        if riskMapNode is None:
            riskMapNode = self._riskMapOf(segmentationNode)
        probability = labels.astype(np.float32)
        if riskMapNode is not None:
            risk = slicer.util.arrayFromVolume(riskMapNode)
            if risk.shape == labels.shape:
                probability = np.asarray(risk, dtype=np.float32).copy()
        spacing = tuple(float(s) for s in mrml.volume_from_node(referenceVolumeNode).spacing)
        return labels, reference, probability, spacing

    @staticmethod
    def _riskMapOf(segmentationNode):
        name = segmentationNode.GetName()
        if name.endswith(" aneurysms"):
            candidates = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
            wanted = name[:-len(" aneurysms")] + " aneurysm risk"
            matches = [node for node in candidates if node.GetName() == wanted]
            return matches[-1] if matches else None
        return None

    @staticmethod
    def _aneurysmMask(segmentationNode, referenceVolumeNode) -> np.ndarray:
        segmentation = segmentationNode.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        if not names:
            raise ValueError(_("The segmentation '{name}' has no segments.").format(name=segmentationNode.GetName()))
        wanted = [n for n in names if n.strip().lower() == ANEURYSM.name] or names
        case = mrml.case_from_nodes(referenceVolumeNode, segmentationNode, wanted, allow_missing=True)
        return np.asarray(case.label) > 0

    @staticmethod
    def computeEvaluation(labels: np.ndarray, reference: np.ndarray, probability: np.ndarray,
                          spacing: Sequence[float], progress: Optional[ProgressCallback] = None,
                          cancel: Optional[CancelCallback] = None) -> Dict[str, Any]:
        """Voxel-, target- and case-wise metrics (no scene access: safe in a worker thread)."""
        from AneurysmSegLib.pipeline import evaluate_case

        return evaluate_case(probability, reference, spacing, labels=labels)

    @staticmethod
    def createMetricsTable(metrics: Mapping[str, Any], name: str):
        """A NEW table node with one row per metric (level, metric, value)."""
        rows = []
        titles = {"precision": "precision", "recall": "recall", "dsc": "DSC", "hd95": "HD95 (mm)", "auc": "AUC",
                  "ap": "AP"}
        for key, title in titles.items():
            rows.append(("voxel", title, float(metrics["voxel"][key])))
        for key in ("tp", "fp", "fn", "recall"):
            rows.append(("target", key.upper() if key != "recall" else "recall", float(metrics["target"][key])))
        for key in ("predicted_positive", "reference_positive"):
            rows.append(("case", key.replace("_", " "), float(metrics["case"][key])))
        columns = {"level": [r[0] for r in rows], "metric": [r[1] for r in rows], "value": [r[2] for r in rows]}
        return mrml.new_table_node(columns, scene=slicer.mrmlScene, name=name)

    # ---------------------------------------------------------------------------------------------- training
    @staticmethod
    def addCaseToTrainingSet(volumeNode, segmentationNode, folder: Union[str, Path]) -> Tuple[Path, Path]:
        """Write the CTA and its (corrected) aneurysm segmentation to a training folder (``<name>_image/label``)."""
        from mednets.training import write_training_case

        mask = AneurysmSegLogic._aneurysmMask(segmentationNode, volumeNode)
        return write_training_case(folder, volumeNode.GetName(), mrml.volume_from_node(volumeNode),
                                   mask.astype(np.uint8))

    def train(self, trainingFolder: Union[str, Path], outputFolder: Union[str, Path], configName: str = "paper",
              iterations: Optional[int] = None, validationFraction: float = 0.2, initialModel: Any = None,
              device: str = "auto", seed: int = 0, modelOverrides: Optional[dict] = None,
              configChanges: Optional[dict] = None, validateEvery: Optional[int] = None,
              progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None,
              log: Optional[Callable[[str], None]] = None):
        """Train (or fine-tune from ``initialModel``) on a training folder; returns the engine's TrainingResult.

        No MRML access: safe in a worker thread. The output folder is added to the model list.
        """
        from AneurysmSegLib.training import TrainingRequest, train
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
            from AneurysmSegLib.models import find_model
            from mednets.sources import resolve

            initialWeights = str(resolve(find_model(initialModel, self.trainingOutputFolders)))
        request = TrainingRequest(config=config, train_cases=cases[validationCount:],
                                  validation_cases=cases[:validationCount], output_dir=str(outputFolder),
                                  iterations=iterations, validate_every=validateEvery,
                                  model_overrides=dict(modelOverrides or {}), device=device, seed=seed,
                                  initial_weights=initialWeights,
                                  training_data=f"{len(cases)} cases from {trainingFolder}")
        result = train(request, progress=progress, cancel=cancel, log=log)
        if str(outputFolder) not in self.trainingOutputFolders:  # listed once finished (a cancelled run is not)
            self.trainingOutputFolders.append(str(outputFolder))
        return result


# ----------------------------------------------------------------------------------------------------------- test
class AneurysmSegTest(ScriptedLoadableModuleTest):  # noqa: F405
    """Logic-level tests; they run in Slicer (ctest / Reload and Test) and under pytest through the test runtime."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_AneurysmSegSegmentsCtaPhantom()
        self.setUp()
        self.test_AneurysmSegBadInput()

    def _phantomNode(self, seed: int = 3):
        from mednets.image import Volume
        from mednets.phantoms import KJI_LPS_DIRECTIONS
        from mednets.phantoms.cta_head import cta_head_phantom

        phantom = cta_head_phantom(shape=(48, 64, 64), seed=seed, aneurysm_diameter_mm=(6.0, 10.0))
        volume = Volume(phantom.image, spacing=phantom.spacing, directions_ras=KJI_LPS_DIRECTIONS)
        node = mrml.new_volume_node(volume, slicer.mrmlScene, "CTA phantom")
        reference = mrml.new_segmentation_node((phantom.labels == 1).astype(np.uint8), node,
                                               segment_specs([ANEURYSM]), name="CTA phantom reference")
        return node, reference, phantom

    def test_AneurysmSegSegmentsCtaPhantom(self):
        """Apply the bundled demo weights to a CTA phantom: segmentation, risk map, table; evaluate."""
        self.delayDisplay("Segmenting a CTA phantom with the demo weights")
        logic = AneurysmSegLogic()
        node, reference, phantom = self._phantomNode()
        outputs = logic.run(node, device="cpu", overlap=16)
        segmentation, risk, table = outputs["segmentation"], outputs["riskMap"], outputs["table"]
        self.assertEqual(segmentation.GetName(), "CTA phantom aneurysms")
        self.assertEqual(segmentation.GetSegmentation().GetNthSegment(0).GetName(), "aneurysm")
        probability = slicer.util.arrayFromVolume(risk)
        self.assertEqual(probability.shape, phantom.image.shape)
        self.assertTrue(0.0 <= float(probability.min()) and float(probability.max()) <= 1.0)
        self.assertEqual(table.GetNumberOfColumns(), 9)
        metrics, metricsTable = logic.evaluate(segmentation, reference, node, riskMapNode=risk)
        self.assertGreaterEqual(metrics["target"]["tp"], 1)
        self.assertGreater(metrics["voxel"]["auc"], 0.9)
        self.assertEqual(metricsTable.GetNumberOfRows(), 12)
        self.delayDisplay("Test passed")

    def test_AneurysmSegBadInput(self):
        """A constant volume and a 2D image are refused with a plain-language error; nothing is added."""
        from mednets.image import Volume

        logic = AneurysmSegLogic()
        flat = mrml.new_volume_node(Volume(np.full((16, 16, 16), 40.0, np.float32)), slicer.mrmlScene, "Flat")
        flatSlice = mrml.new_volume_node(Volume(np.random.default_rng(0).normal(0, 300, (1, 16, 16))),
                                         slicer.mrmlScene, "Slice")
        before = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(ValueError) as caught:
            logic.run(flat, device="cpu")
        self.assertIn("constant", str(caught.exception))
        with self.assertRaises(ValueError) as caught:
            logic.run(flatSlice, device="cpu")
        self.assertIn("2D", str(caught.exception))
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
