"""PythonQt's view of Qt objects, on top of PySide6, for code written for 3D Slicer.

Inside Slicer, Qt objects are wrapped by PythonQt, which differs from PySide6 in ways scripted modules rely on:

* every Qt property is a Python attribute: ``button.enabled = False``, ``slider.value``, ``checkBox.checked``;
* a property wins over a getter method of the same name: ``lineEdit.text`` is a ``str`` (so ``lineEdit.text()``
  raises ``TypeError: 'str' object is not callable``), ``comboBox.currentIndex`` is an ``int``;
* ``obj.name`` is the object name;
* ``obj.connect("clicked(bool)", callable)`` connects by C++ signature (as in Slicer's module template).

PySide6 keeps getters as methods. This module gives **Slicer code** PythonQt's view and leaves everything else
(PySide6 itself, matplotlib's Qt backend, this runtime's own code) with PySide6's: each Qt property of each QObject
class of QtCore/QtGui/QtWidgets becomes a descriptor that looks at the module globals of the code accessing it.
Slicer code is code whose module imported ``slicer``, ``qt`` or ``ctk`` (scripted modules, their ``Lib`` packages,
tests written against the Slicer API, ``slicer.util``), or a module the loader registered with
:func:`register_slicer_code`. So a module that runs here reads and writes widgets exactly as it will in Slicer, and a
module that would fail in Slicer (``lineEdit.text()``) fails here too.

String-signature ``connect``/``disconnect`` (PythonQt's ``button.connect("clicked(bool)", slot)``) work on the runtime's
stand-in widgets, on ``slicer.app`` and on every object of a UI loaded through ``slicer.util.loadUI``. Shiboken answers
``obj.connect`` itself for PySide6 classes, so a native widget created in Python code (``qt.QPushButton()``) only has
PySide6's ``connect``: connect it with ``button.clicked.connect(slot)``, which works in both Slicer and PySide6.
"""

from __future__ import annotations

import ctypes
import re
import sys
import types
import weakref
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from PySide6 import QtCore

__all__ = [
    "install",
    "register_slicer_code",
    "set_slicer_namespaces",
    "is_slicer_code",
    "connect_by_signature",
    "disconnect_by_signature",
    "signal_by_signature",
    "enable_signature_connect",
    "SignatureConnectMixin",
    "QtPropertyAttribute",
    "protect_singletons_from_pyside_refcount_bug",
]

_RUNTIME_PACKAGE = __name__.split(".")[0]
_MISSING = object()
_slicer_namespaces: Dict[str, Any] = {}  # "qt"/"ctk"/"slicer" -> the module object code must have imported
_slicer_module_names: set = set()
_installed = False

_ORIGINAL_CONNECT = QtCore.QObject.connect
_ORIGINAL_DISCONNECT = QtCore.QObject.disconnect
_OBJECT_NAME = QtCore.QObject.objectName
_SET_OBJECT_NAME = QtCore.QObject.setObjectName


def set_slicer_namespaces(**modules: Any) -> None:
    """Declare the module objects (``qt=..., ctk=..., slicer=...``) whose import marks a module as Slicer code."""
    _slicer_namespaces.update(modules)


def register_slicer_code(module_name: str) -> None:
    """Give the module named ``module_name`` PythonQt's view even if it imports none of slicer/qt/ctk."""
    _slicer_module_names.add(module_name)


def is_slicer_code(module_globals: Dict[str, Any]) -> bool:
    """Whether code running with these module globals sees Qt objects the PythonQt way."""
    name = module_globals.get("__name__") or ""
    if name.startswith(_RUNTIME_PACKAGE):
        return False
    if name in _slicer_module_names or name.startswith("slicer."):
        return True
    for key, module in _slicer_namespaces.items():
        if module_globals.get(key, _MISSING) is module:
            return True
    return False


def _caller_is_slicer_code(depth: int = 2) -> bool:
    return is_slicer_code(sys._getframe(depth).f_globals)


class QtPropertyAttribute:
    """A Qt property seen as a Python attribute by Slicer code, and as PySide6 shows it to everyone else."""

    __slots__ = ("name", "original", "getters", "setter")

    def __init__(self, name: str, original: Any) -> None:
        self.name = name
        self.original = original  # the class attribute PySide6 has under this name (usually the getter), or None
        capitalized = name[0].upper() + name[1:]
        self.getters = ("is" + capitalized, "has" + capitalized)
        self.setter = "set" + capitalized

    def __repr__(self) -> str:
        return f"<Qt property {self.name!r}>"

    def __get__(self, obj: Any, owner: Optional[type] = None) -> Any:
        if obj is None:
            return self.original.__get__(None, owner) if self.original is not None else self
        if _caller_is_slicer_code():
            return self.read(obj)
        shadow = obj.__dict__.get(self.name, _MISSING)
        if shadow is not _MISSING:
            return shadow
        if self.original is None:
            raise AttributeError(f"'{type(obj).__name__}' object has no attribute '{self.name}'")
        return self.original.__get__(obj, owner)

    def __set__(self, obj: Any, value: Any) -> None:
        if _caller_is_slicer_code():
            self.write(obj, value)
        else:
            obj.__dict__[self.name] = value  # what a plain attribute assignment does on a PySide6 object

    def read(self, obj: Any) -> Any:
        if isinstance(self.original, types.MethodDescriptorType):
            try:
                return self.original.__get__(obj, type(obj))()
            except TypeError:
                pass  # the same-named method needs arguments: not the property getter
        for getter_name in self.getters:
            getter = getattr(obj, getter_name, None)
            if callable(getter):
                return getter()
        return obj.property(self.name)

    def write(self, obj: Any, value: Any) -> None:
        setter = getattr(obj, self.setter, None)
        if callable(setter):
            setter(value)
        elif not obj.setProperty(self.name, value):
            raise AttributeError(f"Qt property '{self.name}' of {type(obj).__name__} is read-only")


class _ObjectNameAlias:
    """PythonQt's ``obj.name``: the object name (Slicer code only)."""

    def __get__(self, obj: Any, owner: Optional[type] = None) -> Any:
        if obj is None:
            return self
        if _caller_is_slicer_code():
            return _OBJECT_NAME(obj)
        shadow = obj.__dict__.get("name", _MISSING)
        if shadow is _MISSING:
            raise AttributeError(f"'{type(obj).__name__}' object has no attribute 'name'")
        return shadow

    def __set__(self, obj: Any, value: Any) -> None:
        if _caller_is_slicer_code():
            _SET_OBJECT_NAME(obj, value)
        else:
            obj.__dict__["name"] = value


def _raw_class_attribute(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            raw = klass.__dict__[name]
            return raw.original if isinstance(raw, QtPropertyAttribute) else raw
    return None


def _qobject_classes(modules: Iterable[types.ModuleType]):
    for module in modules:
        for name in dir(module):  # dir() also loads PySide6's lazily created classes
            value = getattr(module, name, None)
            if isinstance(value, type) and issubclass(value, QtCore.QObject):
                yield value


def _patch_properties(cls: type) -> None:
    """Turn the Qt properties of ``cls`` into descriptors: those it declares, and inherited ones whose getter it
    re-declares (PySide6 repeats overridden virtuals such as ``sizeHint`` in subclasses)."""
    meta = cls.staticMetaObject
    for index in range(meta.propertyCount()):
        name = meta.property(index).name()
        current = cls.__dict__.get(name, _MISSING)
        # type() rather than isinstance(): isinstance(x, QtCore.Signal) is one of the PySide6 6.12 calls that give
        # back False without a reference (see protect_singletons_from_pyside_refcount_bug).
        if type(current) in (QtPropertyAttribute, QtCore.Signal):
            continue
        if index >= meta.propertyOffset() or current is not _MISSING:
            setattr(cls, name, QtPropertyAttribute(name, _raw_class_attribute(cls, name)))


# ------------------------------------------------------------------------------------------- connect by signature

_SIGNATURE = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$")
_PYTHON_TYPES = {"bool": bool, "int": int, "uint": int, "qlonglong": int, "double": float, "float": float,
                 "QString": str}


def _parse_signature(signature: str) -> Tuple[str, Tuple[str, ...]]:
    match = _SIGNATURE.match(signature)
    if not match:
        raise ValueError(f"not a Qt signature (expected e.g. 'clicked(bool)'): {signature!r}")
    arguments = tuple(a.replace("const", "").replace("&", "").strip() for a in match.group(2).split(",") if a.strip())
    return match.group(1), arguments


def signal_by_signature(sender: QtCore.QObject, signature: str) -> Any:
    """The bound signal of ``sender`` that a C++ signature such as ``"currentNodeChanged(vtkMRMLNode*)"`` names."""
    name, arguments = _parse_signature(signature)
    signal = getattr(sender, name, None)
    if signal is None or not hasattr(signal, "connect"):
        raise AttributeError(f"{type(sender).__name__} has no signal '{signature}'")
    if arguments:
        key = tuple(_PYTHON_TYPES.get(a, object) for a in arguments)
        try:
            return signal[key[0] if len(key) == 1 else key]
        except (KeyError, IndexError, TypeError):
            return signal  # a signal with one signature; PySide6 indexes only overloaded ones reliably
    return signal


def _has_cxx_method(obj: QtCore.QObject, signature: str, signal: bool) -> bool:
    normalized = QtCore.QMetaObject.normalizedSignature(signature).data().decode()
    meta = obj.metaObject()
    return (meta.indexOfSignal(normalized) if signal else meta.indexOfMethod(normalized)) >= 0


def connect_by_signature(sender: QtCore.QObject, signature: str, receiver: Any, slot: Optional[str] = None) -> bool:
    """PythonQt-style connection: ``(sender, "sig(args)", callable)`` or ``(sender, "sig(args)", receiver, "slot(args)")``.

    Both ends declared in C++ are connected by Qt itself; otherwise the Python signal/slot objects are used (this is
    how a designer file's ``mrmlSceneChanged(vtkMRMLScene*)`` reaches the Python stand-ins).
    """
    if slot is None:
        if not callable(receiver):
            raise TypeError(f"connect('{signature}', ...) needs a callable or a receiver and a slot signature")
        signal_by_signature(sender, signature).connect(receiver)
        return True
    if _has_cxx_method(sender, signature, signal=True) and _has_cxx_method(receiver, slot, signal=False):
        return bool(_ORIGINAL_CONNECT(sender, QtCore.SIGNAL(signature), receiver, QtCore.SLOT(slot)))
    slot_name, _ = _parse_signature(slot)
    signal_by_signature(sender, signature).connect(getattr(receiver, slot_name))
    return True


def disconnect_by_signature(sender: QtCore.QObject, signature: str, receiver: Optional[Callable] = None) -> bool:
    """PythonQt-style ``obj.disconnect("sig(args)", callable)``; without a callable, every connection of the signal."""
    signal = signal_by_signature(sender, signature)
    try:
        return bool(signal.disconnect(receiver) if receiver is not None else signal.disconnect())
    except (RuntimeError, TypeError):
        return False


def _signature_connect(self: QtCore.QObject, *args: Any, **kwargs: Any) -> Any:
    if args and isinstance(args[0], str) and not args[0][:1].isdigit():
        return connect_by_signature(self, *args)
    return _ORIGINAL_CONNECT(self, *args, **kwargs)


def _signature_disconnect(self: QtCore.QObject, *args: Any, **kwargs: Any) -> Any:
    if args and isinstance(args[0], str) and not args[0][:1].isdigit():
        return disconnect_by_signature(self, *args)
    return _ORIGINAL_DISCONNECT(self, *args, **kwargs)


class SignatureConnectMixin:
    """Gives the runtime's Python Qt classes PythonQt's ``obj.connect("signal(args)", ...)``/``obj.disconnect(...)``.

    Shiboken only honours a ``connect`` defined in a class deriving from a Qt class (not one inherited from a plain
    mixin), so the methods are copied into each subclass.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.connect = _signature_connect
        cls.disconnect = _signature_disconnect


class _InstanceConnect:
    """``connect``/``disconnect`` stored in one PySide6 object's ``__dict__`` (see :func:`enable_signature_connect`)."""

    __slots__ = ("_target", "_method")

    def __init__(self, target: QtCore.QObject, method: Callable) -> None:
        self._target = weakref.ref(target)
        self._method = method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        target = self._target()
        if target is None:
            raise RuntimeError("the Qt object was deleted")
        return self._method(target, *args, **kwargs)


def enable_signature_connect(obj: QtCore.QObject) -> None:
    """Let ``obj.connect("clicked(bool)", slot)`` work on a PySide6 object, as it does in PythonQt.

    Shiboken answers ``obj.connect`` itself for PySide6 classes, ignoring class attributes, so the methods go into
    the instance dictionary; the runtime does this for every object of a UI loaded with ``slicer.util.loadUI`` (and
    keeps those Python wrappers alive with the UI, since PySide6 would otherwise make new ones on the next lookup).
    """
    if getattr(type(obj), "connect", None) is _signature_connect:
        return
    obj.__dict__["connect"] = _InstanceConnect(obj, _signature_connect)
    obj.__dict__["disconnect"] = _InstanceConnect(obj, _signature_disconnect)


_SINGLETON_RESERVE = 1 << 40


def protect_singletons_from_pyside_refcount_bug() -> None:
    """Keep ``None``, ``True`` and ``False`` alive despite PySide6 6.12 releasing references it does not own.

    With PySide6 6.12 on CPython 3.11, every call of a ``void`` Qt method (``button.setChecked(True)``) and every
    ``signal.emit(...)`` takes one reference away from ``None`` or ``True``: after a few thousand calls the
    interpreter aborts with "none_dealloc: deallocating None". CPython 3.12 made these objects immortal, which hides
    the bug; on older CPython their reference counts are raised once by a margin no test run can exhaust.
    """
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return
    for singleton in (None, True, False):
        count = ctypes.c_ssize_t.from_address(id(singleton))  # ob_refcnt is the first field of every PyObject
        if count.value < _SINGLETON_RESERVE:
            count.value += _SINGLETON_RESERVE


def install(modules: Iterable[types.ModuleType]) -> None:
    """Give Slicer code PythonQt's view of every QObject class in ``modules`` (idempotent)."""
    global _installed
    protect_singletons_from_pyside_refcount_bug()
    for cls in _qobject_classes(modules):
        _patch_properties(cls)
    if not _installed:
        QtCore.QObject.name = _ObjectNameAlias()
        _installed = True
