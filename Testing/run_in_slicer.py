"""Run the tests of SlicerMedNets scripted modules inside 3D Slicer, or outside it under the test runtime.

Inside Slicer (the modules must be on Slicer's module paths, e.g. with ``--additional-module-paths``)::

    Slicer --no-main-window --testing --additional-module-paths Testing/HarnessThreshold \\
        --python-script Testing/run_in_slicer.py -- HarnessThreshold

Outside Slicer, from the repository root (the modules are loaded from the repository)::

    .venv/bin/python Testing/run_in_slicer.py HarnessThreshold

For each named module it runs the test methods of ``<Module>Test`` (the module's self-test) and of every
``unittest.TestCase`` in ``<module folder>/Testing/Python/*Test.py``, prints unittest's report, and exits with status
0 when everything passed, 1 when a test failed or a module is missing, 2 when no module was named.
"""

from __future__ import annotations

import importlib.util
import sys
import unittest
from pathlib import Path
from types import ModuleType
from typing import List, Sequence

REPOSITORY = Path(__file__).resolve().parents[1]


def insideSlicer() -> bool:
    """True in the Slicer application (its ``slicer`` module has a real application object)."""
    slicer = sys.modules.get("slicer")
    app = getattr(slicer, "app", None) if slicer is not None else None
    return app is not None and not getattr(app, "isTestRuntime", False)


def prepare(moduleNames: Sequence[str]) -> None:
    """Make ``mednets`` importable; outside Slicer, install the test runtime and load the modules."""
    try:
        import mednets  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPOSITORY / "MedNetsCore"))
    if insideSlicer():
        return
    sys.path.insert(0, str(REPOSITORY / "Testing" / "runtime"))
    import slicer_test_runtime

    runtime = slicer_test_runtime.install()
    for moduleName in moduleNames:
        try:
            runtime.load_module(runtime.find_module_file(moduleName))
        except FileNotFoundError as error:
            print(error, file=sys.stderr)


def importFile(path: Path) -> ModuleType:
    """The Python module of ``path``: the one already imported under its name, else imported now."""
    loaded = sys.modules.get(path.stem)
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == path.resolve():
        return loaded
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def moduleSuite(moduleName: str) -> unittest.TestSuite:
    """``<Module>Test`` and the test cases of ``Testing/Python/*Test.py`` of a loaded module."""
    import slicer

    modulePath = Path(slicer.util.modulePath(moduleName))
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    suite.addTests(loader.loadTestsFromTestCase(getattr(importFile(modulePath), f"{moduleName}Test")))
    for testFile in sorted((modulePath.parent / "Testing" / "Python").glob("*Test.py")):
        suite.addTests(loader.loadTestsFromModule(importFile(testFile)))
    return suite


def main(arguments: List[str]) -> int:
    moduleNames = [a for a in arguments if a != "--"]
    if not moduleNames:
        print(__doc__, file=sys.stderr)
        return 2
    prepare(moduleNames)
    import slicer

    suite = unittest.TestSuite()
    for moduleName in moduleNames:
        try:
            slicer.util.getModule(moduleName)
        except RuntimeError:
            print(f"Module {moduleName} is not loaded; add its folder to Slicer's module paths "
                  "(--additional-module-paths).", file=sys.stderr)
            return 1
        suite.addTests(moduleSuite(moduleName))
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    status = main(sys.argv[1:])
    if insideSlicer():
        import slicer

        slicer.util.exit(status)
    else:
        sys.exit(status)
