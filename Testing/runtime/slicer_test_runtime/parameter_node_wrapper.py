"""``slicer.parameterNodeWrapper`` of the runtime: typed access to a module's parameter node and GUI binding.

A faithful subset of Slicer's ``Base/Python/slicer/parameterNodeWrapper``::

    @parameterNodeWrapper
    class ThresholdParameterNode:
        inputVolume: vtkMRMLScalarVolumeNode
        threshold: Annotated[float, WithinRange(-100, 500)] = 100
        invert: bool = False

    parameters = ThresholdParameterNode(logic.getParameterNode())
    parameters.threshold = 20          # validated, stored as the string "20" in the vtkMRMLScriptedModuleNode
    tag = parameters.connectGui(ui)    # widgets whose dynamic property SlicerParameterName names a parameter

Supported parameter types: ``int``, ``float``, ``bool``, ``str``, ``pathlib`` paths, ``enum.Enum`` subclasses, MRML
node classes, ``Optional``/``Union`` of node classes, and ``list[T]`` of those scalar types; annotations
``WithinRange``, ``Minimum``, ``Maximum``, ``Choice``, ``Exclude``, ``NotNone``, ``IsInstance``, ``Default``,
``Decimals``, ``SingleStep``. Values are stored as Slicer stores them (numbers with ``str``, booleans as
``"True"``/``"False"``, enums by member name, nodes as node references named after the parameter, lists as
``name.len`` + ``name.<i>``), so the same module code reads the same parameter node in both. Not provided:
``parameterPack``, ``FloatRange``, dictionaries, tuples and unions of non-node types, which raise ``TypeError`` when the
class is decorated.

GUI connectors (widget type <-> parameter type): QCheckBox/ctkCheckBox and checkable QPushButton <-> bool; QSpinBox,
QSlider <-> int; QDoubleSpinBox, ctkDoubleSpinBox, ctkSliderWidget <-> float or int (range, decimals and single step
taken from the annotations); QComboBox/ctkComboBox <-> Enum or a ``Choice``-annotated value; QLineEdit, QTextEdit,
QPlainTextEdit, QLabel (display only) <-> str; ctkPathLineEdit, ctkDirectoryButton <-> path; qMRMLNodeComboBox <-> node
(its ``nodeTypes`` are set from the annotation). More can be registered with :func:`parameterNodeGuiConnector`.
"""

from __future__ import annotations

import abc
import collections.abc
import dataclasses
import enum
import pathlib
import typing
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import vtk
from PySide6 import QtWidgets

import slicer

from .ctk_widgets import ctkCheckBox, ctkComboBox, ctkDirectoryButton, ctkDoubleSpinBox, ctkPathLineEdit, ctkSliderWidget
from .mrml_widgets import qMRMLNodeComboBox

__all__ = [
    "parameterNodeWrapper", "isParameterNodeWrapper", "SlicerParameterNamePropertyName", "findChildWidgetForParameter",
    "Validator", "NotNone", "IsInstance", "WithinRange", "Minimum", "Maximum", "Choice", "Exclude",
    "Default", "Decimals", "SingleStep",
    "GuiConnector", "parameterNodeGuiConnector", "createGuiConnector",
    "ObservedList",
]

SlicerParameterNamePropertyName = "SlicerParameterName"
_PATH_TYPES = (pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath, pathlib.PurePosixPath,
               pathlib.PureWindowsPath)


# ----------------------------------------------------------------------------------------------------------- annotations

class Validator(abc.ABC):
    """An invariant of one parameter; :meth:`validate` raises ``ValueError``/``TypeError`` for a bad value."""

    @abc.abstractmethod
    def validate(self, value: Any) -> None:
        ...


class NotNone(Validator):
    def validate(self, value: Any) -> None:
        if value is None:
            raise ValueError("Value must not be None")


class IsInstance(Validator):
    def __init__(self, classtype: Any) -> None:
        self.classtype = classtype

    def validate(self, value: Any) -> None:
        if value is not None and not isinstance(value, self.classtype):
            raise TypeError(f"Value must be of type '{self.classtype}', is type '{type(value)}' value '{value}'")


class WithinRange(Validator):
    def __init__(self, minimum: Any, maximum: Any) -> None:
        self.minimum, self.maximum = minimum, maximum

    def __repr__(self) -> str:
        return f"WithinRange({self.minimum}, {self.maximum})"

    def validate(self, value: Any) -> None:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value must be within range [{self.minimum}, {self.maximum}], is {value}")


class Minimum(Validator):
    def __init__(self, minimum: Any) -> None:
        self.minimum = minimum

    def validate(self, value: Any) -> None:
        if value < self.minimum:
            raise ValueError(f"Value must be at least {self.minimum}, is {value}")


class Maximum(Validator):
    def __init__(self, maximum: Any) -> None:
        self.maximum = maximum

    def validate(self, value: Any) -> None:
        if value > self.maximum:
            raise ValueError(f"Value must be at most {self.maximum}, is {value}")


class Choice(Validator):
    def __init__(self, choices: Sequence[Any]) -> None:
        self.choices = choices

    def validate(self, value: Any) -> None:
        if value not in self.choices:
            raise ValueError(f"Value is {value}, but must be in one of the following: {self.choices}")


class Exclude(Validator):
    def __init__(self, excludedValues: Sequence[Any]) -> None:
        self.excludedValues = excludedValues

    def validate(self, value: Any) -> None:
        if value in self.excludedValues:
            raise ValueError(f"Value is {value}, but must not be an excluded value: {self.excludedValues}")


class Default:
    """Annotation giving a parameter's default (``generator`` is called each time a default is needed)."""

    def __init__(self, value: Any = None, *, generator: Optional[Callable[[], Any]] = None) -> None:
        self._value, self._generator = value, generator

    @property
    def value(self) -> Any:
        return self._generator() if self._generator else self._value


@dataclasses.dataclass
class Decimals:
    """Annotation: decimals shown by a spin box or slider bound to the parameter."""

    value: int


@dataclasses.dataclass
class SingleStep:
    """Annotation: single step of a spin box or slider bound to the parameter."""

    value: float


def _split_annotations(annotated: Any) -> Tuple[Any, Tuple[Any, ...]]:
    if typing.get_origin(annotated) is typing.Annotated:
        base, *annotations = typing.get_args(annotated)
        return base, tuple(annotations)
    return annotated, ()


def _first(annotations: Sequence[Any], kind: type) -> Any:
    return next((a for a in annotations if isinstance(a, kind)), None)


def _node_classes(type_: Any) -> Optional[Tuple[type, ...]]:
    """The MRML node classes of a node type or of a Union of node types (with or without None); else None."""
    if isinstance(type_, type) and issubclass(type_, slicer.vtkMRMLNode):
        return (type_,)
    if typing.get_origin(type_) is typing.Union or type(type_).__name__ == "UnionType":
        members = [a for a in typing.get_args(type_) if a is not type(None)]
        if members and all(isinstance(a, type) and issubclass(a, slicer.vtkMRMLNode) for a in members):
            return tuple(members)
    return None


# ----------------------------------------------------------------------------------------------------------- storage

class _Serializer:
    """Reads and writes one parameter type in a vtkMRMLScriptedModuleNode, the way Slicer stores it."""

    validators: List[Validator] = []

    def default(self) -> Any:
        raise NotImplementedError

    def isIn(self, node: Any, name: str) -> bool:
        return node.HasParameter(name)

    def write(self, node: Any, name: str, value: Any) -> None:
        node.SetParameter(name, str(value))

    def read(self, node: Any, name: str) -> Any:
        return node.GetParameter(name)

    def remove(self, node: Any, name: str) -> None:
        node.UnsetParameter(name)

    def validate(self, value: Any) -> None:
        for validator in self.validators:
            validator.validate(value)


class _NumberSerializer(_Serializer):
    def __init__(self, type_: type) -> None:
        self.type = type_
        self.validators = [NotNone(), IsInstance((int, float) if type_ is float else int)]

    def default(self) -> Any:
        return 0

    def read(self, node: Any, name: str) -> Any:
        return self.type(node.GetParameter(name))


class _StringSerializer(_Serializer):
    validators = [NotNone(), IsInstance(str)]

    def default(self) -> str:
        return ""


class _BoolSerializer(_Serializer):
    validators = [NotNone(), IsInstance(bool)]

    def default(self) -> bool:
        return False

    def write(self, node: Any, name: str, value: bool) -> None:
        node.SetParameter(name, "True" if value else "False")

    def read(self, node: Any, name: str) -> bool:
        return node.GetParameter(name) == "True"


class _PathSerializer(_Serializer):
    def __init__(self, type_: type) -> None:
        self.type = type_
        self.validators = [NotNone(), IsInstance(type_)]

    def default(self) -> Any:
        return self.type()

    def read(self, node: Any, name: str) -> Any:
        return self.type(node.GetParameter(name))


class _EnumSerializer(_Serializer):
    def __init__(self, type_: type) -> None:
        if len(type_) == 0:
            raise TypeError(f"Cannot store an empty Enum ({type_.__name__}) in a parameter node")
        self.type = type_
        self.validators = [IsInstance(type_)]

    def default(self) -> Any:
        return next(iter(self.type))

    def write(self, node: Any, name: str, value: Any) -> None:
        node.SetParameter(name, value.name)

    def read(self, node: Any, name: str) -> Any:
        key = node.GetParameter(name)
        try:
            return self.type[key]
        except KeyError:
            raise ValueError(f"Found {key!r} in parameter node but it is not a name in {self.type!r}") from None


class _NodeSerializer(_Serializer):
    def __init__(self, classes: Tuple[type, ...]) -> None:
        self.classes = classes
        self.validators = [IsInstance(classes)]

    def default(self) -> None:
        return None

    def write(self, node: Any, name: str, value: Any) -> None:
        node.SetParameter(name, "")  # marks the parameter as present even when the reference is None
        node.SetNodeReferenceID(name, value.GetID() if value is not None else None)

    def read(self, node: Any, name: str) -> Any:
        return node.GetNodeReference(name)

    def remove(self, node: Any, name: str) -> None:
        node.UnsetParameter(name)
        node.RemoveNodeReferenceIDs(name)


class ObservedList(collections.abc.MutableSequence):
    """A list parameter's value: changing it (``append``, ``[i] = x``, ``del``...) writes it back to the node."""

    def __init__(self, node: Any, serializer: "_ListSerializer", name: str, items: List[Any]) -> None:
        self._node, self._serializer, self._name, self._list = node, serializer, name, items

    def _save(self) -> None:
        self._serializer.validate(self._list)
        with slicer.util.NodeModify(self._node):
            self._serializer.write(self._node, self._name, self._list)

    def __repr__(self) -> str:
        return f"ObservedList({self._list!r})"

    def __eq__(self, other: Any) -> bool:
        return self._list == (other._list if isinstance(other, ObservedList) else other)

    def __len__(self) -> int:
        return len(self._list)

    def __getitem__(self, index: Any) -> Any:
        return self._list[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        self._list[index] = value
        self._save()

    def __delitem__(self, index: Any) -> None:
        del self._list[index]
        self._save()

    def insert(self, index: int, value: Any) -> None:
        self._list.insert(index, value)
        self._save()


class _ListSerializer(_Serializer):
    def __init__(self, element: _Serializer) -> None:
        self.element = element
        self.validators = [NotNone()]

    def validate(self, value: Any) -> None:
        super().validate(value)
        for item in value:
            self.element.validate(item)

    def default(self) -> List[Any]:
        return []

    def isIn(self, node: Any, name: str) -> bool:
        return node.HasParameter(f"{name}.len")

    def write(self, node: Any, name: str, value: Any) -> None:
        oldLength = int(node.GetParameter(f"{name}.len") or 0) if self.isIn(node, name) else 0
        for index, item in enumerate(value):
            self.element.write(node, f"{name}.{index}", item)
        for index in range(len(value), oldLength):
            self.element.remove(node, f"{name}.{index}")
        node.SetParameter(f"{name}.len", str(len(value)))

    def read(self, node: Any, name: str) -> ObservedList:
        length = int(node.GetParameter(f"{name}.len") or 0)
        return ObservedList(node, self, name, [self.element.read(node, f"{name}.{i}") for i in range(length)])

    def remove(self, node: Any, name: str) -> None:
        for index in range(int(node.GetParameter(f"{name}.len") or 0)):
            self.element.remove(node, f"{name}.{index}")
        node.UnsetParameter(f"{name}.len")


def _serializer_for(type_: Any) -> _Serializer:
    if type_ in (int, float):
        return _NumberSerializer(type_)
    if type_ is bool:
        return _BoolSerializer()
    if type_ is str:
        return _StringSerializer()
    if type_ in _PATH_TYPES:
        return _PathSerializer(type_)
    if isinstance(type_, type) and issubclass(type_, enum.Enum):
        return _EnumSerializer(type_)
    nodeClasses = _node_classes(type_)
    if nodeClasses is not None:
        return _NodeSerializer(nodeClasses)
    if typing.get_origin(type_) is list and len(typing.get_args(type_)) == 1:
        element = _serializer_for(_split_annotations(typing.get_args(type_)[0])[0])
        if not isinstance(element, _ListSerializer):
            return _ListSerializer(element)
    raise TypeError(f"The Slicer test runtime's parameterNodeWrapper cannot store parameters of type {type_!r} "
                    "(see slicer_test_runtime.parameter_node_wrapper for the supported types)")


@dataclasses.dataclass
class ParameterInfo:
    """What the wrapper knows about one parameter."""

    name: str
    annotatedType: Any
    baseType: Any
    annotations: Tuple[Any, ...]
    serializer: _Serializer
    validators: List[Validator]
    default: Default

    def validate(self, value: Any) -> None:
        self.serializer.validate(value)
        for validator in self.validators:
            validator.validate(value)


# ----------------------------------------------------------------------------------------------------------- GUI

class GuiConnector(abc.ABC):
    """Adapts one widget to one parameter type: :meth:`read`/:meth:`write` the value, :meth:`signal` on change."""

    @staticmethod
    @abc.abstractmethod
    def canRepresent(widget: Any, datatype: Any) -> bool:
        ...

    def __init__(self, widget: Any, datatype: Any) -> None:
        self._widget = widget
        self.baseType, self.annotations = _split_annotations(datatype)

    def widget(self) -> Any:
        return self._widget

    @abc.abstractmethod
    def signal(self) -> Any:
        """The widget's bound signal emitted when the user changes the value (``None``: display only)."""

    @abc.abstractmethod
    def read(self) -> Any:
        ...

    @abc.abstractmethod
    def write(self, value: Any) -> None:
        ...

    def _range(self) -> Tuple[Optional[float], Optional[float]]:
        withinRange = _first(self.annotations, WithinRange)
        if withinRange is not None:
            return withinRange.minimum, withinRange.maximum
        minimum, maximum = _first(self.annotations, Minimum), _first(self.annotations, Maximum)
        return (minimum.minimum if minimum else None), (maximum.maximum if maximum else None)


_connectors: List[type] = []


def parameterNodeGuiConnector(classtype: Optional[type] = None) -> Any:
    """Class decorator registering a :class:`GuiConnector` (tried before the built-in ones)."""

    def register(cls: type) -> type:
        if not issubclass(cls, GuiConnector):
            raise TypeError("parameterNodeGuiConnector needs a GuiConnector subclass")
        _connectors.insert(0, cls)
        return cls

    return register if classtype is None else register(classtype)


def createGuiConnector(widget: Any, datatype: Any) -> GuiConnector:
    for connector in _connectors:
        if connector.canRepresent(widget, datatype):
            return connector(widget, datatype)
    raise RuntimeError(f"Unable to create GUI connector from datatype '{datatype}' to widget type '{type(widget)}'")


@parameterNodeGuiConnector
class _CheckBoxConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget: Any, datatype: Any) -> bool:
        return _split_annotations(datatype)[0] is bool and type(widget) in (QtWidgets.QCheckBox, ctkCheckBox)

    def signal(self) -> Any:
        return self._widget.toggled

    def read(self) -> bool:
        return self._widget.isChecked()

    def write(self, value: bool) -> None:
        self._widget.setChecked(bool(value))


@parameterNodeGuiConnector
class _CheckablePushButtonConnector(_CheckBoxConnector):
    @staticmethod
    def canRepresent(widget: Any, datatype: Any) -> bool:
        return _split_annotations(datatype)[0] is bool and type(widget) is QtWidgets.QPushButton

    def __init__(self, widget: Any, datatype: Any) -> None:
        super().__init__(widget, datatype)
        widget.setCheckable(True)


@parameterNodeGuiConnector
class _IntegerSpinBoxConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget: Any, datatype: Any) -> bool:
        return _split_annotations(datatype)[0] is int and type(widget) in (QtWidgets.QSpinBox, QtWidgets.QSlider)

    def __init__(self, widget: Any, datatype: Any) -> None:
        super().__init__(widget, datatype)
        minimum, maximum = self._range()
        if type(widget) is QtWidgets.QSlider and (minimum is None or maximum is None):
            raise RuntimeError("Cannot have a connection to QSlider where the int type is unbounded.")
        widget.setRange(int(minimum) if minimum is not None else -(2 ** 31), int(maximum) if maximum is not None else 2 ** 31 - 1)
        singleStep = _first(self.annotations, SingleStep)
        if singleStep is not None:
            widget.setSingleStep(int(singleStep.value))

    def signal(self) -> Any:
        return self._widget.valueChanged

    def read(self) -> int:
        return int(self._widget.property("value"))

    def write(self, value: int) -> None:
        self._widget.setValue(int(value))


@parameterNodeGuiConnector
class _DoubleSpinBoxSliderConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget: Any, datatype: Any) -> bool:
        return (_split_annotations(datatype)[0] in (float, int)
                and type(widget) in (QtWidgets.QDoubleSpinBox, ctkDoubleSpinBox, ctkSliderWidget))

    def __init__(self, widget: Any, datatype: Any) -> None:
        super().__init__(widget, datatype)
        self._isInteger = self.baseType is int
        decimals = _first(self.annotations, Decimals)
        if self._isInteger:
            widget.setDecimals(0)
        elif decimals is not None:
            widget.setDecimals(decimals.value)
        singleStep = _first(self.annotations, SingleStep)
        if singleStep is not None:
            widget.setSingleStep(singleStep.value)
        minimum, maximum = self._range()
        if type(widget) is ctkSliderWidget and (minimum is None or maximum is None):
            raise RuntimeError("Cannot have a connection to ctkSliderWidget where the float types is unbounded.")
        widget.setMinimum(float(minimum) if minimum is not None else float("-inf"))
        widget.setMaximum(float(maximum) if maximum is not None else float("inf"))

    def signal(self) -> Any:
        return self._widget.valueChanged

    def read(self) -> Any:
        value = float(self._widget.property("value"))
        return int(value) if self._isInteger else value

    def write(self, value: Any) -> None:
        self._widget.setValue(float(value))


@parameterNodeGuiConnector
class _ComboBoxConnector(GuiConnector):
    """Enum members (labelled by the enum's ``label(member)`` if it has one, else by name) or ``Choice`` values."""

    @staticmethod
    def canRepresent(widget: Any, datatype: Any) -> bool:
        baseType, annotations = _split_annotations(datatype)
        isEnum = isinstance(baseType, type) and issubclass(baseType, enum.Enum)
        return type(widget) in (QtWidgets.QComboBox, ctkComboBox) and (isEnum or (
            baseType in (int, float, str, bool) and _first(annotations, Choice) is not None))

    def __init__(self, widget: Any, datatype: Any) -> None:
        super().__init__(widget, datatype)
        if isinstance(self.baseType, type) and issubclass(self.baseType, enum.Enum):
            label = getattr(self.baseType, "label", lambda member: member.name)
            self._items = [(label(member), member) for member in self.baseType]
        else:
            self._items = [(str(choice), choice) for choice in _first(self.annotations, Choice).choices]
        blocked = widget.blockSignals(True)
        widget.clear()
        for text, _ in self._items:
            widget.addItem(text)
        widget.blockSignals(blocked)

    def signal(self) -> Any:
        return self._widget.currentIndexChanged

    def read(self) -> Any:
        return self._items[self._widget.currentIndex()][1]

    def write(self, value: Any) -> None:
        for index, (_, item) in enumerate(self._items):
            if item == value:
                self._widget.setCurrentIndex(index)
                return
        raise ValueError(f"Unable to find value {value!r} in choices {[item for _, item in self._items]}")


@parameterNodeGuiConnector
class _LineEditConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget: Any, datatype: Any) -> bool:
        return _split_annotations(datatype)[0] is str and type(widget) is QtWidgets.QLineEdit

    def signal(self) -> Any:
        return self._widget.textChanged

    def read(self) -> str:
        return self._widget.text()

    def write(self, value: str) -> None:
        if value != self._widget.text():  # rewriting the same text would move the cursor
            self._widget.setText(value)


@parameterNodeGuiConnector
class _TextEditConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget: Any, datatype: Any) -> bool:
        return _split_annotations(datatype)[0] is str and type(widget) in (QtWidgets.QTextEdit, QtWidgets.QPlainTextEdit)

    def signal(self) -> Any:
        return self._widget.textChanged

    def read(self) -> str:
        return self._widget.toPlainText()

    def write(self, value: str) -> None:
        if value != self._widget.toPlainText():
            self._widget.setPlainText(value)


@parameterNodeGuiConnector
class _LabelConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget: Any, datatype: Any) -> bool:
        return _split_annotations(datatype)[0] is str and type(widget) is QtWidgets.QLabel

    def signal(self) -> None:
        return None

    def read(self) -> str:
        return self._widget.text()

    def write(self, value: str) -> None:
        self._widget.setText(value)


@parameterNodeGuiConnector
class _PathConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget: Any, datatype: Any) -> bool:
        return _split_annotations(datatype)[0] in _PATH_TYPES and type(widget) in (ctkPathLineEdit, ctkDirectoryButton)

    def _attribute(self) -> str:
        return "currentPath" if type(self._widget) is ctkPathLineEdit else "directory"

    def signal(self) -> Any:
        return self._widget.currentPathChanged if type(self._widget) is ctkPathLineEdit else self._widget.directoryChanged

    def read(self) -> Any:
        return self.baseType(self._widget.property(self._attribute()))

    def write(self, value: Any) -> None:
        self._widget.setProperty(self._attribute(), str(value))


@parameterNodeGuiConnector
class _NodeComboBoxConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget: Any, datatype: Any) -> bool:
        return type(widget) is qMRMLNodeComboBox and _node_classes(_split_annotations(datatype)[0]) is not None

    def __init__(self, widget: Any, datatype: Any) -> None:
        super().__init__(widget, datatype)
        widget.setNodeTypes([cls.__name__ for cls in _node_classes(self.baseType)])

    def signal(self) -> Any:
        return self._widget.currentNodeChanged[object]

    def read(self) -> Any:
        return self._widget.currentNode()

    def write(self, value: Any) -> None:
        self._widget.setCurrentNode(value)


# ----------------------------------------------------------------------------------------------------------- wrapper

_RESERVED = ("allParameters", "parameterNode", "default", "dataType", "getValue", "setValue", "isCached",
             "connectGui", "connectParametersToGui", "disconnectGui", "StartModify", "EndModify", "AddObserver",
             "RemoveObserver", "Modified")


def findChildWidgetForParameter(widget: QtWidgets.QWidget, parameterName: str) -> Optional[QtWidgets.QWidget]:
    """The child of ``widget`` whose ``SlicerParameterName`` dynamic property is ``parameterName``."""
    for child in widget.findChildren(QtWidgets.QWidget):
        if child.property(SlicerParameterNamePropertyName) == parameterName:
            return child
    return None


def _widgets_by_parameter(gui: Any) -> Dict[str, Any]:
    if isinstance(gui, QtWidgets.QWidget):
        candidates = gui.findChildren(QtWidgets.QWidget)
    else:  # the object returned by slicer.util.childWidgetVariables
        candidates = [w for w in vars(gui).values() if isinstance(w, QtWidgets.QWidget)]
    mapping = {}
    for widget in candidates:
        name = widget.property(SlicerParameterNamePropertyName)
        if name:
            mapping[str(name)] = widget
    return mapping


class _WrapperMethods:
    """Methods added to every ``@parameterNodeWrapper`` class."""

    allParameters: Dict[str, ParameterInfo]

    def __init__(self, parameterNode: Any) -> None:
        if parameterNode is None:
            raise ValueError(f"{type(self).__name__} needs a parameter node (vtkMRMLScriptedModuleNode), got None")
        self.parameterNode = parameterNode
        self._guiConnections: Dict[int, Tuple[List[Tuple[str, GuiConnector, Any]], int]] = {}
        self._nextGuiTag = 0
        self._updatingGui = False
        for info in self.allParameters.values():
            if not info.serializer.isIn(parameterNode, info.name):
                self._writeDefault(info)

    def _writeDefault(self, info: ParameterInfo) -> None:
        value = info.default.value
        info.validate(value)
        info.serializer.write(self.parameterNode, info.name, value)

    def _info(self, name: str) -> ParameterInfo:
        if name not in self.allParameters:
            raise ValueError(f"Cannot find a param with the given name: {name}; parameters are {list(self.allParameters)}")
        return self.allParameters[name]

    def getValue(self, name: str) -> Any:
        info = self._info(name)
        if not info.serializer.isIn(self.parameterNode, name):
            self._writeDefault(info)  # e.g. after the scene was closed, which clears the parameter node
        return info.serializer.read(self.parameterNode, name)

    def setValue(self, name: str, value: Any) -> None:
        info = self._info(name)
        info.validate(value)
        with slicer.util.NodeModify(self.parameterNode):
            info.serializer.write(self.parameterNode, name, value)

    def default(self, name: str) -> Default:
        return self._info(name).default

    def dataType(self, name: str) -> Any:
        return self._info(name).annotatedType

    def isCached(self, name: str) -> bool:
        self._info(name)
        return False

    def connectGui(self, gui: Any) -> int:
        """Bind every widget of ``gui`` (a widget or a ``childWidgetVariables`` object) that has the dynamic property
        ``SlicerParameterName`` to that parameter, both ways; return a tag for :meth:`disconnectGui`."""
        return self.connectParametersToGui(_widgets_by_parameter(gui))

    def connectParametersToGui(self, mapping: Dict[str, Any]) -> int:
        connections = []
        for name, widget in mapping.items():
            info = self._info(name)
            connector = widget if isinstance(widget, GuiConnector) else createGuiConnector(widget, info.annotatedType)
            connector.write(self.getValue(name))
            slot = self._makeGuiSlot(name, connector)
            if connector.signal() is not None:
                connector.signal().connect(slot)
            connections.append((name, connector, slot))
        tag = self._nextGuiTag
        self._nextGuiTag += 1
        observer = self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: self._updateGui())
        self._guiConnections[tag] = (connections, observer)
        return tag

    def _makeGuiSlot(self, name: str, connector: GuiConnector) -> Callable[..., None]:
        def onGuiChanged(*args: Any) -> None:
            if not self._updatingGui:
                self.setValue(name, connector.read())

        return onGuiChanged

    def _updateGui(self) -> None:
        if self._updatingGui:
            return
        self._updatingGui = True
        try:
            for connections, _ in list(self._guiConnections.values()):
                for name, connector, _ in connections:
                    connector.write(self.getValue(name))
        finally:
            self._updatingGui = False

    def disconnectGui(self, tag: Optional[int]) -> None:
        if tag not in self._guiConnections:
            return
        connections, observer = self._guiConnections.pop(tag)
        for _, connector, slot in connections:
            if connector.signal() is not None:
                connector.signal().disconnect(slot)
        self.parameterNode.RemoveObserver(observer)

    def StartModify(self) -> int:
        return self.parameterNode.StartModify()

    def EndModify(self, wasModified: int) -> int:
        return self.parameterNode.EndModify(wasModified)

    def AddObserver(self, event: Any, callback: Callable, priority: float = 0.0) -> int:
        return self.parameterNode.AddObserver(event, callback, priority)

    def RemoveObserver(self, tag: int) -> None:
        self.parameterNode.RemoveObserver(tag)

    def Modified(self) -> None:
        self.parameterNode.Modified()


def _parameter_property(name: str) -> property:
    return property(lambda self: self.getValue(name), lambda self, value: self.setValue(name, value))


def _process_class(cls: type) -> type:
    """Turn the annotated class into a wrapper in place (as Slicer does): one property per parameter plus the
    wrapper methods; a class attribute gives the parameter's default."""
    for reserved in _RESERVED + ("_is_parameter_node_wrapper",):
        if reserved in cls.__dict__:
            raise ValueError(f"Cannot use reserved name '{reserved}' in a parameterNodeWrapper")
    parameters: Dict[str, ParameterInfo] = {}
    for name, annotated in typing.get_type_hints(cls, include_extras=True).items():
        baseType, annotations = _split_annotations(annotated)
        try:
            serializer = _serializer_for(baseType)
        except TypeError as error:
            raise TypeError(f"{cls.__name__}.{name}: {error}") from None
        if name in cls.__dict__:
            default = Default(cls.__dict__[name])
        else:
            default = _first(annotations, Default) or Default(serializer.default())
        parameters[name] = ParameterInfo(name, annotated, baseType, annotations, serializer,
                                         [a for a in annotations if isinstance(a, Validator)], default)
        setattr(cls, name, _parameter_property(name))
    for attribute, value in vars(_WrapperMethods).items():
        if callable(value):
            setattr(cls, attribute, value)
    cls.allParameters = parameters
    cls._is_parameter_node_wrapper = True
    return cls


def parameterNodeWrapper(classtype: Optional[type] = None) -> Any:
    """Class decorator: typed, validated access to a ``vtkMRMLScriptedModuleNode`` (see the module docstring)."""
    return _process_class if classtype is None else _process_class(classtype)


def isParameterNodeWrapper(classOrObject: Any) -> bool:
    return bool(getattr(classOrObject, "_is_parameter_node_wrapper", False))
