"""Repository-wide pytest setup: offscreen Qt, the in-tree mednets package first on sys.path, CPU thread limits, and
the opt-in ``long`` tests (learning runs too long for CI: ``make test-learning`` or ``MEDNETS_LONG_TESTS=1``)."""
import os
import sys

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("KMP_DUPLICATE_LIB_OK", "TRUE")

_ROOT = os.path.dirname(os.path.abspath(__file__))
_CORE = os.path.join(_ROOT, "MedNetsCore")
if _CORE not in sys.path:
    sys.path.insert(0, _CORE)

# The Slicer test runtime (Testing/runtime): fixtures slicer_runtime, mrml_scene, slicer_messages, module_widget.
# Nothing is installed until a test uses one of them.
_RUNTIME = os.path.join(_ROOT, "Testing", "runtime")
if _RUNTIME not in sys.path:
    sys.path.insert(0, _RUNTIME)
pytest_plugins = ["slicer_test_runtime.pytest_plugin"]


LONG_TESTS_VARIABLE = "MEDNETS_LONG_TESTS"


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``long`` unless MEDNETS_LONG_TESTS=1 (each says what it measured when run by hand)."""
    if os.environ.get(LONG_TESTS_VARIABLE) == "1":
        return
    skip = pytest.mark.skip(reason=f"long learning run, not part of CI: set {LONG_TESTS_VARIABLE}=1 or run "
                                   "`make test-learning`")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)
