"""Segment Editor effect framework stand-ins: what a scripted Segment Editor effect calls in Slicer.

Slicer's effect framework is C++ (qSlicerSegmentEditorScriptedEffect, qSlicerSegmentEditorEffectFactory) plus the
Python package ``SegmentEditorEffects`` (``AbstractScriptedSegmentEditorEffect``); ``slicer-core`` has none of them.
The stand-ins below keep the same names and calls (facts from Slicer/Slicer
``Modules/Loadable/Segmentations/EditorEffects``: an effect file defines ``SegmentEditorEffect(scriptedEffect)``, the
adaptor loads it with ``setPythonSource`` and returns it from ``self()``, ``register()`` hands the adaptor to the
factory singleton; effects read the ``vtkMRMLSegmentEditorNode`` from ``scriptedEffect.parameterSetNode()``, call
``saveStateForUndo()`` before a change and ``modifySelectedSegmentByLabelmap(image, mode)`` to change the selected
segment). The real MRML segment editor node and segmentation logic do the work here: a modification is
``vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment`` on the selected segment. Undo keeps deep copies of
the segmentation (``undo()`` is a runtime helper standing in for the editor's Undo button).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any, List, Optional

import slicer

__all__ = ["install"]


class qSlicerSegmentEditorAbstractEffect:
    """The modification modes of ``modifySelectedSegmentByLabelmap`` (names as in Slicer)."""

    ModificationModeSet = 0
    ModificationModeAdd = 1
    ModificationModeRemove = 2
    ModificationModeRemoveAll = 3


class qSlicerSegmentEditorEffectFactory:
    """The effect registry singleton (``instance().registerEffect(adaptor)``)."""

    _instance: Optional["qSlicerSegmentEditorEffectFactory"] = None

    def __init__(self) -> None:
        self._effects: List[Any] = []

    @classmethod
    def instance(cls) -> "qSlicerSegmentEditorEffectFactory":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def registerEffect(self, effect: Any) -> bool:
        if any(registered.name == effect.name for registered in self._effects):
            return False
        self._effects.append(effect)
        return True

    def registeredEffects(self) -> List[Any]:
        return list(self._effects)

    def effectByName(self, name: str) -> Optional[Any]:
        return next((effect for effect in self._effects if effect.name == name), None)


class AbstractScriptedSegmentEditorEffect:
    """Base class of scripted effects (``SegmentEditorEffects.AbstractScriptedSegmentEditorEffect``)."""

    def __init__(self, scriptedEffect: Any) -> None:
        self.scriptedEffect = scriptedEffect

    def register(self) -> None:
        slicer.qSlicerSegmentEditorEffectFactory.instance().registerEffect(self.scriptedEffect)

    def cleanup(self) -> None:
        pass


class qSlicerSegmentEditorScriptedEffect:
    """The C++ adaptor a scripted effect talks to through ``self.scriptedEffect``."""

    _MODES = {
        qSlicerSegmentEditorAbstractEffect.ModificationModeSet: "MODE_REPLACE",
        qSlicerSegmentEditorAbstractEffect.ModificationModeAdd: "MODE_MERGE_MAX",
        qSlicerSegmentEditorAbstractEffect.ModificationModeRemove: "MODE_MERGE_MIN",
    }

    def __init__(self, parent: Any = None) -> None:
        from PySide6 import QtWidgets

        self.name = ""
        self.perSegment = True
        self.requireSegments = True
        self._python: Optional[Any] = None
        self._parameterSetNode: Optional[Any] = None
        self._undoStates: List[Any] = []
        self._optionsFrame = QtWidgets.QFrame()
        self._optionsFrame.setLayout(QtWidgets.QVBoxLayout())

    # --- loading the Python effect
    def setPythonSource(self, path: str) -> bool:
        """Load the effect as Slicer does (``Modules/Loadable/Segmentations/EditorEffects/
        qSlicerSegmentEditorScriptedEffect.cxx``, ``setPythonSource``): the module name is the file's PARENT FOLDER's
        name, the class name the file's base name (+ "Effect" unless it ends so). An existing ``sys.modules[folder]``
        holding that class is used as it is; otherwise ``qSlicerScriptedUtils::loadSourceAsModule(folder, path)``
        (``Base/QTCore/qSlicerScriptedUtils.cxx``) runs ``spec_from_file_location(folder, path)``,
        ``sys.modules[folder] = module``, ``exec_module(module)``. The class is instantiated with this adaptor and
        ``slicer.<folder>`` is set to the instance. A failure (import error in the file, no such class) is printed
        as PythonQt does, returns False and leaves ``self()`` None."""
        import traceback

        path = str(Path(path))
        file_path = Path(path)
        module_name = file_path.parent.name
        class_name = file_path.stem if file_path.stem.endswith("Effect") else file_path.stem + "Effect"
        self._python = None
        module = sys.modules.get(module_name)
        if module is None or not hasattr(module, class_name):
            try:
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            except Exception:  # PythonQt prints the traceback; setPythonSource returns false
                traceback.print_exc()
                return False
        effect_class = getattr(module, class_name, None)
        if effect_class is None:
            print(f"setPythonSource - class {class_name} was not found in {path}", file=sys.stderr)
            return False
        try:
            self._python = effect_class(self)
        except Exception:
            traceback.print_exc()
            self._python = None
            return False
        setattr(slicer, module_name, self._python)
        return True

    def self(self) -> Any:
        return self._python

    # --- what the editor does with an effect
    def setParameterSetNode(self, node: Any) -> None:
        """Runtime helper: the segment editor node the editor widget would hold (a new node starts a new undo
        history)."""
        if node is not self._parameterSetNode:
            self._undoStates.clear()
        self._parameterSetNode = node

    def parameterSetNode(self) -> Any:
        return self._parameterSetNode

    def optionsFrame(self) -> Any:
        return self._optionsFrame

    def addOptionsWidget(self, widget: Any) -> None:
        self._optionsFrame.layout().addWidget(widget)

    def setupOptionsFrame(self) -> None:
        """Runtime helper: what the editor calls once, when the effect is first shown."""
        self._python.setupOptionsFrame()

    # --- changing the selected segment
    def saveStateForUndo(self) -> None:
        segmentation = self._parameterSetNode.GetSegmentationNode().GetSegmentation()
        snapshot = slicer.vtkSegmentation()
        snapshot.DeepCopy(segmentation)
        self._undoStates.append(snapshot)

    def undo(self) -> bool:
        """Runtime helper: the editor's Undo button (restores the last saved state)."""
        if not self._undoStates:
            return False
        node = self._parameterSetNode.GetSegmentationNode()
        node.GetSegmentation().DeepCopy(self._undoStates.pop())
        node.Modified()
        return True

    def undoStateCount(self) -> int:
        return len(self._undoStates)

    def modifySelectedSegmentByLabelmap(self, labelmap: Any, mode: int, bypassMasking: bool = False) -> None:
        editor = self._parameterSetNode
        segmentation_node = editor.GetSegmentationNode()
        segment_id = editor.GetSelectedSegmentID()
        if segmentation_node is None or not segment_id:
            raise ValueError("no segment is selected")
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        logic.SetBinaryLabelmapToSegment(labelmap, segmentation_node, segment_id, getattr(logic, self._MODES[mode]))


def install() -> None:
    """Expose the stand-ins as Slicer does: ``SegmentEditorEffects``, ``qSlicerSegmentationsEditorEffectsPythonQt``,
    ``slicer.qSlicerSegmentEditorEffectFactory`` and ``slicer.qSlicerSegmentEditorAbstractEffect``."""
    effects = types.ModuleType("SegmentEditorEffects", "Segment Editor effect base classes (test runtime).")
    effects.AbstractScriptedSegmentEditorEffect = AbstractScriptedSegmentEditorEffect
    effects.__all__ = ["AbstractScriptedSegmentEditorEffect"]
    adaptors = types.ModuleType("qSlicerSegmentationsEditorEffectsPythonQt", "Effect adaptors (test runtime).")
    adaptors.qSlicerSegmentEditorScriptedEffect = qSlicerSegmentEditorScriptedEffect
    sys.modules["SegmentEditorEffects"] = effects
    sys.modules["qSlicerSegmentationsEditorEffectsPythonQt"] = adaptors
    slicer.qSlicerSegmentEditorEffectFactory = qSlicerSegmentEditorEffectFactory
    slicer.qSlicerSegmentEditorAbstractEffect = qSlicerSegmentEditorAbstractEffect
