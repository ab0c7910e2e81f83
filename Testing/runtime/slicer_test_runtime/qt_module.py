"""The ``qt`` module of the runtime: PySide6's QtCore, QtGui, QtWidgets and QtUiTools merged into one namespace
(as PythonQt's ``qt``), with a ``QUiLoader`` that loads designer files written for Slicer.

The loader registers the runtime's CTK and MRML stand-ins (and any class given to :func:`register_widget_class`) as
custom widgets, translates CTK enum values written by Qt Designer (``<set>ctkPathLineEdit::Dirs</set>``), and makes the
``<connections>`` of the file itself: PySide6's loader cannot connect ``mrmlSceneChanged(vtkMRMLScene*)`` to a Python
widget's ``setMRMLScene(vtkMRMLScene*)``, so the connections are taken out of the XML and made with
:func:`~slicer_test_runtime.pythonqt.connect_by_signature`. A UI that uses a class the runtime does not provide is
refused with a message naming it, rather than silently replaced by a plain QWidget.
"""

from __future__ import annotations

import logging
import types
import xml.etree.ElementTree as ElementTree
from typing import Dict, Iterable, List, NamedTuple, Optional, Union

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets

from . import pythonqt

__all__ = ["QUiLoader", "build_qt_module", "register_widget_class", "QT_SOURCE_MODULES"]

QT_SOURCE_MODULES = (QtCore, QtGui, QtWidgets, QtUiTools)

_widget_classes: Dict[str, type] = {}


def register_widget_class(cls: type) -> type:
    """Make ``cls`` (a QWidget subclass named as in Slicer's designer files) available to ``.ui`` files."""
    if not (isinstance(cls, type) and issubclass(cls, QtWidgets.QWidget)):
        raise TypeError(f"register_widget_class needs a QWidget subclass, got {cls!r}")
    _widget_classes[cls.__name__] = cls
    return cls


class _Connection(NamedTuple):
    sender: str
    signal: str
    receiver: str
    slot: str


def _number(text: str, enums: Dict[str, int]) -> int:
    value = 0
    for token in (t.strip() for t in text.split("|")):
        value |= enums[token]  # KeyError: not a value the stand-in knows
    return value


def _translate_enum_properties(root: ElementTree.Element) -> None:
    """Replace ``<set>``/``<enum>`` values of stand-in properties by numbers (Python properties have no meta-enum)."""
    for widget in root.iter("widget"):
        cls = _widget_classes.get(widget.get("class", ""))
        enums_by_property = getattr(cls, "DESIGNER_ENUMS", {}) if cls is not None else {}
        for prop in list(widget.findall("property")):
            value = prop.find("set")
            if value is None:
                value = prop.find("enum")
            enums = enums_by_property.get(prop.get("name", ""))
            if value is None or enums is None:
                continue
            try:
                number = _number(value.text or "", enums)
            except KeyError:
                logging.warning("Slicer test runtime: %s.%s = %r is not supported; the property is left at its default",
                                widget.get("class"), prop.get("name"), value.text)
                widget.remove(prop)
                continue
            prop.remove(value)
            ElementTree.SubElement(prop, "number").text = str(number)


def _take_connections(root: ElementTree.Element) -> List[_Connection]:
    connections = []
    for element in root.findall("connections"):
        for connection in element.findall("connection"):
            connections.append(_Connection(*(connection.findtext(tag, "") for tag in ("sender", "signal",
                                                                                       "receiver", "slot"))))
        root.remove(element)
    return connections


def _check_classes(root: ElementTree.Element, available: Iterable[str]) -> None:
    unknown = sorted({w.get("class", "") for w in root.iter("widget")} - set(available) - {"", "Line"})
    if unknown:
        raise RuntimeError(
            f"The UI uses {', '.join(unknown)}, which the Slicer test runtime does not provide. Add a stand-in class "
            "(slicer_test_runtime.register_widget_class) or use a widget the runtime has (see Testing/README.md).")


class QUiLoader(QtUiTools.QUiLoader):
    """``qt.QUiLoader`` of the runtime: loads Slicer designer files with the CTK/MRML stand-ins."""

    def __init__(self, parent: Optional[QtCore.QObject] = None) -> None:
        super().__init__(parent)
        for cls in _widget_classes.values():
            self.registerCustomWidget(cls)

    def load(self, source: Union[QtCore.QIODevice, str], parentWidget: Optional[QtWidgets.QWidget] = None):
        if isinstance(source, str):
            with open(source, "rb") as stream:
                data = stream.read()
        else:
            data = bytes(source.readAll().data())
        root = ElementTree.fromstring(data)
        _check_classes(root, self.availableWidgets())
        _translate_enum_properties(root)
        connections = _take_connections(root)
        buffer = QtCore.QBuffer()
        buffer.setData(QtCore.QByteArray(ElementTree.tostring(root, encoding="utf-8")))
        buffer.open(QtCore.QIODevice.ReadOnly)
        widget = super().load(buffer, parentWidget)
        if widget is None:
            return None
        objects = [widget] + widget.findChildren(QtCore.QObject)
        for obj in objects:
            pythonqt.enable_signature_connect(obj)
        # PySide6 forgets the Python wrapper of an object created in C++ once nothing references it; keep them with
        # the UI so that what was set on them (PythonQt-style connect) is what slicer.util.childWidgetVariables gets.
        widget.__dict__["_slicerTestRuntimeObjects"] = objects
        self._connect(widget, objects, connections)
        return widget

    @staticmethod
    def _connect(widget: QtWidgets.QWidget, objects: Iterable[QtCore.QObject], connections: List[_Connection]) -> None:
        byName = {obj.objectName(): obj for obj in reversed(list(objects)) if obj.objectName()}
        for connection in connections:
            sender, receiver = byName.get(connection.sender), byName.get(connection.receiver)
            if sender is None or receiver is None:
                raise RuntimeError(f"UI connection {connection} names an object the UI does not have")
            pythonqt.connect_by_signature(sender, connection.signal, receiver, connection.slot)


def build_qt_module() -> types.ModuleType:
    """A fresh module named ``qt`` holding every public PySide6 QtCore/QtGui/QtWidgets/QtUiTools name."""
    module = types.ModuleType("qt", "PySide6 QtCore, QtGui, QtWidgets and QtUiTools in one namespace, as PythonQt's "
                                    "qt module (SlicerMedNets test runtime).")
    for source in QT_SOURCE_MODULES:
        for name in dir(source):
            if not name.startswith("_"):
                setattr(module, name, getattr(source, name))
    module.QUiLoader = QUiLoader
    return module
