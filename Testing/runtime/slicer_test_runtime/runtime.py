"""Installing the runtime, loading scripted modules the way Slicer does, building their widgets, running their tests."""

from __future__ import annotations

import ast
import atexit
import functools
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
import types
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

__all__ = ["Message", "Runtime", "install", "installed", "module_test_names", "REPOSITORY_ROOT"]

PathLike = Union[str, "os.PathLike[str]"]
REPOSITORY_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Message:
    """A message a module showed through ``slicer.util``: ``kind`` is ``"error"``, ``"warning"``, ``"info"``,
    ``"confirm"`` or ``"delay"`` (``delayDisplay``), ``text`` what the user would have read."""

    kind: str
    text: str


class Runtime:
    """The installed runtime: the application objects, the scene, the messages shown, and module helpers."""

    def __init__(self) -> None:
        from PySide6 import QtCore, QtWidgets

        from .pythonqt import protect_singletons_from_pyside_refcount_bug

        protect_singletons_from_pyside_refcount_bug()  # before any Qt call (see its docstring)
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        os.environ.setdefault("MPLBACKEND", "Agg")  # a QApplication would otherwise make pyplot pick a Qt backend
        self.qapplication = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1] or ["Slicer"])
        self.temporaryPath = tempfile.mkdtemp(prefix="SlicerTestRuntime-")
        atexit.register(shutil.rmtree, self.temporaryPath, ignore_errors=True)
        QtCore.QCoreApplication.setOrganizationName("NA-MIC")
        QtCore.QCoreApplication.setOrganizationDomain("slicer.org")
        QtCore.QCoreApplication.setApplicationName("Slicer")
        QtCore.QSettings.setDefaultFormat(QtCore.QSettings.IniFormat)
        QtCore.QSettings.setPath(QtCore.QSettings.IniFormat, QtCore.QSettings.UserScope,
                                 os.path.join(self.temporaryPath, "settings"))
        self.messages: List[Message] = []
        self.moduleSearchPaths: List[Path] = [REPOSITORY_ROOT, REPOSITORY_ROOT / "Testing"]
        #: module name -> module file, for every module file found by :meth:`register_modules` (Slicer's
        #: "registered" modules: known to the factory, folder on sys.path, not yet instantiated).
        self.registeredModules: Dict[str, Path] = {}
        self._installNamespaces()
        self.register_modules()

    # ------------------------------------------------------------------------------------------------ installation
    def _installNamespaces(self) -> None:
        import slicer

        from . import application, ctk_widgets, i18n, mrml_widgets, parameter_node_wrapper, pythonqt, qt_module
        from . import scripted_module, segment_editor

        pythonqt.install(qt_module.QT_SOURCE_MODULES)
        for cls in ctk_widgets.DESIGNER_CLASSES + mrml_widgets.DESIGNER_CLASSES:
            qt_module.register_widget_class(cls)
        qt = qt_module.build_qt_module()
        ctk = types.ModuleType("ctk", "CTK widget stand-ins (SlicerMedNets test runtime).")
        for name in ctk_widgets.__all__:
            setattr(ctk, name, getattr(ctk_widgets, name))
        pythonqt.set_slicer_namespaces(qt=qt, ctk=ctk, slicer=slicer)
        sys.modules["qt"], sys.modules["ctk"] = qt, ctk

        self.scene = slicer.vtkMRMLScene()
        self.applicationLogic = slicer.vtkSlicerApplicationLogic()
        self.applicationLogic.SetMRMLScene(self.scene)
        self.moduleManager = application.qSlicerModuleManager()
        self.app = application.qSlicerApplication(self.scene, self.applicationLogic, self.moduleManager,
                                                  self.temporaryPath)
        self.modules = application.ModulesNamespace()
        self.moduleNames = types.SimpleNamespace()
        slicer.app, slicer.mrmlScene, slicer.modules, slicer.moduleNames = self.app, self.scene, self.modules, self.moduleNames
        slicer.selfTests = {}
        for module in application.create_core_modules(self.scene, self.applicationLogic):
            self._register(module)

        for cls in mrml_widgets.DESIGNER_CLASSES + (application.qSlicerAbstractCoreModule,
                                                    application.qSlicerScriptedLoadableModule,
                                                    application.qSlicerScriptedLoadableModuleWidget):
            setattr(slicer, cls.__name__, cls)
        for name, module in (("ScriptedLoadableModule", scripted_module), ("parameterNodeWrapper", parameter_node_wrapper),
                             ("i18n", i18n)):
            sys.modules[f"slicer.{name}"] = module
            setattr(slicer, name, module)
        segment_editor.install()
        self._recordMessages(slicer)

    def _register(self, module: Any) -> None:
        self.moduleManager.add(module)
        setattr(self.modules, module.name.lower(), module)
        setattr(self.moduleNames, module.name, module.name)

    def _recordMessages(self, slicer: types.ModuleType) -> None:
        """Record what ``slicer.util`` shows; ``delayDisplay`` only records and processes events (no dialog)."""
        for kind, functionName in (("error", "errorDisplay"), ("warning", "warningDisplay"), ("info", "infoDisplay"),
                                   ("confirm", "confirmOkCancelDisplay"), ("confirm", "confirmYesNoDisplay"),
                                   ("confirm", "confirmRetryCloseDisplay")):
            original = getattr(slicer.util, functionName)

            def recorded(text: str, *args: Any, _original: Callable = original, _kind: str = kind, **kwargs: Any) -> Any:
                self.messages.append(Message(_kind, str(text)))
                return _original(text, *args, **kwargs)

            self._replaceUtilFunction(slicer, functionName, functools.wraps(original)(recorded))

        def delayDisplay(message: str, autoCloseMsec: int = 1000, parent: Any = None, **kwargs: Any) -> None:
            logging.info(message)
            self.messages.append(Message("delay", str(message)))
            self.app.processEvents()

        self._replaceUtilFunction(slicer, "delayDisplay", functools.wraps(slicer.util.delayDisplay)(delayDisplay))

    @staticmethod
    def _replaceUtilFunction(slicer: types.ModuleType, name: str, function: Callable) -> None:
        setattr(slicer.util, name, function)
        if hasattr(slicer, name):  # slicer-core's meta-package also copies slicer.util's names into slicer
            setattr(slicer, name, function)

    # ------------------------------------------------------------------------------------------------ scene, events
    def reset_scene(self) -> None:
        """Close the scene as File / Close Scene does (``Clear(0)``: singletons stay, reset) and forget messages."""
        self.scene.Clear(0)
        self.messages.clear()

    def message_texts(self, kind: Optional[str] = None) -> List[str]:
        return [m.text for m in self.messages if kind is None or m.kind == kind]

    def pump_events(self, until: Optional[Callable[[], bool]] = None, timeout: float = 10.0) -> None:
        """Process Qt events (timers included) once, or until ``until()`` is true; ``TimeoutError`` after ``timeout`` s."""
        from PySide6 import QtCore

        deadline = time.monotonic() + timeout
        while True:
            self.qapplication.processEvents(QtCore.QEventLoop.AllEvents, 50)
            QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.DeferredDelete)
            if until is None or until():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition still false after {timeout} s of event processing")
            time.sleep(0.005)

    # ------------------------------------------------------------------------------------------------ modules
    @staticmethod
    def discover_module_files(searchPaths: Sequence[PathLike]) -> List[Path]:
        """The module files ``<Folder>/<Folder>.py`` of ``searchPaths``, in discovery order.

        A search path is either a module folder itself (what Slicer's ``--additional-module-paths`` names, e.g.
        ``OrganCombo``) or a folder holding module folders (the repository root, ``Testing``), scanned in name order.
        In Slicer a module path is scanned for ``*.py`` files by ``qSlicerScriptedLoadableModuleFactory::
        registerItems`` -> ``ctkAbstractFileBasedFactory::registerAllFileItems`` (``isValidFile``: a ``.py`` that is
        not a CLI script); a source checkout's module folder holds exactly one top-level ``.py``, the module file, so
        ``<Folder>/<Folder>.py`` is the same set of files.
        """
        found: List[Path] = []
        for searchPath in map(Path, searchPaths):
            if (searchPath / f"{searchPath.name}.py").is_file():
                candidates = [searchPath]
            else:
                candidates = sorted(p for p in searchPath.iterdir() if p.is_dir()) if searchPath.is_dir() else []
            for folder in candidates:
                moduleFile = folder / f"{folder.name}.py"
                if moduleFile.is_file() and moduleFile.resolve() not in found:
                    found.append(moduleFile.resolve())
        return found

    def register_modules(self, searchPaths: Optional[Sequence[PathLike]] = None) -> List[Path]:
        """Register the module files of ``searchPaths`` (default ``moduleSearchPaths``) as Slicer's factory does at
        start-up, before any module is instantiated: each module's folder is APPENDED to ``sys.path`` in discovery
        order, after what is there, and nothing else of the checkout is added.

        Slicer: ``ctkAbstractFactory::registerItem`` (commontk/CTK ``Libs/Core/ctkAbstractFactory.tpp``) calls
        ``item->load()`` when an item is registered; ``ctkFactoryScriptedItem::load()``
        (``Base/QTGUI/qSlicerScriptedLoadableModuleFactory.cxx``) then calls ``appendPythonPaths`` with the folder of
        the module file (skipped only for modules embedded in the Slicer build, which the runtime has none of).
        So a folder's packages (``<Module>Lib``, ``mednets`` next to ``MedNetsCore.py``) import in every module.
        Returns the newly registered module files.
        """
        registered = []
        for moduleFile in self.discover_module_files(self.moduleSearchPaths if searchPaths is None else searchPaths):
            if moduleFile.stem in self.registeredModules:
                continue
            self.registeredModules[moduleFile.stem] = moduleFile
            folder = str(moduleFile.parent)
            if folder not in sys.path:
                sys.path.append(folder)  # appendPythonPaths: after what is there
            registered.append(moduleFile)
        return registered

    def find_module_file(self, moduleName: str) -> Path:
        """The registered module file of ``moduleName`` (``<folder>/<moduleName>/<moduleName>.py`` in one of
        ``moduleSearchPaths``; a module path added to ``moduleSearchPaths`` later is registered now)."""
        if moduleName not in self.registeredModules:
            self.register_modules()
        if moduleName in self.registeredModules:
            return self.registeredModules[moduleName]
        raise FileNotFoundError(f"No scripted module {moduleName} in {[str(p) for p in self.moduleSearchPaths]}")

    def load_module(self, path: PathLike) -> types.ModuleType:
        """Import a scripted module file as Slicer does and register it; return its Python module.

        The file is registered first if it was not (its folder appended to ``sys.path``, see
        :meth:`register_modules`); then, as ``ctkFactoryScriptedItem::instanciator()`` ->
        ``qSlicerScriptedLoadableModule::setPythonSource`` (``Base/QTGUI/qSlicerScriptedLoadableModule.cxx``) does, it is
        imported as the Python module named after the file (the file stem); the ``<Module>`` class is instantiated with a ``qSlicerScriptedLoadableModule`` parent whose ``path`` is the file;
        the module becomes ``slicer.modules.<lower-case name>`` (and ``slicer.modules.<Name>Instance``), known to
        ``slicer.util.getModule``. Loading an already loaded file returns the loaded module.
        """
        import slicer

        from . import application, pythonqt

        path = Path(path).resolve()
        name = path.stem
        loaded = self.moduleManager.module(name)
        if loaded is not None:
            if Path(loaded.path).resolve() != path:
                raise RuntimeError(f"A module named {name} is already loaded from {loaded.path}")
            return loaded.pythonModule
        if self.registeredModules.get(name) != path:  # a file outside the search paths: register it alone
            self.registeredModules[name] = path
            if str(path.parent) not in sys.path:
                sys.path.append(str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        pythonModule = importlib.util.module_from_spec(spec)
        pythonqt.register_slicer_code(name)
        sys.modules[name] = pythonModule
        try:
            spec.loader.exec_module(pythonModule)
            moduleClass = getattr(pythonModule, name, None)
            if moduleClass is None:
                raise RuntimeError(f"{path} defines no class {name} (a scripted module file defines a class named "
                                   "after the file)")
            parent = application.qSlicerScriptedLoadableModule(name, str(path), pythonModule)
            parent.instance = moduleClass(parent)
        except BaseException:
            del sys.modules[name]
            raise
        self._register(parent)
        setattr(self.modules, f"{name}Instance", parent.instance)
        missing = [d for d in parent.dependencies if self.moduleManager.module(d) is None]
        if missing:
            logging.warning("Slicer test runtime: %s depends on modules the runtime does not have: %s", name, missing)
        return pythonModule

    def _module(self, moduleName: str) -> Any:
        module = self.moduleManager.module(moduleName)
        if module is None:
            self.load_module(self.find_module_file(moduleName))
            module = self.moduleManager.module(moduleName)
        if not hasattr(module, "pythonModule"):
            raise RuntimeError(f"{moduleName} is not a scripted module")
        return module

    def create_widget(self, moduleName: str, enter: bool = True) -> Any:
        """The module's Python widget (``<Module>Widget``), built as Slicer builds it when the module is first shown:
        ``setup()``, the scene set on the panel, then ``enter()`` (with ``enter=True``). Loads the module if needed."""
        representation = self._module(moduleName).widgetRepresentation()
        if enter and not representation.isEntered:
            representation.enter()
        return representation.self()

    def destroy_widget(self, moduleName: str) -> None:
        """Tear the module's widget down as Slicer does when the module is unloaded: ``exit()``, ``cleanup()``, delete."""
        module = self.moduleManager.module(moduleName)
        if module is None or not getattr(module, "hasWidgetRepresentation", lambda: False)():
            return
        representation = module.forgetWidgetRepresentation()
        if representation.isEntered:
            representation.exit()
        self.moduleManager.moduleAboutToBeUnloaded.emit(moduleName)
        representation.setParent(None)
        representation.deleteLater()
        self.pump_events()

    def run_module_tests(self, moduleName: str, testNames: Optional[Sequence[str]] = None) -> None:
        """Run the module's ``<Module>Test``: its ``runTest()`` (as Slicer's self-test), or the named test methods
        (each between ``setUp`` and ``tearDown``). A failing test raises (``AssertionError``...)."""
        import slicer

        module = self._module(moduleName)
        if testNames is None:
            slicer.selfTests[moduleName](msec=0)
            return
        testCase = getattr(module.pythonModule, f"{moduleName}Test")()
        testCase.messageDelay = 0
        for testName in testNames:
            testCase.setUp()
            try:
                getattr(testCase, testName)()
            finally:
                testCase.tearDown()


    def run_test_file(self, path: PathLike, testNames: Sequence[str], className: Optional[str] = None) -> None:
        """Run test methods of a ``unittest.TestCase`` file written for Slicer (e.g. ``<Module>/Testing/Python/
        <Name>Test.py``, class ``<Name>Test`` unless ``className`` is given). Failures and errors are raised as one
        ``AssertionError`` carrying their tracebacks; a skipped test raises ``unittest.SkipTest``."""
        path = Path(path).resolve()
        testModule = sys.modules.get(path.stem)
        if testModule is None or Path(getattr(testModule, "__file__", "")).resolve() != path:
            if str(path.parent) not in sys.path:
                sys.path.insert(0, str(path.parent))
            spec = importlib.util.spec_from_file_location(path.stem, path)
            testModule = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = testModule
            spec.loader.exec_module(testModule)
        testClass = getattr(testModule, className or path.stem)
        for testName in testNames:
            result = unittest.TestResult()
            testClass(testName).run(result)
            problems = result.errors + result.failures
            if problems:
                raise AssertionError("\n".join(trace for _, trace in problems))
            if result.skipped:
                raise unittest.SkipTest(result.skipped[0][1])


def module_test_names(path: PathLike, className: Optional[str] = None) -> List[str]:
    """The ``test*`` methods of class ``className`` (default ``<file stem>Test``, a module's test case) in a Python
    file, read without importing it, so that pytest can parametrize over them at collection time."""
    path = Path(path)
    className = className or f"{path.stem}Test"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == className:
            return [item.name for item in node.body
                    if isinstance(item, ast.FunctionDef) and item.name.startswith("test")]
    raise ValueError(f"{path} has no class {className}")


_runtime: Optional[Runtime] = None


def install() -> Runtime:
    """Install the runtime once per process (later calls return the same :class:`Runtime`)."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime()
    return _runtime


def installed() -> bool:
    return _runtime is not None
