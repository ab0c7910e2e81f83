"""NucleiMaskylo: nuclei detection and instance segmentation in H&E histology (MASKYLO, Bukhari et al. 2025) in 3D Slicer.

An H&E image (an RGB vector volume with one slice) goes through stain normalisation, overlapping 512x512 tiles, the
Mask R-CNN branch (optionally fused with YOLO branches through the optional, AGPL-3.0 ``ultralytics`` package) and
seam-free stitching into a NEW instance label map (one label value per nucleus, shown with its own colour table, so
thousands of nuclei stay fast) and a NEW table node (label, area, centroid, confidence, branch per nucleus). Evaluate
compares a result with a reference label map (precision, recall, mAP@50, mAP@50-95, Dice, IoU, AJI, PQ). Train
fine-tunes Mask R-CNN on tiles in the NuInsSeg layout. The Logic class is the scripting API (blocking, in-process);
the widget only gathers inputs and shows results. The panel's jobs (Apply, Evaluate, Train) run as a child process of
the module's command line, ``PythonSlicer -m NucleiMaskyloLib --progress json predict|evaluate|train ...``: in Slicer a
Python worker thread would starve (PythonQt keeps the GIL in the main thread), so the work runs in another process, as
Slicer's own CLI modules do. The same file runs in 3D Slicer and under pytest (Testing/runtime).
"""

from __future__ import annotations

import enum
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Dict, List, Optional, Tuple, Union

import numpy as np
import qt
import vtk

import slicer
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLVectorVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import *  # noqa: F403 - Slicer's module convention
from slicer.util import VTKObservationMixin

from mednets import mrml
from mednets.jobs import ProcessJob, ProcessJobError, job_folder
from mednets.progress import CancelCallback, OperationCancelled, ProgressCallback, check_cancel, report
from mednets.widgets import (DeviceChoice, JobPoller, ModelSelector, chosen_folder, ensure_packages, show_error,
                             start_cli_job)

# torch-free imports only (the module loads in a Slicer without PyTorch); network code is imported where needed
from NucleiMaskyloLib.models import DEFAULT_MODEL, MODULE_NAME

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
METRIC_NAMES = {"precision": "Precision", "recall": "Recall", "mAP50": "mAP@50", "mAP50_95": "mAP@50-95",
                "dice": "Dice", "iou": "IoU", "aji": "AJI", "pq": "PQ", "sq": "SQ", "dq": "DQ", "f1": "F1"}
TABLE_ATTRIBUTE = "NucleiMaskylo.NucleusTableID"
#: The command-line package the panel's child processes run (``python -m NucleiMaskyloLib ...``).
CLI_PACKAGE = "NucleiMaskyloLib"
#: ``widget.trainingOptions`` keys (``logic.train`` keywords) and how they reach ``python -m NucleiMaskyloLib train``.
TRAINING_OPTIONS = ("iterations", "device", "model", "architecture", "recipe", "seed")


# --------------------------------------------------------------------------------------------------------- module
class NucleiMaskylo(ScriptedLoadableModule):  # noqa: F405
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)  # noqa: F405
        self.parent.title = _("Nuclei Maskylo")
        self.parent.categories = [_("Segmentation"), _("SlicerMedNets")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerMedNets developers"]
        self.parent.helpText = _(
            "Nuclei detection and instance segmentation in H&E histology images (MASKYLO: Mask R-CNN with optional "
            "YOLO branches and fusion). Choose an RGB H&E image and press Apply: a new label map with one value per "
            "nucleus and a table of their areas, centroids and confidences appear. Evaluate compares a result with a "
            "reference (precision, recall, mAP, Dice, IoU, AJI, PQ); Train fine-tunes the network. The optional YOLO "
            "branch uses the ultralytics package (AGPL-3.0), installed only if you agree. Research use only, not for "
            "clinical use.")
        self.parent.acknowledgementText = _(
            "Method: N. Bukhari, H. Munir, R. Haider, S. Hussain, MASKYLO: Hybrid Deep Learning Framework for "
            "Detection and Segmentation of HE Stained Histology Image (2025). Part of SlicerMedNets (Apache-2.0).")
        # The bundled H&E phantom tile (and its reference nuclei) in File > Download Sample Data (registered once the
        # application has started).
        slicer.app.startupCompleted.connect(registerSampleData)


def registerSampleData() -> None:
    """Offer the bundled H&E phantom tile and its reference nuclei in Slicer's Sample Data module, offline."""
    from mednets.sampledata import register_with_slicer
    from NucleiMaskyloLib.samples import SAMPLES

    register_with_slicer(SAMPLES)


# ------------------------------------------------------------------------------------------------ parameter node
NucleiMaskyloDevice = DeviceChoice  # where the network runs (shared by all SlicerMedNets panels)


class NucleiMaskyloStain(enum.Enum):
    MACENKO = "macenko"
    REINHARD = "reinhard"
    NONE = "none"

    def label(self) -> str:
        return {"macenko": _("Macenko"), "reinhard": _("Reinhard"), "none": _("None")}[self.value]


class NucleiMaskyloFusion(enum.Enum):
    IOU_VOTING = "iou_voting"
    CONFIDENCE_WEIGHTING = "confidence_weighting"
    WBF = "wbf"

    def label(self) -> str:
        return {"iou_voting": _("IoU voting"), "confidence_weighting": _("Confidence weighting"),
                "wbf": _("Weighted box fusion")}[self.value]


@parameterNodeWrapper
class NucleiMaskyloParameterNode:
    """Persistent settings of the panel (saved with the scene)."""

    inputVolume: vtkMRMLVectorVolumeNode
    model: str = ""
    device: NucleiMaskyloDevice = NucleiMaskyloDevice.AUTO
    scoreThreshold: Annotated[float, WithinRange(0.05, 0.99)] = 0.5
    tileSize: Annotated[int, WithinRange(64, 2048)] = 512  # the paper's tiles
    overlap: Annotated[int, WithinRange(0, 512)] = 64
    stainMethod: NucleiMaskyloStain = NucleiMaskyloStain.MACENKO
    useYolo: bool = False
    fusion: NucleiMaskyloFusion = NucleiMaskyloFusion.IOU_VOTING
    fusionIou: Annotated[float, WithinRange(0.1, 0.95)] = 0.5
    resultLabelmap: vtkMRMLLabelMapVolumeNode
    referenceLabelmap: vtkMRMLLabelMapVolumeNode
    trainingFolder: Path
    trainingOutputFolder: Path
    iterations: Annotated[int, WithinRange(1, 1000000)] = 2000
    fineTune: bool = False  # Train starts from the selected model's weights


# --------------------------------------------------------------------------------------------------------- widget
class NucleiMaskyloWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):  # noqa: F405
    """The panel: gathers inputs, runs each job as a child process of ``python -m NucleiMaskyloLib`` (Apply, Evaluate
    and Train become Cancel while they run), creates NEW nodes on the GUI thread once a job succeeded. A cancelled,
    failed or killed child adds nothing to the scene; its private folder is removed (JobPoller)."""

    POLL_INTERVAL_MS = 100

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)  # noqa: F405
        VTKObservationMixin.__init__(self)
        self.logic: Optional[NucleiMaskyloLogic] = None
        self._parameterNode: Optional[NucleiMaskyloParameterNode] = None
        self._parameterNodeGuiTag = None
        self._jobInput = None
        self._evaluationName = ""
        self.trainingOptions: Dict[str, Any] = {}
        self.lastTableNode = None
        self.lastNucleusTable = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)  # noqa: F405
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/NucleiMaskylo.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = NucleiMaskyloLogic()
        for widget in (self.ui.progressBar, self.ui.trainingProgressBar, self.ui.metricsTableView):
            widget.hide()
        self.jobs = JobPoller(self.POLL_INTERVAL_MS)  # segmentation, evaluation, training: child processes
        self.models = ModelSelector(self.ui.modelComboBox, lambda: self.logic.availableModels(), DEFAULT_MODEL,
                                    self._showModelListError)
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
        self._cancelJobs()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        for name in ("segmentation", "evaluation"):  # their results would belong to the closing scene
            self.jobs.stop(name, 10.0)
        self.ui.metricsTableView.setMRMLTableNode(None)
        self.ui.metricsTableView.hide()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------------------------------------ parameters
    def initializeParameterNode(self) -> None:
        self.setParameterNode(NucleiMaskyloParameterNode(self.logic.getParameterNode()))
        parameters = self._parameterNode
        if not parameters.inputVolume:
            parameters.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLVectorVolumeNode")
        base = Path(slicer.app.defaultScenePath) / "NucleiMaskylo"
        if self._folder(parameters.trainingFolder) is None:
            parameters.trainingFolder = base / "TrainingTiles"
        if self._folder(parameters.trainingOutputFolder) is None:
            parameters.trainingOutputFolder = base / "TrainingRun"

    def setParameterNode(self, parameterNode: Optional[NucleiMaskyloParameterNode]) -> None:
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
            model = self._selectedModel()
            canApply = bool(parameters.inputVolume and model is not None)
            self.ui.applyButton.setEnabled(canApply)
            self.ui.applyButton.setToolTip(
                _("Find the nuclei of '{volume}' with '{model}'.").format(volume=parameters.inputVolume.GetName(),
                                                                         model=model.name) if canApply else
                (_("No model: load a weights file or train a model first.") if model is None
                 else _("Select an RGB H&E image.")))
        if not self.isEvaluating():  # while it runs, Evaluate is the Cancel button
            self.ui.evaluateButton.setEnabled(bool(parameters.resultLabelmap and parameters.referenceLabelmap))
        self.ui.addCaseButton.setEnabled(bool(parameters.inputVolume and self._folder(parameters.trainingFolder)
                                              and (parameters.referenceLabelmap or parameters.resultLabelmap)))
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
        if source is not None and self._parameterNode is not None and self._parameterNode.model != source.name:
            self._parameterNode.model = source.name
        else:
            self._checkCanApply()

    def onLoadWeightsButton(self) -> None:
        chosen = qt.QFileDialog.getOpenFileName(self.parent, _("Load NucleiMaskylo weights"), "",
                                                _("Weights (*.safetensors);;All files (*)"))
        path = chosen[0] if isinstance(chosen, tuple) else chosen
        if path:
            self.importWeightsFile(path)

    def importWeightsFile(self, path: Union[str, Path]) -> Optional[Any]:
        from mednets.sources import import_weights

        try:
            source = import_weights(path, expected_module=MODULE_NAME)
        except (ValueError, OSError) as error:
            self._showError(str(error), self.ui.statusLabel)
            return None
        self.refreshModels(selectPath=source.path)
        self.ui.statusLabel.setText(_("Imported the weights '{name}'.").format(name=source.name))
        return self._selectedModel()

    # ------------------------------------------------------------------------------------------------ apply
    def isRunning(self) -> bool:
        return self.jobs.running("segmentation")

    def _settings(self) -> Dict[str, Any]:
        p = self._parameterNode
        return dict(score_threshold=float(p.scoreThreshold), tile_size=int(p.tileSize), overlap=int(p.overlap),
                    stain_method=p.stainMethod.value, fusion=p.fusion.value, fusion_iou=float(p.fusionIou))

    def _modelArguments(self, model: Any) -> List[str]:
        """``--model NAME`` plus the folders the name is looked up in (the Logic's training output folders): the
        child resolves and verifies the weights exactly as ``logic.availableModels()`` listed them."""
        if model is None:
            return []
        arguments = ["--model", model.name if hasattr(model, "name") else str(model)]
        for folder in self.logic.trainingOutputFolders:
            arguments += ["--model-folder", str(folder)]
        return arguments

    def _predictArguments(self, folder: Path, model: Any) -> List[str]:
        settings = self._settings()
        return (["predict", "--input", folder / "input.nrrd", "--output", folder / "labels.nrrd",
                 "--table", folder / "table.json", "--device", self._parameterNode.device.value]
                + self._modelArguments(model)
                + ["--tile-size", settings["tile_size"], "--overlap", settings["overlap"],
                   "--score-threshold", settings["score_threshold"], "--stain", settings["stain_method"],
                   "--fusion", settings["fusion"], "--fusion-iou", settings["fusion_iou"]])

    @staticmethod
    def _newJobFolder(name: str) -> Path:
        return job_folder(f"NucleiMaskylo-{name}")

    def onApplyButton(self) -> None:
        if self.isRunning():
            self.jobs.cancel("segmentation")
            self.ui.statusLabel.setText(_("Cancelling..."))
            return
        parameters = self._parameterNode
        model = self._selectedModel()
        try:
            if model is None:
                raise ValueError(_("No model: load a weights file or train a model first."))
            self.logic.inputImage(parameters.inputVolume)  # grey, stacks, constant images: refused at once
            if parameters.useYolo:
                # asks for ultralytics (consent dialog) on the GUI thread; the panel has no YOLO weights to give the
                # child, so this raises the Logic's plain "needs trained YOLO weights" error
                self.logic.yoloModels(confirm=self._confirmYolo)
        except Exception as error:  # noqa: BLE001 - shown in the panel
            self._showError(str(error), self.ui.statusLabel)
            return
        if not ensure_packages(self.ui.statusLabel, "NucleiMaskylo"):  # torch & co., with consent, on the GUI thread
            return
        folder = self._newJobFolder("segmentation")
        try:  # the child reads the image with its full geometry (spacing, origin, directions) from NRRD
            from mednets.io import write_volume

            write_volume(mrml.volume_from_node(parameters.inputVolume), folder / "input.nrrd")
        except (OSError, ValueError) as error:
            shutil.rmtree(folder, ignore_errors=True)
            self._showError(str(error), self.ui.statusLabel)
            return
        self._jobInput = parameters.inputVolume
        start_cli_job(self.jobs, "segmentation", CLI_PACKAGE, self._predictArguments(folder, model),
                      self._onSegmentationProgress, self._finishJob, folder=folder)
        self.ui.applyButton.setText(_("Cancel"))
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.show()
        self.ui.statusLabel.setText(_("Finding nuclei in '{volume}'...").format(volume=parameters.inputVolume.GetName()))

    @staticmethod
    def _confirmYolo(question: str) -> bool:
        return bool(slicer.util.confirmOkCancelDisplay(question, windowTitle=_("NucleiMaskylo: optional YOLO branch")))

    def _onSegmentationProgress(self, event) -> None:
        self.ui.progressBar.setValue(int(round(100 * event.fraction)))
        self.ui.statusLabel.setText(event.message)

    @staticmethod
    def _readNuclei(job: ProcessJob) -> "NucleiResult":
        """The child's label map (NRRD on the input's grid) and nucleus table (JSON columns)."""
        from mednets.io import read_volume

        outputs = job.result(timeout=0).last
        labels = np.asarray(read_volume(outputs["output"]).array)
        table = json.loads(Path(outputs["table"]).read_text())
        return NucleiResult(labels=np.rint(labels[0]).astype(np.int32), table=table, model=str(outputs["model"]))

    def _finishJob(self, job: ProcessJob) -> None:
        inputVolume, self._jobInput = self._jobInput, None
        self.ui.applyButton.setText(_("Apply"))
        self.ui.progressBar.hide()
        try:
            result = self._readNuclei(job)  # re-raises the child's error (ProcessJobError) or OperationCancelled
            if inputVolume is None or inputVolume.GetScene() is None:
                raise ValueError(_("The input image was removed from the scene while the nuclei were searched."))
            labelmapNode, tableNode = self.logic.createOutputNodes(inputVolume, result)
        except OperationCancelled:
            self.ui.statusLabel.setText(_("Cancelled: nothing was added to the scene."))
        except Exception as error:  # noqa: BLE001
            if not isinstance(error, (ValueError, ProcessJobError)):
                logging.exception("NucleiMaskylo failed")
            self._showError(str(error), self.ui.statusLabel)
        else:
            self.lastNucleusTable = tableNode
            if self._parameterNode is not None:
                self._parameterNode.resultLabelmap = labelmapNode
            if slicer.app.layoutManager() is not None:
                slicer.util.setSliceViewerLayers(background=inputVolume, label=labelmapNode)
            self.ui.statusLabel.setText(_("Found {count} nuclei in {seconds:.1f} s: label map '{labels}', table "
                                          "'{table}'.").format(count=result.count, seconds=job.elapsed,
                                                               labels=labelmapNode.GetName(),
                                                               table=tableNode.GetName()))
        self._checkCanApply()

    def _cancelJobs(self) -> None:
        """Stop the running segmentation, evaluation and training for good (module unloading); their results are
        dropped."""
        for name in ("segmentation", "evaluation", "training"):
            self.jobs.cancel(name)  # both stop at once, then each is waited for
        self.jobs.stop_all(10.0)

    def _showError(self, message: str, label, title: Optional[str] = None) -> None:
        """Show ``message`` in ``label`` and in an error dialog."""
        show_error(label, message, title or _("NucleiMaskylo"))

    # ------------------------------------------------------------------------------------------------ evaluate
    def isEvaluating(self) -> bool:
        return self.jobs.running("evaluation")

    def onEvaluateButton(self) -> None:
        """Evaluate in the child (``python -m NucleiMaskyloLib evaluate``): mAP over ten IoU thresholds, AJI and PQ
        over thousands of nuclei take seconds on a large tile."""
        if self.isEvaluating():
            self.jobs.cancel("evaluation")
            self.ui.evaluateStatusLabel.setText(_("Cancelling..."))
            return
        parameters = self._parameterNode
        resultNode, referenceNode = parameters.resultLabelmap, parameters.referenceLabelmap
        folder = None
        try:
            result = self.logic._labels(resultNode, _("result"))
            reference = self.logic._labels(referenceNode, _("reference"))
            if result.shape != reference.shape:
                raise ValueError(_("The result ({a}) and reference ({b}) label maps have different sizes.").format(
                    a="x".join(map(str, result.shape)), b="x".join(map(str, reference.shape))))
            scores = self.logic._scoresFromTable(resultNode, result)
            if not ensure_packages(self.ui.evaluateStatusLabel, "NucleiMaskylo"):
                return
            from mednets.io import write_volume

            folder = self._newJobFolder("evaluation")
            write_volume(mrml.volume_from_node(resultNode), folder / "result.nrrd")
            write_volume(mrml.volume_from_node(referenceNode), folder / "reference.nrrd")
            arguments = ["evaluate", "--prediction", folder / "result.nrrd", "--reference", folder / "reference.nrrd"]
            if scores is not None:
                (folder / "scores.json").write_text(json.dumps([float(v) for v in scores]))
                arguments += ["--scores", folder / "scores.json"]
        except Exception as error:  # noqa: BLE001
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            if not isinstance(error, (ValueError, OSError)):
                logging.exception("NucleiMaskylo evaluation failed")
            self._showError(str(error), self.ui.evaluateStatusLabel)
            return
        self._evaluationName = f"{resultNode.GetName()} metrics"
        start_cli_job(self.jobs, "evaluation", CLI_PACKAGE, arguments, None, self._finishEvaluation, folder=folder)
        self.ui.evaluateButton.setText(_("Cancel evaluation"))
        self.ui.evaluateStatusLabel.setText(_("Evaluating '{result}'...").format(result=resultNode.GetName()))

    def _finishEvaluation(self, job: ProcessJob) -> None:
        self.ui.evaluateButton.setText(_("Evaluate"))
        try:
            metrics = job.result(timeout=0).last["metrics"]
            table = self.logic.createMetricsTable(metrics, self._evaluationName)
        except OperationCancelled:
            self.ui.evaluateStatusLabel.setText(_("Evaluation cancelled: nothing was added to the scene."))
        except Exception as error:  # noqa: BLE001
            if not isinstance(error, (ValueError, ProcessJobError)):
                logging.exception("NucleiMaskylo evaluation failed")
            self._showError(str(error), self.ui.evaluateStatusLabel)
        else:
            self.lastTableNode = table
            self.ui.metricsTableView.setMRMLTableNode(table)
            self.ui.metricsTableView.show()
            self.ui.evaluateStatusLabel.setText(_("mAP@50 {map50:.3f}, AJI {aji:.3f}, PQ {pq:.3f}; all metrics are in "
                                                  "'{table}'.").format(map50=metrics["mAP50"], aji=metrics["aji"],
                                                                       pq=metrics["pq"], table=table.GetName()))
        self._checkCanApply()

    # ------------------------------------------------------------------------------------------------ train
    def onAddCaseButton(self) -> None:
        parameters = self._parameterNode
        labelmap = parameters.referenceLabelmap or parameters.resultLabelmap
        try:
            imagePath, labelPath = self.logic.addCaseToTrainingSet(parameters.inputVolume, labelmap,
                                                                   self._folder(parameters.trainingFolder))
        except (ValueError, OSError) as error:
            self._showError(str(error), self.ui.trainingStatusLabel)
            return
        self.ui.trainingStatusLabel.setText(_("Added '{image}' and '{label}'.").format(image=Path(imagePath).name,
                                                                                      label=Path(labelPath).name))

    def onTrainButton(self) -> None:
        if self.isTraining():
            self.jobs.cancel("training")
            self.ui.trainingStatusLabel.setText(_("Stopping the training..."))
            return
        parameters = self._parameterNode
        folder, output = self._folder(parameters.trainingFolder), self._folder(parameters.trainingOutputFolder)
        if folder is None or not folder.is_dir():
            self._showError(_("Choose a training folder with tiles (NuInsSeg layout; 'Add current case' writes "
                              "one)."), self.ui.trainingStatusLabel)
            return
        try:
            model = self.models.fine_tuning_start(parameters.fineTune)
        except ValueError as error:
            self._showError(str(error), self.ui.trainingStatusLabel)
            return
        options = dict(iterations=int(parameters.iterations), device=parameters.device.value, model=model)
        options.update(self.trainingOptions)
        try:
            arguments = self._trainingArguments(folder, output, options)
        except ValueError as error:
            self._showError(str(error), self.ui.trainingStatusLabel)
            return
        if not ensure_packages(self.ui.trainingStatusLabel, "NucleiMaskylo"):
            return
        start_cli_job(self.jobs, "training", CLI_PACKAGE, arguments, self._onTrainingProgress, self._finishTraining,
                      folder=self._newJobFolder("training"), on_log=self._onTrainingLog)
        self.ui.trainButton.setText(_("Cancel training"))
        self.ui.trainingProgressBar.setValue(0)
        self.ui.trainingProgressBar.show()
        self.ui.trainingStatusLabel.setText(_("Training..."))

    def _trainingArguments(self, folder: Path, output: Path, options: Dict[str, Any]) -> List[str]:
        """``logic.train`` keywords (the panel's settings and ``widget.trainingOptions``) as ``train`` options."""
        unknown = sorted(set(options) - set(TRAINING_OPTIONS))
        if unknown:
            raise ValueError(_("Unknown training option(s): {names}.").format(names=", ".join(unknown)))
        arguments = ["train", "--data", folder, "--output", output, "--stain", "macenko",  # as logic.train does
                     "--architecture", options.get("architecture") or "mask_rcnn_small",
                     "--device", options.get("device") or "auto", "--seed", int(options.get("seed") or 0)]
        if options.get("iterations") is not None:
            arguments += ["--iterations", int(options["iterations"])]
        if options.get("recipe"):
            arguments += ["--recipe", json.dumps(dict(options["recipe"]))]
        return arguments + self._modelArguments(options.get("model"))

    def isTraining(self) -> bool:
        return self.jobs.running("training")

    def _onTrainingProgress(self, event) -> None:
        self.ui.trainingProgressBar.setValue(int(round(100 * event.fraction)))
        self.ui.trainingStatusLabel.setText(event.message)

    def _onTrainingLog(self, message: str) -> None:
        logging.info("NucleiMaskylo training: %s", message)

    def _finishTraining(self, job: ProcessJob) -> None:
        self.ui.trainButton.setText(_("Train"))
        self.ui.trainingProgressBar.hide()
        try:
            checkpoint = job.result(timeout=0).last["checkpoint"]
        except OperationCancelled:
            self.ui.trainingStatusLabel.setText(_("Training cancelled; no checkpoint was written."))
        except Exception as error:  # noqa: BLE001
            if not isinstance(error, (ValueError, ProcessJobError)):
                logging.exception("NucleiMaskylo training failed")
            self._showError(str(error), self.ui.trainingStatusLabel)
        else:
            self.logic.trainingOutputFolders.append(str(Path(checkpoint).parent))
            self.refreshModels(selectPath=checkpoint)
            self.ui.trainingStatusLabel.setText(_("Training finished: '{name}' is selected in the model list.").format(
                name=Path(checkpoint).name))
        self._checkCanApply()


# --------------------------------------------------------------------------------------------------------- logic
@dataclass
class NucleiResult:
    """Nuclei of one image: the stitched instances, their label map (1..N) and the per-nucleus table columns."""

    labels: np.ndarray
    table: Dict[str, list]
    model: str

    @property
    def count(self) -> int:
        return len(self.table["label"])


class NucleiMaskyloLogic(ScriptedLoadableModuleLogic):  # noqa: F405
    """Scripting API: ``run`` (image node -> label map + table), ``evaluate``, ``addCaseToTrainingSet``, ``train``.

    Blocking and in-process (for scripts); the panel runs the same steps in a child process of the command line.
    ``computeNuclei``/``train`` touch no MRML node; node creation (``createOutputNodes``) is separate.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)  # noqa: F405
        self.deviceMessages: List[str] = []
        self.trainingOutputFolders: List[str] = []

    # ------------------------------------------------------------------------------------------------ inputs
    def availableModels(self) -> list:
        from NucleiMaskyloLib.models import available_models

        return available_models(self.trainingOutputFolders)

    @staticmethod
    def inputImage(volumeNode) -> np.ndarray:
        """The RGB uint8 (H, W, 3) pixels of an H&E vector volume with one slice (a copy), or a clear ValueError."""
        from NucleiMaskyloLib.pipeline import check_rgb_image

        if volumeNode is None:
            raise ValueError(_("No input image: select an RGB H&E image."))
        if not volumeNode.IsA("vtkMRMLVectorVolumeNode"):
            raise ValueError(_("'{name}' is a grey-scale volume; NucleiMaskylo needs a colour (RGB) H&E image.").format(
                name=volumeNode.GetName()))
        array = mrml.volume_from_node(volumeNode).array
        if array.ndim != 4 or array.shape[0] != 1:
            raise ValueError(_("'{name}' has {slices} slices; NucleiMaskylo needs a single-slice (2D) H&E image.").format(
                name=volumeNode.GetName(), slices=array.shape[0] if array.ndim == 4 else "no"))
        if array.shape[-1] not in (3, 4):
            raise ValueError(_("'{name}' has {count} colour components; an RGB image has 3.").format(
                name=volumeNode.GetName(), count=array.shape[-1]))
        return check_rgb_image(array[0])

    def yoloModels(self, weights: Optional[List[str]] = None, confirm=None) -> list:
        """YOLO models of the optional branch (ultralytics, AGPL-3.0; installed only with consent)."""
        from NucleiMaskyloLib import yolo

        yolo.ensure_ultralytics(confirm=confirm)
        if not weights:
            raise ValueError(_("The YOLO branch needs trained YOLO weights (.pt files); none were given. Untrained "
                               "YOLO networks would only add noise."))
        return [yolo.build_yolo(weights=w) for w in weights]

    # ------------------------------------------------------------------------------------------------ run
    def computeNuclei(self, image: np.ndarray, model: Any = None, device: str = "auto",
                      progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None,
                      yoloModels: Optional[list] = None, **settings: Any) -> NucleiResult:
        """Find the nuclei of an RGB image (array or TIFF path); no MRML. ``settings``: PipelineSettings fields."""
        from mednets.dependencies import ensure_torch

        ensure_torch()
        from NucleiMaskyloLib.models import find_model, load_nuclei_model
        from NucleiMaskyloLib.pipeline import NucleiPipeline, PipelineSettings, labels_and_table

        report(progress, 0.0, _("Loading the model..."))
        source = find_model(model, self.trainingOutputFolders)
        loaded, stored = load_nuclei_model(source, device=device, report=self.deviceMessages.append,
                                           extra_folders=self.trainingOutputFolders)
        fields = {f for f in PipelineSettings.__dataclass_fields__}
        values = {k: v for k, v in stored.items() if k in fields}
        values.update({k: v for k, v in settings.items() if k in fields and v is not None})
        pipeline = NucleiPipeline(loaded.network, PipelineSettings(**values), yolo_models=yoloModels or (),
                                  device=loaded.device)
        stitched = pipeline.predict(image, progress=progress, cancel=cancel)
        check_cancel(cancel)
        labels, table = labels_and_table(stitched)
        return NucleiResult(labels=labels, table=table, model=source.name)

    @staticmethod
    def _instanceColorTable(count: int, name: str):
        """A colour table with one random, saturated colour per nucleus (label 0 transparent)."""
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode", slicer.mrmlScene.GenerateUniqueName(name))
        node.SetTypeToUser()
        node.SetNumberOfColors(count + 1)
        node.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
        rng = np.random.default_rng(count)
        colours = rng.uniform(0.25, 1.0, size=(count, 3))
        for index, colour in enumerate(colours, start=1):
            node.SetColor(index, f"nucleus {index}", float(colour[0]), float(colour[1]), float(colour[2]), 1.0)
        node.SetHideFromEditors(True)
        return node

    def createOutputNodes(self, inputVolume, result: NucleiResult, name: Optional[str] = None):
        """NEW label map (on the input's grid, one label per nucleus) and NEW per-nucleus table node."""
        base = name or f"{inputVolume.GetName()} nuclei"
        labels = result.labels.astype(np.int32)[None]
        labelmapNode = mrml.new_volume_node(labels, name=base, node_class="label", reference_node=inputVolume)
        colours = self._instanceColorTable(result.count, f"{base} colours")
        labelmapNode.GetDisplayNode().SetAndObserveColorNodeID(colours.GetID())
        tableNode = mrml.new_table_node(result.table, slicer.mrmlScene, name=f"{base} table")
        labelmapNode.SetAttribute(TABLE_ATTRIBUTE, tableNode.GetID())
        labelmapNode.SetAttribute("NucleiMaskylo.Model", result.model)
        return labelmapNode, tableNode

    def run(self, inputVolume, model: Any = None, device: str = "auto", progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelCallback] = None, **settings: Any):
        """Blocking: find the nuclei of ``inputVolume`` -> (label map node, table node)."""
        image = self.inputImage(inputVolume)
        result = self.computeNuclei(image, model, device, progress=progress, cancel=cancel, **settings)
        return self.createOutputNodes(inputVolume, result)

    # ------------------------------------------------------------------------------------------------ evaluate
    @staticmethod
    def _labels(node, what: str) -> np.ndarray:
        if node is None:
            raise ValueError(_("Select the {what} label map.").format(what=what))
        array = mrml.volume_from_node(node).array
        if array.ndim != 3 or array.shape[0] != 1:
            raise ValueError(_("The {what} label map must have a single slice.").format(what=what))
        return array[0].astype(np.int64)

    @staticmethod
    def _scoresFromTable(labelmapNode, labels: np.ndarray) -> Optional[np.ndarray]:
        """Per-label confidences (label order) from the table Apply made, or None."""
        tableId = labelmapNode.GetAttribute(TABLE_ATTRIBUTE) if labelmapNode is not None else None
        tableNode = slicer.mrmlScene.GetNodeByID(tableId) if tableId else None
        if tableNode is None:
            return None
        columns = mrml.table_to_columns(tableNode)
        if "label" not in columns or "confidence" not in columns:
            return None
        lookup = dict(zip((int(v) for v in columns["label"]), (float(v) for v in columns["confidence"])))
        values = np.unique(labels)
        values = values[values > 0]
        return np.array([lookup.get(int(v), 1.0) for v in values])

    @staticmethod
    def computeEvaluation(result: np.ndarray, reference: np.ndarray, scores: Optional[np.ndarray] = None
                          ) -> Dict[str, float]:
        from mednets.metrics.coco_instances import instance_segmentation_metrics

        if result.shape != reference.shape:
            raise ValueError(_("The result ({a}) and reference ({b}) label maps have different sizes.").format(
                a="x".join(map(str, result.shape)), b="x".join(map(str, reference.shape))))
        count = len(np.unique(result)) - 1
        return instance_segmentation_metrics(reference, result, scores=scores, max_dets=max(100, count))

    def createMetricsTable(self, metrics: Dict[str, float], name: str):
        rows = [{"metric": label, "value": float(metrics[key])} for key, label in METRIC_NAMES.items()]
        rows.append({"metric": "nuclei (reference)", "value": float(metrics["n_reference"])})
        rows.append({"metric": "nuclei (result)", "value": float(metrics["n_predicted"])})
        return mrml.new_table_node(rows, slicer.mrmlScene, name=name)

    def evaluate(self, resultLabelmap, referenceLabelmap) -> Tuple[Dict[str, float], Any]:
        """P/R (IoU >= 0.5, score >= 0.5), mAP@50, mAP@50-95, Dice, IoU, AJI, PQ of a result against a reference."""
        result = self._labels(resultLabelmap, _("result"))
        reference = self._labels(referenceLabelmap, _("reference"))
        metrics = self.computeEvaluation(result, reference, self._scoresFromTable(resultLabelmap, result))
        table = self.createMetricsTable(metrics, f"{resultLabelmap.GetName()} metrics")
        return metrics, table

    # ------------------------------------------------------------------------------------------------ training
    def addCaseToTrainingSet(self, inputVolume, labelmapNode, folder: Union[str, Path], organ: str = "slicer"
                             ) -> Tuple[Path, Path]:
        """Write the image and its (corrected) instance label map into ``folder`` in the NuInsSeg layout."""
        from skimage.io import imsave

        from NucleiMaskyloLib.datasets import write_label_map

        if folder is None:
            raise ValueError(_("Choose a training folder."))
        image = self.inputImage(inputVolume)
        labels = self._labels(labelmapNode, _("training"))
        if labels.shape != image.shape[:2]:
            raise ValueError(_("The label map does not have the size of the image."))
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in inputVolume.GetName()) or "case"
        imageFolder = Path(folder) / organ / "tissue images"
        imageFolder.mkdir(parents=True, exist_ok=True)
        index = 1
        while (imageFolder / f"{stem}_{index:03d}.png").exists():
            index += 1
        imagePath = imageFolder / f"{stem}_{index:03d}.png"
        imsave(imagePath, image, check_contrast=False)
        labelPath = write_label_map(Path(folder) / organ / "label masks modify" / f"{stem}_{index:03d}.tif", labels)
        return imagePath, labelPath

    def train(self, trainingFolder: Union[str, Path], outputFolder: Union[str, Path], iterations: Optional[int] = None,
              device: str = "auto", progress: Optional[ProgressCallback] = None,
              cancel: Optional[CancelCallback] = None, model: Any = None, architecture: str = "mask_rcnn_small",
              recipe: Optional[Dict[str, Any]] = None, seed: int = 0) -> Path:
        """Train (or fine-tune ``model``) on the NuInsSeg-layout ``trainingFolder``; one tile in five validates.
        Writes ``<outputFolder>/nucleimaskylo_trained.safetensors`` and returns its path."""
        from mednets.dependencies import ensure_torch

        ensure_torch()
        import torch
        from mednets.device import choose_device

        import NucleiMaskyloLib
        from NucleiMaskyloLib.datasets import load_nuinsseg_case, scan_nuinsseg
        from NucleiMaskyloLib.models import load_nuclei_model
        from NucleiMaskyloLib.training import (DEMO_RECIPE, PAPER_RECIPE, TrainingRecipe, normalise_cases,
                                               save_nuclei_checkpoint, train_mask_rcnn)

        # stain-normalised before training (the paper); the checkpoint asks for the same at inference
        cases = normalise_cases([load_nuinsseg_case(c)[:2] for c in scan_nuinsseg(trainingFolder)], "macenko")
        validation = cases[::5] if len(cases) >= 5 else []
        training = [c for i, c in enumerate(cases) if i % 5 or len(cases) < 5]
        base = DEMO_RECIPE if architecture == "mask_rcnn_small" else PAPER_RECIPE
        settings = base.to_dict()
        settings.update(recipe or {})
        if iterations is not None:
            settings["iterations"] = int(iterations)
        chosen = TrainingRecipe.from_dict(settings)
        overrides: Dict[str, Any] = {}
        if model is not None:
            loaded, _stored = load_nuclei_model(model, device=device, extra_folders=self.trainingOutputFolders)
            network, architecture = loaded.network, loaded.metadata.architecture
            overrides = dict(loaded.metadata.architecture_config)
        else:
            torch.manual_seed(seed)
            network = NucleiMaskyloLib.build_model(architecture).to(choose_device(device))
        history = train_mask_rcnn(network, training, chosen, validation, seed=seed,
                                  eval_every=max(1, chosen.iterations // 4) if validation else 0,
                                  progress=progress, cancel=cancel)
        check_cancel(cancel)
        output = Path(outputFolder)
        output.mkdir(parents=True, exist_ok=True)
        path = output / "nucleimaskylo_trained.safetensors"
        save_nuclei_checkpoint(path, network, architecture, overrides,
                               pipeline={"tile_size": 512, "overlap": 64, "stain_method": "macenko"},
                               training_data=f"{len(training)} tiles from {trainingFolder}",
                               extra={"recipe": chosen.to_dict(), "history": {k: list(map(float, v)) for k, v in
                                                                               history.items()}})
        return path


# --------------------------------------------------------------------------------------------------------- tests
class NucleiMaskyloTest(ScriptedLoadableModuleTest):  # noqa: F405
    """Runs in Slicer (Reload and Test) and under pytest through the test runtime."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_NucleiMaskyloFindsPhantomNuclei()
        self.setUp()
        self.test_NucleiMaskyloBadInput()
        self.setUp()
        self.test_NucleiMaskyloEvaluate()

    @staticmethod
    def _tileNode(seed: int = 901, shape=(192, 192), name: str = "H&E tile"):
        from mednets.image import Volume
        from mednets.phantoms.he_nuclei import he_nuclei_phantom

        phantom = he_nuclei_phantom(seed, shape=shape)
        volume = Volume(phantom.image[None], spacing=(1.0, 0.00025, 0.00025))
        return mrml.new_volume_node(volume, slicer.mrmlScene, name, node_class="vector"), phantom

    def test_NucleiMaskyloFindsPhantomNuclei(self):
        """The bundled demo weights find the nuclei of a held-out H&E phantom tile: one label per nucleus, a table
        row per label, and an evaluation with mAP@50 above 0.5."""
        from NucleiMaskyloLib.models import find_model

        self.delayDisplay("Finding nuclei in an H&E phantom tile")
        volumeNode, phantom = self._tileNode()
        before = slicer.util.arrayFromVolume(volumeNode).copy()
        logic = NucleiMaskyloLogic()
        fractions = []
        find_model()  # the demo weights must exist
        # a low score threshold keeps the whole precision-recall curve for mAP (P/R use confidence >= 0.5)
        labelmapNode, tableNode = logic.run(volumeNode, device="cpu", tile_size=128, overlap=48, score_threshold=0.1,
                                            progress=lambda f, m: fractions.append(f))
        labels = slicer.util.arrayFromVolume(labelmapNode)[0]
        self.assertEqual(labels.shape, phantom.labels.shape)
        count = len(np.unique(labels)) - 1
        self.assertEqual(tableNode.GetNumberOfRows(), labels.max())
        self.assertGreater(count, 0.5 * phantom.labels.max())
        self.assertEqual(labels.max(), count)  # consecutive labels, one per table row
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(volumeNode), before)
        self.assertEqual(fractions[-1], 1.0)
        reference = mrml.new_volume_node(phantom.labels[None].astype(np.int32), name="reference", node_class="label",
                                         reference_node=volumeNode)
        metrics, table = logic.evaluate(labelmapNode, reference)
        self.assertGreater(metrics["mAP50"], 0.5, f"demo weights mAP@50 {metrics['mAP50']:.3f}")
        self.assertEqual(table.GetNumberOfRows(), len(METRIC_NAMES) + 2)
        self.delayDisplay(f"Test passed (mAP@50 {metrics['mAP50']:.3f}, {count} nuclei)")

    def test_NucleiMaskyloBadInput(self):
        """Grey, multi-slice, constant and missing inputs raise clear errors and add nothing to the scene."""
        from mednets.image import Volume

        logic = NucleiMaskyloLogic()
        grey = mrml.new_volume_node(Volume(np.random.default_rng(0).random((1, 32, 32)).astype(np.float32)),
                                    slicer.mrmlScene, "grey")
        stack = mrml.new_volume_node(Volume(np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3)).astype(np.uint8)),
                                     slicer.mrmlScene, "stack", node_class="vector")
        constant = mrml.new_volume_node(Volume(np.full((1, 32, 32, 3), 200, np.uint8)), slicer.mrmlScene, "constant",
                                        node_class="vector")
        nodes = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaisesRegex(ValueError, "No input"):
            logic.run(None)
        with self.assertRaisesRegex(ValueError, "grey-scale"):
            logic.run(grey)
        with self.assertRaisesRegex(ValueError, "single-slice"):
            logic.run(stack)
        with self.assertRaisesRegex(ValueError, "constant"):
            logic.run(constant)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes)

    def test_NucleiMaskyloEvaluate(self):
        """A reference evaluated against itself scores 1 everywhere; a result missing half the nuclei does not."""
        volumeNode, phantom = self._tileNode(seed=902, shape=(96, 96))
        logic = NucleiMaskyloLogic()
        reference = mrml.new_volume_node(phantom.labels[None].astype(np.int32), name="reference", node_class="label",
                                         reference_node=volumeNode)
        metrics, table = logic.evaluate(reference, reference)
        for key in ("precision", "recall", "mAP50", "mAP50_95", "dice", "iou", "aji", "pq"):
            self.assertAlmostEqual(metrics[key], 1.0, places=6, msg=key)
        half = phantom.labels.copy()
        half[half % 2 == 0] = 0
        halfNode = mrml.new_volume_node(half[None].astype(np.int32), name="half", node_class="label",
                                        reference_node=volumeNode)
        metrics, _table = logic.evaluate(halfNode, reference)
        self.assertLess(metrics["recall"], 0.6)
        self.assertAlmostEqual(metrics["precision"], 1.0)
        names = mrml.table_to_columns(table)["metric"]
        self.assertEqual(names[:8], ["Precision", "Recall", "mAP@50", "mAP@50-95", "Dice", "IoU", "AJI", "PQ"])
