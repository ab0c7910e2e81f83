"""pytest fixtures for tests of Slicer scripted modules (enabled by the repository's ``conftest.py``).

* ``slicer_runtime`` (session) - installs the runtime once and returns the :class:`~slicer_test_runtime.Runtime`;
* ``mrml_scene`` - ``slicer.mrmlScene``, closed (``Clear(0)``) before the test; recorded messages are forgotten.
  The test's module is registered as Slicer code, so the test reads widgets as module code does (PythonQt's view:
  ``label.text``, ``button.enabled``), even if it imports ``slicer`` only inside functions;
* ``slicer_messages`` - the list of :class:`~slicer_test_runtime.Message` shown during the test;
* ``module_widget`` - factory ``module_widget("HarnessThreshold")`` returning the module's Python widget (loaded from
  the repository if needed, ``setup()`` + ``enter()`` done); the widget is torn down after the test (``exit()``,
  ``cleanup()``) so that the next test builds a fresh one.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest

from .runtime import Message, Runtime, install


@pytest.fixture(scope="session")
def slicer_runtime() -> Runtime:
    return install()


@pytest.fixture
def mrml_scene(slicer_runtime: Runtime, request: pytest.FixtureRequest) -> Iterator[Any]:
    from .pythonqt import register_slicer_code  # imported here: loading the plugin must not import Qt

    if request.module is not None:
        register_slicer_code(request.module.__name__)
    slicer_runtime.reset_scene()
    yield slicer_runtime.scene


@pytest.fixture
def slicer_messages(mrml_scene: Any, slicer_runtime: Runtime) -> List[Message]:
    return slicer_runtime.messages


@pytest.fixture
def module_widget(mrml_scene: Any, slicer_runtime: Runtime) -> Iterator[Callable[..., Any]]:
    created: List[str] = []

    def build(moduleName: str, enter: bool = True) -> Any:
        widget = slicer_runtime.create_widget(moduleName, enter)
        if moduleName not in created:
            created.append(moduleName)
        return widget

    yield build
    for moduleName in reversed(created):
        slicer_runtime.destroy_widget(moduleName)
