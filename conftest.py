"""Repository-wide pytest setup: offscreen Qt, the in-tree mednets package first on sys.path, CPU thread limits."""
import os
import sys

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
