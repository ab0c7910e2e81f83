"""``slicer.app``, ``slicer.modules`` and the module objects of the runtime, around a real MRML scene.

The scene is wired as Slicer's core application wires it: a ``vtkSlicerApplicationLogic`` owns the scene, and the
logics of the core modules that ``slicer-core`` ships (Colors, Subject hierarchy, Volumes, Segmentations, Markups,
Tables, Transforms, Models, Sequences, Plots, Units, Crop volume) get the application logic and the scene, and are
registered with the application logic under their module names. ``slicer.modules.volumes.logic()`` and
``slicer.util.getModuleLogic("Segmentations")`` then return them. Terminologies is left out: its logic needs the
terminology files of a Slicer installation, which ``slicer-core`` does not ship.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import types
from typing import Any, Dict, List, Optional, Tuple

import vtk
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Property, Signal

import slicer

from .mrml_widgets import qSlicerWidget
from .pythonqt import SignatureConnectMixin

__all__ = [
    "CORE_MODULE_LOGICS",
    "qSlicerAbstractCoreModule",
    "qSlicerScriptedLoadableModule",
    "qSlicerScriptedLoadableModuleWidget",
    "qSlicerModuleManager",
    "qSlicerCoreIOManager",
    "qSlicerApplication",
    "ModulesNamespace",
    "create_core_modules",
]

#: (module name, logic class in slicer-core), in the order Slicer's dependencies need them.
CORE_MODULE_LOGICS: Tuple[Tuple[str, str], ...] = (
    ("Colors", "vtkSlicerColorLogic"),
    ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
    ("Units", "vtkSlicerUnitsLogic"),
    ("Volumes", "vtkSlicerVolumesLogic"),
    ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
    ("Markups", "vtkSlicerMarkupsLogic"),
    ("Tables", "vtkSlicerTablesLogic"),
    ("Transforms", "vtkSlicerTransformLogic"),
    ("Models", "vtkSlicerModelsLogic"),
    ("Sequences", "vtkSlicerSequencesLogic"),
    ("Plots", "vtkSlicerPlotsLogic"),
    ("CropVolume", "vtkSlicerCropVolumeLogic"),
)


def _slicerCoreVersion() -> Tuple[int, int, int]:
    try:
        parts = [int(p) for p in importlib.metadata.version("slicer-core").split(".")[:3]]
    except (importlib.metadata.PackageNotFoundError, ValueError):
        parts = []
    return tuple((parts + [5, 8, 0][len(parts):])[:3])  # type: ignore[return-value]


_SLICER_CORE_VERSION = _slicerCoreVersion()


class qSlicerAbstractCoreModule(SignatureConnectMixin, QtCore.QObject):
    """A loaded module as ``slicer.modules.<name>`` shows it: ``name``, ``title``, ``path``, ``logic()``..."""

    def __init__(self, name: str, logic: Any = None, path: str = "") -> None:
        super().__init__()
        self._name = name
        self._logic = logic
        self.path = path
        self.title = name
        self.categories: List[str] = []
        self.contributors: List[str] = []
        self.dependencies: List[str] = []
        self.helpText = ""
        self.acknowledgementText = ""
        self.hidden = False
        self.icon = QtGui.QIcon()
        self.setObjectName(f"{name}Module")

    def _getName(self) -> str:
        return self._name

    name = Property(str, _getName)

    def logic(self) -> Any:
        return self._logic

    def isHidden(self) -> bool:
        return bool(self.hidden)

    def widgetRepresentation(self) -> Any:
        """C++ modules have no widget in the runtime."""
        return None

    def createNewWidgetRepresentation(self) -> Any:
        return None


class qSlicerScriptedLoadableModuleWidget(qSlicerWidget):
    """The Qt widget Slicer creates for a scripted module; ``self()`` is the module's Python widget object."""

    def __init__(self, module: "qSlicerScriptedLoadableModule", parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.setLayout(QtWidgets.QVBoxLayout())
        self._module = module
        self._pythonWidget: Any = None
        self._isEntered = False
        self.setObjectName(f"{module.name}ModuleWidget")

    def self(self) -> Any:  # noqa: A003 - Slicer's name
        return self._pythonWidget

    def module(self) -> "qSlicerScriptedLoadableModule":
        return self._module

    def _getIsEntered(self) -> bool:
        return self._isEntered

    isEntered = Property(bool, _getIsEntered)

    def setup(self) -> None:
        self._pythonWidget.setup()

    def enter(self) -> None:
        self._isEntered = True
        if hasattr(self._pythonWidget, "enter"):
            self._pythonWidget.enter()

    def exit(self) -> None:
        if hasattr(self._pythonWidget, "exit"):
            self._pythonWidget.exit()
        self._isEntered = False


class qSlicerScriptedLoadableModule(qSlicerAbstractCoreModule):
    """A scripted module: ``widgetRepresentation()`` builds the Python widget class ``<name>Widget`` on first use."""

    def __init__(self, name: str, path: str, pythonModule: types.ModuleType) -> None:
        super().__init__(name, None, path)
        self.pythonModule = pythonModule
        self._representation: Optional[qSlicerScriptedLoadableModuleWidget] = None

    def _createRepresentation(self) -> qSlicerScriptedLoadableModuleWidget:
        widgetClass = getattr(self.pythonModule, f"{self.name}Widget", None)
        if widgetClass is None:
            raise RuntimeError(f"{self.path} defines no {self.name}Widget class")
        representation = qSlicerScriptedLoadableModuleWidget(self)
        representation._pythonWidget = widgetClass(representation)
        representation.setup()
        representation.setMRMLScene(slicer.mrmlScene)
        setattr(slicer.modules, f"{self.name}Widget", representation.self())
        return representation

    def widgetRepresentation(self) -> qSlicerScriptedLoadableModuleWidget:
        if self._representation is None:
            self._representation = self._createRepresentation()
        return self._representation

    def createNewWidgetRepresentation(self) -> qSlicerScriptedLoadableModuleWidget:
        return self._createRepresentation()

    def hasWidgetRepresentation(self) -> bool:
        return self._representation is not None

    def forgetWidgetRepresentation(self) -> Optional[qSlicerScriptedLoadableModuleWidget]:
        representation, self._representation = self._representation, None
        if hasattr(slicer.modules, f"{self.name}Widget"):
            delattr(slicer.modules, f"{self.name}Widget")
        return representation


class _FactoryManager:
    def __init__(self, manager: "qSlicerModuleManager") -> None:
        self._manager = manager

    def loadedModuleNames(self) -> List[str]:
        return list(self._manager.modules)

    registeredModuleNames = loadedModuleNames
    instantiatedModuleNames = loadedModuleNames

    def isLoaded(self, name: str) -> bool:
        return name in self._manager.modules


class qSlicerModuleManager(SignatureConnectMixin, QtCore.QObject):
    """``slicer.app.moduleManager()``: the loaded modules by name."""

    moduleAboutToBeUnloaded = Signal(str)
    moduleLoaded = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.modules: Dict[str, qSlicerAbstractCoreModule] = {}
        self._factoryManager = _FactoryManager(self)

    def module(self, name: str) -> Optional[qSlicerAbstractCoreModule]:
        return self.modules.get(name)

    def factoryManager(self) -> _FactoryManager:
        return self._factoryManager

    def add(self, module: qSlicerAbstractCoreModule) -> None:
        self.modules[module.name] = module
        self.moduleLoaded.emit(module.name)


class qSlicerCoreIOManager(SignatureConnectMixin, QtCore.QObject):
    """``slicer.app.coreIOManager()``: what ``slicer.util.loadVolume``/``loadSegmentation``/``loadMarkups``/
    ``loadTransform``/``loadTable``/``loadModel``/``saveNode`` need, done with the core logics and storage nodes.

    File types are recognised by extension as in Slicer (``.seg.nrrd`` is a segmentation, ``.nrrd`` a volume...).
    Volume properties ``name``, ``labelmap``, ``center``, ``singleFile``, ``discardOrientation`` and
    ``autoWindowLevel`` are honoured; ``show`` is ignored (no views).
    """

    EXTENSIONS: Tuple[Tuple[str, str], ...] = (
        (".seg.nrrd", "SegmentationFile"), (".seg.nhdr", "SegmentationFile"), (".seg.vtm", "SegmentationFile"),
        (".mrk.json", "MarkupsFile"), (".fcsv", "MarkupsFile"), (".json", "MarkupsFile"),
        (".nrrd", "VolumeFile"), (".nhdr", "VolumeFile"), (".nii.gz", "VolumeFile"), (".nii", "VolumeFile"),
        (".mha", "VolumeFile"), (".mhd", "VolumeFile"), (".hdr", "VolumeFile"), (".tif", "VolumeFile"),
        (".tiff", "VolumeFile"), (".png", "VolumeFile"), (".jpg", "VolumeFile"),
        (".h5", "TransformFile"), (".tfm", "TransformFile"), (".mat", "TransformFile"),
        (".csv", "TableFile"), (".tsv", "TableFile"),
        (".vtk", "ModelFile"), (".vtp", "ModelFile"), (".stl", "ModelFile"), (".ply", "ModelFile"),
        (".obj", "ModelFile"),
    )
    WRITER_TYPES: Tuple[Tuple[str, str], ...] = (
        ("vtkMRMLSegmentationNode", "SegmentationFile"), ("vtkMRMLVolumeNode", "VolumeFile"),
        ("vtkMRMLMarkupsNode", "MarkupsFile"), ("vtkMRMLTransformNode", "TransformFile"),
        ("vtkMRMLTableNode", "TableFile"), ("vtkMRMLModelNode", "ModelFile"),
    )

    def __init__(self, scene: Any, moduleManager: "qSlicerModuleManager") -> None:
        super().__init__()
        self._scene = scene
        self._moduleManager = moduleManager

    def _logic(self, moduleName: str) -> Any:
        return self._moduleManager.module(moduleName).logic()

    def fileType(self, fileName: str) -> str:
        lower = str(fileName).lower()
        for extension, fileType in self.EXTENSIONS:
            if lower.endswith(extension):
                return fileType
        return "NoFile"

    @classmethod
    def _baseName(cls, fileName: str) -> str:
        name = os.path.basename(str(fileName))
        for extension, _ in cls.EXTENSIONS:
            if name.lower().endswith(extension):
                return name[:-len(extension)]
        return os.path.splitext(name)[0]

    def loadNodes(self, fileType: str, properties: Dict[str, Any], loadedNodes: Any = None,
                  userMessages: Any = None) -> bool:
        fileName = str(properties["fileName"])
        name = properties.get("name") or self._baseName(fileName)
        if not os.path.exists(fileName):
            node = None
        elif fileType == "VolumeFile":
            options = (bool(properties.get("labelmap")) * 1 | bool(properties.get("center")) * 2
                       | bool(properties.get("singleFile")) * 4 | bool(properties.get("autoWindowLevel", True)) * 8
                       | bool(properties.get("discardOrientation")) * 16)
            node = self._logic("Volumes").AddArchetypeVolume(fileName, name, options)
        elif fileType == "SegmentationFile":
            node = self._logic("Segmentations").LoadSegmentationFromFile(fileName, bool(properties.get("autoOpacities", True)), name)
        elif fileType == "MarkupsFile":
            nodeID = self._logic("Markups").LoadMarkups(fileName, properties.get("name") or "")
            node = self._scene.GetNodeByID(nodeID) if nodeID else None
        elif fileType == "TransformFile":
            node = self._logic("Transforms").AddTransform(fileName, self._scene)
        elif fileType == "TableFile":
            node = self._logic("Tables").AddTable(fileName, name)
        elif fileType == "ModelFile":
            node = self._logic("Models").AddModel(fileName)
        else:
            raise ValueError(f"The Slicer test runtime cannot load files of type {fileType!r} ({fileName})")
        if node is None:
            if userMessages is not None:
                userMessages.AddMessage(vtk.vtkCommand.ErrorEvent, f"Could not read {fileName} as {fileType}")
            return False
        if loadedNodes is not None:
            loadedNodes.AddItem(node)
        return True

    def fileWriterFileType(self, node: Any) -> str:
        for className, fileType in self.WRITER_TYPES:
            if node.IsA(className):
                return fileType
        return "NoFile"

    def saveNodes(self, fileType: str, properties: Dict[str, Any], userMessages: Any = None) -> bool:
        """Write ``properties["nodeID"]`` to ``properties["fileName"]`` with the node's (default) storage node."""
        node = self._scene.GetNodeByID(properties.get("nodeID", ""))
        if node is None or not node.IsA("vtkMRMLStorableNode"):
            raise ValueError(f"The Slicer test runtime can only save storable nodes (got {properties.get('nodeID')!r})")
        storageNode = node.GetStorageNode()
        if storageNode is None:
            node.AddDefaultStorageNode()
            storageNode = node.GetStorageNode()
        storageNode.SetFileName(str(properties["fileName"]))
        if "useCompression" in properties:
            storageNode.SetUseCompression(int(bool(properties["useCompression"])))
        if storageNode.WriteData(node):
            return True
        if userMessages is not None:
            userMessages.AddMessage(vtk.vtkCommand.ErrorEvent, f"Could not write {properties['fileName']}")
        return False


class ModulesNamespace(types.SimpleNamespace):
    """``slicer.modules``: ``slicer.modules.<lower-case name>`` for every loaded module."""


class qSlicerApplication(SignatureConnectMixin, QtCore.QObject):
    """``slicer.app``: Slicer's application object, in testing mode, without a main window.

    Anything not defined here is forwarded to the QApplication (``topLevelWidgets()``, ``clipboard()``...).
    ``isTestRuntime`` tells code (``mednets.dependencies``) that this is not a real Slicer.
    """

    startupCompleted = Signal()
    isTestRuntime = True

    def __init__(self, scene: Any, applicationLogic: Any, moduleManager: qSlicerModuleManager, temporaryPath: str) -> None:
        super().__init__()
        self._scene = scene
        self._applicationLogic = applicationLogic
        self._moduleManager = moduleManager
        self._temporaryPath = temporaryPath
        self._coreIOManager = qSlicerCoreIOManager(scene, moduleManager)
        self._commandOptions = types.SimpleNamespace(noMainWindow=True, testingEnabled=True, runPythonAndExit=False,
                                                     disableModules=False, isTestingEnabled=lambda: True)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(QtWidgets.QApplication.instance(), name)

    # What Slicer reads as properties
    applicationName = property(lambda self: QtCore.QCoreApplication.applicationName())
    applicationVersion = property(lambda self: ".".join(map(str, _SLICER_CORE_VERSION)) + "-test-runtime")
    majorVersion = property(lambda self: _SLICER_CORE_VERSION[0])
    minorVersion = property(lambda self: _SLICER_CORE_VERSION[1])
    revision = property(lambda self: str(_SLICER_CORE_VERSION[2]))
    temporaryPath = property(lambda self: self._temporaryPath)
    slicerHome = property(lambda self: self._temporaryPath)
    defaultScenePath = property(lambda self: self._temporaryPath)
    cachePath = property(lambda self: os.path.join(self._temporaryPath, "cache"))
    documentationBaseUrl = property(lambda self: "https://slicer.readthedocs.io/en/latest")

    def moduleDocumentationUrl(self, moduleName: str) -> str:
        return f"{self.documentationBaseUrl}/user_guide/modules/{moduleName.lower()}.html"

    # Methods module code calls
    def processEvents(self, *args: Any) -> None:
        QtCore.QCoreApplication.processEvents(*args)

    def testingEnabled(self) -> bool:
        return True

    def mrmlScene(self) -> Any:
        return self._scene

    def applicationLogic(self) -> Any:
        return self._applicationLogic

    def moduleManager(self) -> qSlicerModuleManager:
        return self._moduleManager

    def settings(self) -> QtCore.QSettings:
        return QtCore.QSettings()

    userSettings = settings
    revisionUserSettings = settings

    def coreIOManager(self) -> qSlicerCoreIOManager:
        return self._coreIOManager

    def layoutManager(self) -> None:
        """No views in the runtime (as ``Slicer --no-main-window``)."""
        return None

    def mainWindow(self) -> None:
        return None

    def pythonConsole(self) -> None:
        return None

    def commandOptions(self) -> types.SimpleNamespace:
        return self._commandOptions

    def translate(self, context: str, text: str) -> str:
        return QtCore.QCoreApplication.translate(context, text)

    def setOverrideCursor(self, cursor: Any) -> None:
        QtWidgets.QApplication.setOverrideCursor(QtGui.QCursor(cursor))

    def restoreOverrideCursor(self) -> None:
        QtWidgets.QApplication.restoreOverrideCursor()

    def exit(self, status: int = 0) -> None:
        """Leaving the application ends the Python process here (as ``sys.exit``)."""
        raise SystemExit(status)

    def quit(self) -> None:
        self.exit(0)


def create_core_modules(scene: Any, applicationLogic: Any) -> List[qSlicerAbstractCoreModule]:
    """Instantiate the core module logics slicer-core has, wire them to the scene, return their module objects."""
    modules = []
    warningsShown = vtk.vtkObject.GetGlobalWarningDisplay()
    vtk.vtkObject.GlobalWarningDisplayOff()  # the Colors logic complains that there is no Slicer home with color files
    try:
        for moduleName, className in CORE_MODULE_LOGICS:
            logicClass = getattr(slicer, className, None)
            if logicClass is None:
                logging.info("Slicer test runtime: slicer-core has no %s; module %s not available", className, moduleName)
                continue
            logic = logicClass()
            logic.SetMRMLApplicationLogic(applicationLogic)
            logic.SetMRMLScene(scene)
            applicationLogic.SetModuleLogic(moduleName, logic)
            if moduleName == "Colors":
                applicationLogic.SetColorLogic(logic)
                _addMissingDefaultColorTables(scene, logic)
            modules.append(qSlicerAbstractCoreModule(moduleName, logic))
    finally:
        vtk.vtkObject.SetGlobalWarningDisplay(warningsShown)
    return modules


def _addMissingDefaultColorTables(scene: Any, colorLogic: Any) -> None:
    """Add the default colour tables Slicer reads from its colour files (GenericColors for label maps,
    GenericAnatomyColors for the editor, DarkBrightChartColors), which slicer-core lacks, as singleton label tables
    with the node IDs Slicer gives them, so label maps created by the Volumes logic get a valid colour node."""
    for defaultID in (colorLogic.GetDefaultLabelMapColorNodeID(), colorLogic.GetDefaultEditorColorNodeID(),
                      colorLogic.GetDefaultChartColorNodeID()):
        prefix = "vtkMRMLColorTableNode"
        if scene.GetNodeByID(defaultID) is not None or not defaultID.startswith(prefix):
            continue
        table = slicer.vtkMRMLColorTableNode()
        table.SetTypeToLabels()
        table.SetSingletonTag(defaultID[len(prefix):])
        table.SetName(os.path.splitext(defaultID[len(prefix) + len("File"):])[0])
        table.SetAttribute("Category", "Discrete")
        scene.AddNode(table)
