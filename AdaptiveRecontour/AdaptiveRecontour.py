"""AdaptiveRecontour: joint registration and segmentation (JRS-MTL, Elmahdy et al., IEEE Access 2021) in 3D Slicer.

Given the planning CT with its contours (prostate, seminal vesicles, rectum, bladder) and the daily CT of a fraction,
the module produces the daily contours in a NEW segmentation (from the network's segmentation head or from the
planning contours warped by the predicted deformation, as the user picks) and the deformation as a NEW grid transform
node under which a copy of the planning contours is shown propagated. Evaluate compares a result with reference daily
contours (DSC, MSD, HD per structure) and reports the standard deviation of the Jacobian determinant and the folding
fraction of the deformation. The Logic is the scripting API; the widget only gathers inputs and shows results.
"""

from __future__ import annotations

import enum
import json
import logging
import shutil
from pathlib import Path
from typing import Annotated, Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTransformNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import *  # noqa: F403 - Slicer's module convention
from slicer.util import VTKObservationMixin

from mednets import mrml
from mednets.jobs import ProcessJob, ProcessJobError, job_folder
from mednets.progress import CancelCallback, OperationCancelled, ProgressCallback, report
from mednets.terminology import segment_specs
from mednets.widgets import (DeviceChoice, JobPoller, ModelSelector, chosen_folder, ensure_packages, show_error,
                             start_cli_job)

# torch-free imports only: the module loads in a Slicer without PyTorch
from AdaptiveRecontourLib.configs import DEFAULT_MODEL, MODULE_NAME, SEGMENT_NAMES, segment_classes

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
#: The command line the panel's jobs run as a child process: ``PythonSlicer -m AdaptiveRecontourLib ...`` in Slicer.
CLI_PACKAGE = "AdaptiveRecontourLib"


class AdaptiveRecontour(ScriptedLoadableModule):  # noqa: F405
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)  # noqa: F405
        self.parent.title = _("Adaptive Recontour")
        self.parent.categories = [_("Registration"), _("SlicerMedNets")]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["SlicerMedNets developers"]
        self.parent.helpText = _(
            "Re-contouring of the daily CT in adaptive radiotherapy of the prostate with joint registration and "
            "segmentation networks (JRS-MTL). Choose the planning CT, its segmentation (segments named prostate, "
            "seminal vesicles, rectum, urinary bladder) and the daily CT; Apply creates the daily segmentation and "
            "the planning-to-daily deformation as a transform. Research use only, not for clinical use.")
        self.parent.acknowledgementText = _(
            "Method: M. S. Elmahdy et al., Joint Registration and Segmentation via Multi-Task Learning for Adaptive "
            "Radiotherapy of Prostate Cancer, IEEE Access 9 (2021). Part of SlicerMedNets (Apache-2.0).")


AdaptiveRecontourDevice = DeviceChoice  # where the network runs (shared by all SlicerMedNets panels)


class AdaptiveRecontourOutput(enum.Enum):
    """Which contours become the daily segmentation (paper: both paths exist; the best is picked on validation)."""

    SEGMENTATION = "segmentation"
    REGISTRATION = "registration"

    def label(self) -> str:
        return {"segmentation": _("Segmentation head"), "registration": _("Warped planning contours")}[self.value]


@parameterNodeWrapper
class AdaptiveRecontourParameterNode:
    planningVolume: vtkMRMLScalarVolumeNode
    planningSegmentation: vtkMRMLSegmentationNode
    dailyVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: AdaptiveRecontourDevice = AdaptiveRecontourDevice.AUTO
    output: AdaptiveRecontourOutput = AdaptiveRecontourOutput.SEGMENTATION
    batchSize: Annotated[int, WithinRange(1, 64)] = 2
    resultSegmentation: vtkMRMLSegmentationNode
    referenceSegmentation: vtkMRMLSegmentationNode
    resultTransform: vtkMRMLTransformNode
    trainingFolder: Path
    trainingOutputFolder: Path
    iterations: Annotated[int, WithinRange(1, 1000000)] = 200
    fineTune: bool = False


# --------------------------------------------------------------------------------------------------------- widget
class AdaptiveRecontourWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):  # noqa: F405
    """Gathers inputs, runs re-contouring, evaluation and training as child processes of ``python -m
    AdaptiveRecontourLib`` (Apply/Evaluate/Train become Cancel) and loads their results into NEW nodes. A cancelled,
    failed or killed child adds nothing to the scene; its private folder is removed (JobPoller)."""

    POLL_INTERVAL_MS = 100

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)  # noqa: F405
        VTKObservationMixin.__init__(self)
        self.logic: Optional[AdaptiveRecontourLogic] = None
        self._parameterNode: Optional[AdaptiveRecontourParameterNode] = None
        self._parameterNodeGuiTag = None
        self._jobTarget = None
        self._evaluationName = ""
        self.trainingOptions: Dict[str, Any] = {}
        self.lastTableNode = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)  # noqa: F405
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AdaptiveRecontour.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AdaptiveRecontourLogic()
        for widget in (self.ui.progressBar, self.ui.trainingProgressBar, self.ui.metricsTableView):
            widget.hide()
        self.jobs = JobPoller(self.POLL_INTERVAL_MS)  # re-contouring, evaluation and training run in the background
        self.models = ModelSelector(self.ui.modelComboBox, lambda: self.logic.availableModels(), DEFAULT_MODEL)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.clicked.connect(self.onApplyButton)
        self.ui.evaluateButton.clicked.connect(self.onEvaluateButton)
        self.ui.addCaseButton.clicked.connect(self.onAddCaseButton)
        self.ui.trainButton.clicked.connect(self.onTrainButton)
        self.ui.modelComboBox.currentIndexChanged.connect(self.onModelSelected)
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
        self.jobs.stop("recontouring", 10.0)  # its result would go into the closing scene
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(AdaptiveRecontourParameterNode(self.logic.getParameterNode()))
        base = Path(slicer.app.defaultScenePath) / "AdaptiveRecontour"
        if self._folder(self._parameterNode.trainingFolder) is None:
            self._parameterNode.trainingFolder = base / "TrainingPairs"
        if self._folder(self._parameterNode.trainingOutputFolder) is None:
            self._parameterNode.trainingOutputFolder = base / "TrainingRun"

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self._selectModel(self._parameterNode.model)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    _folder = staticmethod(chosen_folder)  # None when no folder was chosen

    def _checkCanApply(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p is None:
            return
        if not self.isRunning():
            ready = bool(p.planningVolume and p.planningSegmentation and p.dailyVolume and self._selectedModel())
            self.ui.applyButton.setEnabled(ready)
            self.ui.applyButton.setToolTip(
                _("Re-contour the daily CT.") if ready else
                _("Select the planning CT, its segmentation, the daily CT and a model."))
        if not self.isEvaluating():
            self.ui.evaluateButton.setEnabled(bool(p.resultSegmentation and p.referenceSegmentation
                                                   and p.dailyVolume))
        self.ui.addCaseButton.setEnabled(bool(p.planningVolume and p.planningSegmentation and p.dailyVolume
                                              and (p.referenceSegmentation or p.resultSegmentation)
                                              and self._folder(p.trainingFolder)))
        if not self.isTraining():
            self.ui.trainButton.setEnabled(bool(self._folder(p.trainingFolder) and self._folder(p.trainingOutputFolder)))

    # models
    def refreshModels(self, selectPath=None) -> None:
        """Fill the model selector from ``logic.availableModels()``; keep the selection (or select ``selectPath``)."""
        current = self.models.selected()
        name = current.name if current is not None else (self._parameterNode.model if self._parameterNode else "")
        if not self.models.refresh(selectPath, name):
            self.onModelSelected()

    def _selectModel(self, name: str) -> None:
        if not self.models.select(name):
            self.onModelSelected()

    def _selectedModel(self):
        return self.models.selected()

    def onModelSelected(self, index: int = -1) -> None:
        source = self._selectedModel()
        self.ui.modelComboBox.setToolTip(self.models.tooltip(_("No model: train one or add weights to the model "
                                                               "list.")))
        if self._parameterNode is not None and source is not None and self._parameterNode.model != source.name:
            self._parameterNode.model = source.name
        self._checkCanApply()

    # jobs: each runs as a child process of this module's command line (python -m AdaptiveRecontourLib; PythonSlicer
    # in Slicer). A Python worker thread would starve in Slicer: PythonQt keeps the GIL in the main thread while Qt's
    # event loop waits (PythonQt's thread support is off in Slicer and CTK).
    @staticmethod
    def _newJobFolder(name: str) -> Path:
        return job_folder(f"AdaptiveRecontour-{name}")

    def _modelArguments(self, option: str, model: Any) -> List[str]:
        """``option <name>`` (or a weights path) plus the training output folders the child looks names up in."""
        if model is None:
            return []
        name = getattr(model, "name", None) or str(model)
        arguments = [option, name]
        for folder in self.logic.trainingOutputFolders:
            arguments += ["--model-folder", str(folder)]
        return arguments

    # apply
    @property
    def _job(self) -> Optional[ProcessJob]:
        return self.jobs.job("recontouring")

    def isRunning(self) -> bool:
        return self.jobs.running("recontouring")

    def onApplyButton(self) -> None:
        if self.isRunning():
            self.jobs.cancel("recontouring")
            self.ui.statusLabel.setText(_("Cancelling..."))
            return
        p = self._parameterNode
        model = self._selectedModel()
        try:
            if model is None:
                raise ValueError(_("No model: train one or add weights to the model list."))
            planning, labels, daily = self.logic.recontourInputs(p.planningVolume, p.planningSegmentation,
                                                                 p.dailyVolume)
        except ValueError as error:
            self._showError(str(error))
            return
        if not ensure_packages(self.ui.statusLabel, "AdaptiveRecontour"):  # torch & co., with consent, GUI thread
            return
        folder = self._newJobFolder("recontouring")
        try:  # plain NRRD with full geometry: the child has no slicer-core to read .seg.nrrd
            from mednets.io import write_volume

            write_volume(planning, folder / "planning.nrrd")
            write_volume(planning.with_array(np.asarray(labels, dtype=np.uint8)), folder / "planning_label.nrrd")
            write_volume(daily, folder / "daily.nrrd")
        except (OSError, ValueError) as error:
            shutil.rmtree(folder, ignore_errors=True)
            self._showError(str(error))
            return
        arguments = (["predict", "--planning", folder / "planning.nrrd", "--planning-label",
                      folder / "planning_label.nrrd", "--daily", folder / "daily.nrrd",
                      "--output", folder / "daily_label.nrrd", "--field", folder / "field.nrrd",
                      "--use", p.output.value, "--device", p.device.value, "--batch-size", int(p.batchSize)]
                     + self._modelArguments("--model", model))
        self._jobTarget = (p.planningVolume, p.planningSegmentation, p.dailyVolume)
        start_cli_job(self.jobs, "recontouring", CLI_PACKAGE, arguments, self._onRecontourProgress, self._finishJob,
                      folder=folder)
        self.ui.applyButton.setText(_("Cancel"))
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.show()
        self.ui.statusLabel.setText(_("Re-contouring '{name}'...").format(name=p.dailyVolume.GetName()))

    def _onRecontourProgress(self, event) -> None:
        self.ui.progressBar.setValue(int(round(100 * event.fraction)))
        self.ui.statusLabel.setText(event.message)

    @staticmethod
    def _readRecontour(job: ProcessJob):
        """The child's outputs as the Logic's result: daily labels (daily grid) and the displacement field (RAS mm,
        working grid); re-raises the child's error (ProcessJobError) or OperationCancelled."""
        from types import SimpleNamespace

        from mednets.io import read_volume

        outputs = job.result(timeout=0).last
        if not outputs or not outputs.get("output"):
            raise ProcessJobError(_("The re-contouring process reported no result."))
        labels = np.rint(np.asarray(read_volume(outputs["output"]).array)).astype(np.uint8)
        field = read_volume(outputs["field"])
        return SimpleNamespace(labels=labels, grid=field, displacement_ras=np.asarray(field.array, np.float64),
                               output=str(outputs.get("use", "")), timings=dict(outputs.get("timings") or {}))

    def _finishJob(self, job: ProcessJob) -> None:
        target, self._jobTarget = self._jobTarget, None
        self.ui.applyButton.setText(_("Apply"))
        self.ui.progressBar.hide()
        try:
            result = self._readRecontour(job)
            segmentationNode, transformNode = self.logic.createOutputNodes(target[0], target[1], target[2], result,
                                                                           None)
        except OperationCancelled:
            self.ui.statusLabel.setText(_("Cancelled: nothing was added to the scene."))
        except Exception as error:  # noqa: BLE001 - reported in the panel
            if not isinstance(error, (ValueError, ProcessJobError)):
                logging.exception("AdaptiveRecontour failed")
            self._showError(str(error))
        else:
            if self._parameterNode is not None:
                self._parameterNode.resultSegmentation = segmentationNode
                self._parameterNode.resultTransform = transformNode
            if segmentationNode.GetDisplayNode() is None:
                segmentationNode.CreateDefaultDisplayNodes()
            self.ui.statusLabel.setText(_("Created '{seg}' and '{tr}' in {s:.1f} s (network {n:.1f} s).").format(
                seg=segmentationNode.GetName(), tr=transformNode.GetName(), s=job.elapsed,
                n=result.timings.get("network_s", 0.0)))
        self._checkCanApply()

    # evaluate (in the child too: surface distances and Hausdorff distances of four structures take seconds)
    @property
    def _evaluationJob(self) -> Optional[ProcessJob]:
        return self.jobs.job("evaluation")

    def isEvaluating(self) -> bool:
        return self.jobs.running("evaluation")

    def onEvaluateButton(self) -> None:
        if self.isEvaluating():
            self.jobs.cancel("evaluation")
            self.ui.evaluateStatusLabel.setText(_("Cancelling..."))
            return
        p = self._parameterNode
        folder = None
        try:
            labels, reference, _spacing, _field = self.logic.evaluationInputs(
                p.resultSegmentation, p.referenceSegmentation, p.dailyVolume, None)
            if not ensure_packages(self.ui.evaluateStatusLabel, "AdaptiveRecontour"):
                return
            from mednets.io import write_volume

            volume = mrml.volume_from_node(p.dailyVolume)
            folder = self._newJobFolder("evaluation")
            write_volume(volume.with_array(np.asarray(labels, np.uint8)), folder / "result.nrrd")
            write_volume(volume.with_array(np.asarray(reference, np.uint8)), folder / "reference.nrrd")
            arguments = ["evaluate", "--result", folder / "result.nrrd", "--reference", folder / "reference.nrrd"]
            if p.resultTransform is not None:  # the field on the daily CT's grid, RAS mm (as the Logic samples it)
                ras = mrml.displacement_field_from_node(p.resultTransform, p.dailyVolume)
                write_volume(volume.with_array(np.asarray(ras, np.float32)), folder / "field.nrrd")
                arguments += ["--field", folder / "field.nrrd"]
        except Exception as error:  # noqa: BLE001
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            if not isinstance(error, (ValueError, OSError)):
                logging.exception("AdaptiveRecontour evaluation failed")
            self._showError(str(error), _("Evaluation failed"), self.ui.evaluateStatusLabel)
            return
        self._evaluationName = f"{p.resultSegmentation.GetName()} metrics"
        start_cli_job(self.jobs, "evaluation", CLI_PACKAGE, arguments, None, self._finishEvaluation, folder=folder)
        self.ui.evaluateButton.setText(_("Cancel"))
        self.ui.evaluateStatusLabel.setText(_("Computing DSC, MSD, HD and the Jacobian..."))

    def _finishEvaluation(self, job: ProcessJob) -> None:
        self.ui.evaluateButton.setText(_("Evaluate"))
        try:
            outputs = job.result(timeout=0).last
            if not outputs or "rows" not in outputs:
                raise ProcessJobError(_("The evaluation process reported no result."))
            rows = [dict(row) for row in outputs["rows"]]
            table = self.logic.createMetricsTable(rows, self._evaluationName)
        except OperationCancelled:
            self.ui.evaluateStatusLabel.setText(_("Cancelled: no table was added."))
        except Exception as error:  # noqa: BLE001
            if not isinstance(error, (ValueError, ProcessJobError)):
                logging.exception("AdaptiveRecontour evaluation failed")
            self._showError(str(error), _("Evaluation failed"), self.ui.evaluateStatusLabel)
        else:
            self.lastTableNode = table
            self.ui.metricsTableView.setMRMLTableNode(table)
            self.ui.metricsTableView.show()
            dsc = [r["dice"] for r in rows if r.get("structure") in SEGMENT_NAMES and np.isfinite(r["dice"])]
            self.ui.evaluateStatusLabel.setText(_("Mean DSC {d:.3f}; all metrics in the table '{t}'.").format(
                d=float(np.mean(dsc)) if dsc else float("nan"), t=table.GetName()))
        self._checkCanApply()

    # training
    @property
    def _trainingJob(self) -> Optional[ProcessJob]:
        return self.jobs.job("training")

    def isTraining(self) -> bool:
        return self.jobs.running("training")

    def onAddCaseButton(self) -> None:
        p = self._parameterNode
        try:
            name = self.logic.addCaseToTrainingSet(p.planningVolume, p.planningSegmentation, p.dailyVolume,
                                                   p.referenceSegmentation or p.resultSegmentation,
                                                   self._folder(p.trainingFolder))
        except ValueError as error:
            self._showError(str(error), _("Could not add the case"), self.ui.trainingStatusLabel)
            return
        self.ui.trainingStatusLabel.setText(_("Added the pair '{name}' to the training folder.").format(name=name))

    def _trainingArguments(self, folder: Path, output: Path, initialModel: Any) -> List[str]:
        """The panel's settings and ``widget.trainingOptions`` (``logic.train`` keywords: iterations, seed,
        configName, device and configuration fields such as filters or patch_size) as ``train`` options."""
        p = self._parameterNode
        options = dict(self.trainingOptions)
        iterations = options.pop("iterations", p.iterations)
        arguments = ["train", "--folder", folder, "--output-dir", output,
                     "--config", options.pop("configName", "cpu_small"),
                     "--device", options.pop("device", p.device.value), "--seed", int(options.pop("seed", 0))]
        if iterations is not None:
            arguments += ["--iterations", int(iterations)]
        options.update(options.pop("configChanges", None) or {})
        options.update(options.pop("modelOverrides", None) or {})
        if options:
            arguments += ["--config-changes", json.dumps({k: list(v) if isinstance(v, tuple) else v
                                                          for k, v in options.items()})]
        return arguments + self._modelArguments("--initial-model", initialModel)

    def onTrainButton(self) -> None:
        if self.isTraining():
            self.jobs.cancel("training")
            self.ui.trainingStatusLabel.setText(_("Stopping the training..."))
            return
        p = self._parameterNode
        folder, output = self._folder(p.trainingFolder), self._folder(p.trainingOutputFolder)
        if folder is None or not folder.is_dir():
            self._showError(_("Choose a training folder holding planning/daily pairs."), _("Training failed"),
                            self.ui.trainingStatusLabel)
            return
        try:
            initialModel = self.models.fine_tuning_start(p.fineTune)
            arguments = self._trainingArguments(folder, output, initialModel)
        except (ValueError, TypeError) as error:
            self._showError(str(error), _("Training failed"), self.ui.trainingStatusLabel)
            return
        if not ensure_packages(self.ui.trainingStatusLabel, "AdaptiveRecontour"):
            return
        self._trainingOutput = output
        start_cli_job(self.jobs, "training", CLI_PACKAGE, arguments, self._onTrainingProgress, self._finishTraining,
                      folder=self._newJobFolder("training"), on_log=self._onTrainingLog)
        self.ui.trainButton.setText(_("Cancel training"))
        self.ui.trainingProgressBar.setValue(0)
        self.ui.trainingProgressBar.show()
        self.ui.trainingStatusLabel.setText(_("Training..."))

    def _onTrainingProgress(self, event) -> None:
        self.ui.trainingProgressBar.setValue(int(round(100 * event.fraction)))
        self.ui.trainingStatusLabel.setText(event.message)

    def _onTrainingLog(self, message: str) -> None:
        logging.info("AdaptiveRecontour training: %s", message)

    def _finishTraining(self, job: ProcessJob) -> None:
        self.ui.trainButton.setText(_("Start training"))
        self.ui.trainingProgressBar.hide()
        try:
            outputs = job.result(timeout=0).last
            if not outputs or not outputs.get("checkpoint"):
                raise ProcessJobError(_("The training process reported no checkpoint."))
            checkpoint = str(outputs["checkpoint"])
        except OperationCancelled:
            self.ui.trainingStatusLabel.setText(_("Training cancelled."))
        except Exception as error:  # noqa: BLE001
            if not isinstance(error, (ValueError, ProcessJobError)):
                logging.exception("AdaptiveRecontour training failed")
            self._showError(str(error), _("Training failed"), self.ui.trainingStatusLabel)
        else:
            outputFolder = str(self._trainingOutput)
            if outputFolder not in self.logic.trainingOutputFolders:  # as logic.train does
                self.logic.trainingOutputFolders.append(outputFolder)
            self.refreshModels(selectPath=checkpoint)
            self.ui.trainingStatusLabel.setText(_("Training finished; '{name}' is selected.").format(
                name=Path(checkpoint).stem))
        self._checkCanApply()

    def _showError(self, message: str, title: Optional[str] = None, label=None) -> None:
        show_error(label or self.ui.statusLabel, message, title or _("Re-contouring failed"))


# ---------------------------------------------------------------------------------------------------------- logic
class AdaptiveRecontourLogic(ScriptedLoadableModuleLogic):  # noqa: F405
    """Scripting API; every method works without the GUI::

        logic = slicer.util.getModuleLogic("AdaptiveRecontour")
        dailySeg, transform = logic.run(planningCT, planningSeg, dailyCT)        # bundled demo weights
        rows, table = logic.evaluate(dailySeg, referenceSeg, dailyCT, transform)
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)  # noqa: F405
        self.trainingOutputFolders: List[str] = []
        self.deviceMessages: List[str] = []

    def availableModels(self) -> List[Any]:
        from AdaptiveRecontourLib.models import available_models

        return available_models(self.trainingOutputFolders)

    def loadModel(self, model: Any = None, device: str = "auto"):
        if device not in DEVICE_CHOICES and not str(device).startswith("cuda:"):
            raise ValueError(_("Unknown device '{device}'.").format(device=device))
        from AdaptiveRecontourLib.models import load_recontour_model

        return load_recontour_model(model, device=device, report=self.deviceMessages.append,
                                    extra_folders=self.trainingOutputFolders)

    @staticmethod
    def _volume(node, role: str):
        from AdaptiveRecontourLib.inputs import check_ct_volume

        if node is None:
            raise ValueError(_("No {role}: select it.").format(role=role))
        try:
            volume = mrml.volume_from_node(node)
        except ValueError as error:
            raise ValueError(_("The geometry of '{name}' is unusable ({reason}).").format(
                name=node.GetName(), reason=error)) from None
        check_ct_volume(volume, f"{role} '{node.GetName()}'")
        return volume

    def recontourInputs(self, planningVolumeNode, planningSegmentationNode, dailyVolumeNode):
        """Copy the inputs out of the scene (main thread): (planning Volume, planning labels, daily Volume)."""
        planning = self._volume(planningVolumeNode, _("planning CT"))
        daily = self._volume(dailyVolumeNode, _("daily CT"))
        if planningSegmentationNode is None:
            raise ValueError(_("No planning segmentation: select the contours of the planning CT."))
        labels = mrml.case_from_nodes(planningVolumeNode, planningSegmentationNode, SEGMENT_NAMES,
                                      allow_missing=True).label
        if labels is None or not np.any(labels):
            raise ValueError(_("The planning segmentation '{name}' has none of the segments {names}.").format(
                name=planningSegmentationNode.GetName(), names=", ".join(SEGMENT_NAMES)))
        return planning, labels, daily

    def computeRecontour(self, planning, planningLabels, daily, model: Any = None, device: str = "auto",
                         output: Optional[str] = None, batchSize: int = 2,
                         progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None):
        """(RecontourResult, config); no MRML access (safe in a worker thread)."""
        from AdaptiveRecontourLib.pipeline import recontour

        report(progress, 0.0, _("Loading the model"))
        loaded, config = self.loadModel(model, device)
        result = recontour(loaded.network, config, planning, planningLabels, daily, output=output,
                           device=loaded.device, batch_size=batchSize, progress=progress, cancel=cancel)
        return result, config

    def createOutputNodes(self, planningVolumeNode, planningSegmentationNode, dailyVolumeNode, result, config):
        """NEW daily segmentation + NEW grid transform (with a copy of the planning contours under it)."""
        if dailyVolumeNode is None or not dailyVolumeNode.GetScene():
            raise ValueError(_("The daily CT was removed from the scene before the result could be stored."))
        specs = segment_specs(segment_classes())
        segmentation = mrml.new_segmentation_node(result.labels, dailyVolumeNode, specs,
                                                  name=f"{dailyVolumeNode.GetName()} recontoured")
        segmentation.SetAttribute("AdaptiveRecontour.Output", str(result.output))
        transform = mrml.new_displacement_field_transform_node(result.displacement_ras, result.grid,
                                                               scene=dailyVolumeNode.GetScene(),
                                                               name=f"{dailyVolumeNode.GetName()} planning-to-daily")
        if planningSegmentationNode is not None and planningVolumeNode is not None:
            planningLabels = mrml.case_from_nodes(planningVolumeNode, planningSegmentationNode, SEGMENT_NAMES,
                                                  allow_missing=True).label
            propagated = mrml.new_segmentation_node(planningLabels, planningVolumeNode, specs,
                                                    name=f"{planningSegmentationNode.GetName()} propagated")
            propagated.SetAndObserveTransformNodeID(transform.GetID())
            segmentation.SetAttribute("AdaptiveRecontour.Propagated", propagated.GetID())
        return segmentation, transform

    def run(self, planningVolumeNode, planningSegmentationNode, dailyVolumeNode, model: Any = None,
            device: str = "auto", output: Optional[str] = None, batchSize: int = 2,
            progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None):
        """Blocking re-contouring: returns (daily segmentation node, transform node)."""
        inputs = self.recontourInputs(planningVolumeNode, planningSegmentationNode, dailyVolumeNode)
        result, config = self.computeRecontour(*inputs, model=model, device=device, output=output,
                                               batchSize=batchSize, progress=progress, cancel=cancel)
        return self.createOutputNodes(planningVolumeNode, planningSegmentationNode, dailyVolumeNode, result, config)

    # evaluation
    def evaluationInputs(self, segmentationNode, referenceSegmentationNode, dailyVolumeNode, transformNode=None):
        if segmentationNode is None or referenceSegmentationNode is None or dailyVolumeNode is None:
            raise ValueError(_("Select the result segmentation, the reference segmentation and the daily CT."))
        labels = mrml.case_from_nodes(dailyVolumeNode, segmentationNode, SEGMENT_NAMES, allow_missing=True).label
        reference = mrml.case_from_nodes(dailyVolumeNode, referenceSegmentationNode, SEGMENT_NAMES,
                                         allow_missing=True).label
        volume = mrml.volume_from_node(dailyVolumeNode)
        field = None
        if transformNode is not None:
            from AdaptiveRecontourLib.evaluation import field_along_ijk

            ras = mrml.displacement_field_from_node(transformNode, dailyVolumeNode)  # (K, J, I, 3) RAS mm
            field = field_along_ijk(ras, volume.directions_ras)  # columns of directions_ras: RAS of I, J, K
        return labels, reference, volume.spacing, field

    @staticmethod
    def computeEvaluation(labels, reference, spacing, field=None, progress=None, cancel=None) -> List[Dict[str, Any]]:
        """DSC, MSD, HD (mm) per structure; Jacobian determinant std and folding fraction of the field (the same
        function as ``python -m AdaptiveRecontourLib evaluate``, which the panel runs as a child process)."""
        from AdaptiveRecontourLib.evaluation import evaluation_rows

        return evaluation_rows(labels, reference, spacing, field, progress=progress, cancel=cancel)

    @staticmethod
    def createMetricsTable(rows, name: str):
        return mrml.new_table_node(rows, scene=slicer.mrmlScene, name=name)

    def evaluate(self, segmentationNode, referenceSegmentationNode, dailyVolumeNode, transformNode=None,
                 createTable: bool = True):
        rows = self.computeEvaluation(*self.evaluationInputs(segmentationNode, referenceSegmentationNode,
                                                             dailyVolumeNode, transformNode))
        return rows, (self.createMetricsTable(rows, f"{segmentationNode.GetName()} metrics") if createTable else None)

    # training
    def addCaseToTrainingSet(self, planningVolumeNode, planningSegmentationNode, dailyVolumeNode,
                             dailySegmentationNode, folder) -> str:
        """Write the pair (with the daily contours, e.g. corrected in the Segment Editor) into a training folder."""
        from AdaptiveRecontourLib.data import write_pair_case

        if folder is None:
            raise ValueError(_("Choose a training folder."))
        if dailySegmentationNode is None:
            raise ValueError(_("Select the daily contours to learn from."))
        planning, planningLabels, daily = self.recontourInputs(planningVolumeNode, planningSegmentationNode,
                                                               dailyVolumeNode)
        dailyLabels = mrml.case_from_nodes(dailyVolumeNode, dailySegmentationNode, SEGMENT_NAMES,
                                           allow_missing=True).label
        name = f"{planningVolumeNode.GetName()}_{dailyVolumeNode.GetName()}"
        write_pair_case(folder, name, planning, planningLabels, daily, dailyLabels)
        return name

    def train(self, trainingFolder, outputFolder, iterations: int = 200, configName: str = "cpu_small",
              device: str = "auto", progress: Optional[ProgressCallback] = None,
              cancel: Optional[CancelCallback] = None, initialModel: Any = None, **overrides) -> str:
        """Train on the pairs of a folder; returns the path of the new checkpoint (also listed among the models).

        ``initialModel`` (a model name, source or checkpoint path) fine-tunes that model: training starts from its
        weights with the configuration stored in its checkpoint (``configName`` is then not used; ``overrides``
        still apply). The model itself is not changed; the result is a new checkpoint in ``outputFolder``.
        """
        from AdaptiveRecontourLib.training import train_from_folder

        start = {}
        if initialModel is not None:
            loaded, config = self.loadModel(initialModel, device="cpu")
            start = {"initial_network": loaded.network, "initial_config": config}
        path = train_from_folder(trainingFolder, outputFolder, configName=configName, iterations=iterations,
                                 device=device, progress=progress, cancel=cancel, **start, **overrides)
        if str(outputFolder) not in self.trainingOutputFolders:
            self.trainingOutputFolders.append(str(outputFolder))
        return str(path)


# ----------------------------------------------------------------------------------------------------------- test
class AdaptiveRecontourTest(ScriptedLoadableModuleTest):  # noqa: F405
    """Runs in Slicer (Reload and Test) and under pytest through the test runtime."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_AdaptiveRecontourPhantomPair()
        self.setUp()
        self.test_AdaptiveRecontourBadInput()

    @staticmethod
    def phantomNodes(seed: int = 901, model=None):
        """Planning CT, planning segmentation, daily CT and reference daily segmentation of a phantom pair."""
        from mednets.image import Volume
        from mednets.phantoms import KJI_LPS_DIRECTIONS
        from mednets.phantoms.pelvis_pair import pelvis_ct_pair

        pair = pelvis_ct_pair(seed, shape=(32, 44, 54), spacing=(3.0, 3.0, 3.0))
        specs = segment_specs(segment_classes())
        nodes = []
        for case, name in ((pair.planning, "planning CT"), (pair.daily, "daily CT")):
            volume = Volume(case.image, spacing=case.spacing, directions_ras=KJI_LPS_DIRECTIONS)
            volumeNode = mrml.new_volume_node(volume, slicer.mrmlScene, name)
            labels = np.where(case.labels <= 4, case.labels, 0).astype(np.uint8)
            nodes += [volumeNode, mrml.new_segmentation_node(labels, volumeNode, specs, name=f"{name} contours")]
        return nodes

    def test_AdaptiveRecontourPhantomPair(self, model=None):
        """Apply on a phantom pair gives a daily segmentation and a grid transform; Evaluate gives the table."""
        planningCT, planningSeg, dailyCT, reference = self.phantomNodes()
        logic = AdaptiveRecontourLogic()
        fractions = []
        segmentation, transform = logic.run(planningCT, planningSeg, dailyCT, model=model, device="cpu",
                                            output="registration", progress=lambda f, m: fractions.append(f))
        self.assertTrue(transform.IsA("vtkMRMLGridTransformNode"))
        names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
        self.assertEqual(names, list(SEGMENT_NAMES))
        self.assertEqual(fractions[-1], 1.0)
        rows, table = logic.evaluate(segmentation, reference, dailyCT, transform)
        self.assertEqual(table.GetNumberOfRows(), 5)
        deformation = rows[-1]
        self.assertLess(deformation["folding_fraction"], 0.01)
        meanDice = float(np.mean([r["dice"] for r in rows[:4]]))
        self.assertGreater(meanDice, 0.5, f"mean DSC {meanDice:.3f}")
        self.delayDisplay(f"Test passed (mean DSC {meanDice:.3f})")

    def test_AdaptiveRecontourBadInput(self):
        from mednets.image import Volume

        logic = AdaptiveRecontourLogic()
        planningCT, planningSeg, dailyCT, _reference = self.phantomNodes()
        constant = mrml.new_volume_node(Volume(np.full((20, 20, 20), 40.0, np.float32), spacing=(3, 3, 3)),
                                        slicer.mrmlScene, "constant")
        count = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaisesRegex(ValueError, "No planning segmentation"):
            logic.run(planningCT, None, dailyCT)
        with self.assertRaisesRegex(ValueError, "constant"):
            logic.run(planningCT, planningSeg, constant)
        with self.assertRaisesRegex(ValueError, "No daily CT"):
            logic.run(planningCT, planningSeg, None)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
        self.delayDisplay("Test passed")
