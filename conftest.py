"""Repository-wide pytest setup: offscreen Qt, the in-tree mednets package first on sys.path, CPU thread limits."""
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("KMP_DUPLICATE_LIB_OK", "TRUE")

_ROOT = os.path.dirname(os.path.abspath(__file__))
_CORE = os.path.join(_ROOT, "MedNetsCore")
if _CORE not in sys.path:
    sys.path.insert(0, _CORE)
