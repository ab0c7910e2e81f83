"""SlicerMedNets' Slicer test runtime: run unchanged 3D Slicer scripted modules under pytest.

``slicer-core`` (PyPI) provides the real MRML library and ``slicer.util``; this package adds what only the Slicer
application has, so that a module's ``<Module>.py``, its ``.ui`` file and its ``<Module>Test`` run as they do in
Slicer started with ``--no-main-window --testing``:

* ``qt`` - PySide6 (offscreen) merged into one module, with PythonQt's view of Qt objects for Slicer code
  (:mod:`.pythonqt`) and a ``QUiLoader`` for Slicer designer files (:mod:`.qt_module`);
* ``ctk`` - CTK widget stand-ins (:mod:`.ctk_widgets`); ``slicer.qMRMLNodeComboBox`` & co. (:mod:`.mrml_widgets`);
* ``slicer.app``, ``slicer.mrmlScene`` (a real scene wired to the core module logics), ``slicer.modules``
  (:mod:`.application`);
* ``slicer.ScriptedLoadableModule`` (:mod:`.scripted_module`), ``slicer.parameterNodeWrapper``
  (:mod:`.parameter_node_wrapper`), ``slicer.i18n`` (:mod:`.i18n`);
* ``slicer.util`` message functions that record what they show (``Runtime.messages``) instead of opening dialogs.

Design: nothing is put on disk under a ``slicer`` or ``qt`` folder; :func:`install` creates the modules and registers
them in ``sys.modules`` and on the ``slicer`` package, once per process. Importing this package installs nothing, so
tests that only use ``slicer-core`` are unaffected until a test asks for the runtime (the pytest fixtures in
:mod:`.pytest_plugin`). See ``Testing/README.md``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from .runtime import REPOSITORY_ROOT, Message, Runtime, install, installed, module_test_names

__all__ = [
    "install", "installed", "Runtime", "Message", "REPOSITORY_ROOT",
    "load_module", "create_widget", "destroy_widget", "run_module_tests", "module_test_names", "pump_events",
    "register_widget_class",
]


def load_module(path: Any) -> Any:
    """Import a scripted module file as Slicer does (see :meth:`Runtime.load_module`); installs the runtime."""
    return install().load_module(path)


def create_widget(moduleName: str, enter: bool = True) -> Any:
    """Build (once) and return the module's Python widget (see :meth:`Runtime.create_widget`)."""
    return install().create_widget(moduleName, enter)


def destroy_widget(moduleName: str) -> None:
    install().destroy_widget(moduleName)


def run_module_tests(moduleName: str, testNames: Optional[Sequence[str]] = None) -> None:
    """Run the module's ``<Module>Test`` (see :meth:`Runtime.run_module_tests`)."""
    install().run_module_tests(moduleName, testNames)


def pump_events(until: Any = None, timeout: float = 10.0) -> None:
    install().pump_events(until, timeout)


def register_widget_class(cls: type) -> type:
    """Make a QWidget subclass available to ``.ui`` files under its class name (e.g. another ``qMRML`` stand-in)."""
    from .qt_module import register_widget_class as register

    return register(cls)
