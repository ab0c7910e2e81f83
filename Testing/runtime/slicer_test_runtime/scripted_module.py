"""``slicer.ScriptedLoadableModule`` of the runtime: the four base classes of a Slicer scripted module.

Same names, constructor signatures, attributes and behaviour as Slicer's ``Base/Python/slicer/ScriptedLoadableModule.py``
for what modules use: the module's ``parent`` attributes and icon, ``resourcePath()``, ``runTest()`` through
``slicer.selfTests``; the widget's ``parent``/``layout``/``setup()``/``cleanup()`` (called when the module is about to
be unloaded); the logic's singleton ``vtkMRMLScriptedModuleNode`` parameter node; the test case's ``delayDisplay`` and
``runTest``. Differences, because the runtime behaves as Slicer started with ``--no-main-window --testing``: developer
mode is off, so the widget has no "Reload & Test" section (``onReload`` reloads nothing and says so), and
``takeScreenshot`` only shows its description (there are no views to capture).
"""

from __future__ import annotations

import importlib
import logging
import os
import unittest
from typing import Any, List, Optional

import slicer
from PySide6 import QtGui, QtWidgets

__all__ = ["ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
           "ScriptedLoadableModuleTest"]


class ScriptedLoadableModule:
    """Base class of ``<Module>(ScriptedLoadableModule)``: describes the module through ``self.parent``."""

    def __init__(self, parent: Any) -> None:
        super().__init__()
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = ["Andras Lasso (PerkLab, Queen's University), Steve Pieper (Isomics)"]
        parent.helpText = "This module was created from a template and the help section has not yet been updated."
        parent.acknowledgementText = "This work is supported by NA-MIC, NAC, BIRN, NCIGT, and the Slicer Community."
        moduleDir = os.path.dirname(self.parent.path)
        for extension in (".svg", ".png"):
            iconPath = os.path.join(moduleDir, "Resources", "Icons", self.moduleName + extension)
            if os.path.isfile(iconPath):
                parent.icon = QtGui.QIcon(iconPath)
                break
        if not hasattr(slicer, "selfTests"):
            slicer.selfTests = {}
        slicer.selfTests[self.moduleName] = self.runTest

    def resourcePath(self, filename: str) -> str:
        """Absolute path of ``filename`` in the module's ``Resources`` folder."""
        return os.path.join(os.path.dirname(self.parent.path), "Resources", filename)

    def getDefaultModuleDocumentationLink(self, docPage: Optional[str] = None) -> str:
        url = slicer.app.documentationBaseUrl + docPage if docPage else slicer.app.moduleDocumentationUrl(self.moduleName)
        return f'<p>For more information, see the <a href="{url}">online documentation</a>.</p>'

    def runTest(self, msec: int = 100, **kwargs: Any) -> None:
        """Run ``<ModuleName>Test().runTest(**kwargs)`` (what Slicer's "Reload and Test" and ctest do)."""
        module = importlib.import_module(self.__module__)
        className = self.moduleName + "Test"
        testCaseClass = getattr(module, className, None)
        if testCaseClass is None:
            raise AssertionError(f"Test case class not found: {self.__module__}.{className}")
        testCase = testCaseClass()
        testCase.messageDelay = msec
        testCase.runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    """Base class of ``<Module>Widget``: ``self.parent`` is the module panel, ``self.layout`` its layout."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__()
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Widget"):
            self.moduleName = self.moduleName[:-len("Widget")]
        self.developerMode = slicer.util.settingsValue("Developer/DeveloperMode", False, converter=slicer.util.toBool)
        if not parent:
            self.parent = slicer.qMRMLWidget()
            self.parent.setLayout(QtWidgets.QVBoxLayout())
            self.parent.setMRMLScene(slicer.mrmlScene)
        else:
            self.parent = parent
        self.layout = self.parent.layout()
        if not parent:
            self.setup()
            self.parent.show()
        slicer.app.moduleManager().moduleAboutToBeUnloaded.connect(self._onModuleAboutToBeUnloaded)

    def resourcePath(self, filename: str) -> str:
        """Absolute path of ``filename`` in the module's ``Resources`` folder."""
        return os.path.join(os.path.dirname(slicer.util.modulePath(self.moduleName)), "Resources", filename)

    def setup(self) -> None:
        """Build the GUI (modules call this first in their own ``setup``)."""
        self.setupDeveloperSection()

    def setupDeveloperSection(self) -> None:
        """Slicer adds "Reload & Test" buttons in developer mode; the runtime runs with developer mode off."""

    def cleanup(self) -> None:
        """Called just before the module is unloaded (override to remove observers)."""

    def _onModuleAboutToBeUnloaded(self, moduleName: str) -> None:
        if moduleName == self.moduleName:
            self.cleanup()
            slicer.app.moduleManager().moduleAboutToBeUnloaded.disconnect(self._onModuleAboutToBeUnloaded)

    def onReload(self) -> None:
        logging.info("Slicer test runtime: reloading %s is not supported; load the module again instead",
                     self.moduleName)

    def onTest(self, **kwargs: Any) -> None:
        slicer.selfTests[self.moduleName](**kwargs)

    def onReloadAndTest(self, **kwargs: Any) -> None:
        self.onReload()
        self.onTest(**kwargs)


class ScriptedLoadableModuleLogic:
    """Base class of ``<Module>Logic``; ``getParameterNode()`` returns the module's parameter node."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__()
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Logic"):
            self.moduleName = self.moduleName[:-len("Logic")]
        self.isSingletonParameterNode = True

    def getParameterNode(self) -> Any:
        """The module's ``vtkMRMLScriptedModuleNode`` (singleton tagged with the module name), created if missing."""
        if self.isSingletonParameterNode:
            parameterNode = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if parameterNode:
                if parameterNode.GetAttribute("ModuleName") != self.moduleName:
                    parameterNode.SetAttribute("ModuleName", self.moduleName)  # cleared when the scene was closed
                return parameterNode
        else:
            for parameterNode in self.getAllParameterNodes():
                return parameterNode
        return slicer.mrmlScene.AddNode(self.createParameterNode())

    def getAllParameterNodes(self) -> List[Any]:
        nodes = []
        for index in range(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode")):
            node = slicer.mrmlScene.GetNthNodeByClass(index, "vtkMRMLScriptedModuleNode")
            if node.GetAttribute("ModuleName") == self.moduleName:
                nodes.append(node)
        return nodes

    def createParameterNode(self) -> Any:
        """A new parameter node (not yet in the scene) tagged with the module name."""
        node = slicer.vtkMRMLScriptedModuleNode()
        if self.isSingletonParameterNode:
            node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    """Base class of ``<Module>Test``: a ``unittest.TestCase`` whose ``runTest()`` runs the module's tests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.moduleTestNames: List[str] = []
        super().__init__(*args, **kwargs)
        self.enableScreenshots = False
        self.screenshotScaleFactor = 1.0
        if not self.moduleTestNames:
            self.moduleTestNames = [name for name in dir(self) if "test" in name and callable(getattr(self, name))]

    def delayDisplay(self, message: str, requestedDelay: Optional[int] = None, msec: Optional[int] = None) -> None:
        """Show ``message`` to the tester (the runtime records it and processes pending events)."""
        if hasattr(self, "messageDelay"):
            msec = self.messageDelay
        if msec is None:
            msec = requestedDelay if requestedDelay is not None else 100
        slicer.util.delayDisplay(message, msec)

    def takeScreenshot(self, name: str, description: str, type: int = -1) -> None:  # noqa: A002 - Slicer's name
        """Show ``description``; there are no views to capture in the runtime."""
        self.delayDisplay(description)

    def runTest(self) -> None:
        """Run every test method (``setUp`` before and ``tearDown`` after each)."""
        if not self.moduleTestNames:
            logging.warning("No test is defined in %s", self.__class__.__name__)
            return
        self.setUpClass()
        for testName in self.moduleTestNames:
            self.setUp()
            logging.info("Running %s", testName)
            getattr(self, testName)()
            self.tearDown()
        self.tearDownClass()
