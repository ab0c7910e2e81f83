"""Run the self-tests of SlicerMedNets scripted modules inside 3D Slicer, or outside it under the test runtime.

Inside Slicer, from a source checkout (every module folder on Slicer's module paths, MedNetsCore included: its
module file is what puts ``mednets`` on ``sys.path``; ``--print-slicer-command`` prints this line for this checkout)::

    Slicer --no-main-window --testing \\
        --additional-module-paths MedNetsCore OrganCombo AneurysmSeg AxillaryLNDetect AdaptiveRecontour \\
            NucleiMaskylo SegmentEditorMedNets \\
        --python-script Testing/run_in_slicer.py -- OrganCombo SegmentEditorMedNets

(``--additional-module-paths`` takes a list, ``--python-script`` a file run after Slicer has loaded its modules:
Base/QTCore/qSlicerCoreCommandOptions.cxx; arguments after ``--`` reach the script as ``sys.argv[1:]``.) The script
adds nothing to ``sys.path``: the modules, their ``<Module>Lib`` packages and ``mednets`` import because Slicer's
scripted-module factory appended each module folder (Base/QTGUI/qSlicerScriptedLoadableModuleFactory.cxx).
Checked against Slicer's source (v5.8.1, v5.10.0), not run in a real Slicer.

Outside Slicer, from the repository root (the test runtime registers the repository's module folders the same way)::

    .venv/bin/python Testing/run_in_slicer.py HarnessThreshold

For each named module it runs the test methods of ``<Module>Test`` (the module's self-test; for
``SegmentEditorMedNets``, the effect's registration test) and of every ``unittest.TestCase`` in
``<module folder>/Testing/Python/*Test.py``, prints unittest's report, and exits with status 0 when everything
passed, 1 when a test failed or a module is missing, 2 when no module was named. In Slicer the status goes through
``slicer.util.exit`` (Base/Python/slicer/util.py), so ``Slicer`` itself exits with it.
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


#: The checkout's module folders, as Slicer would discover them: ``<Folder>/<Folder>.py`` at the top level.
def moduleFolders() -> List[Path]:
    return sorted(p.parent for p in REPOSITORY.glob("*/*.py") if p.stem == p.parent.name)


def slicerCommand(moduleNames: Sequence[str]) -> str:
    """The Slicer command line that runs ``moduleNames``' tests from this checkout."""
    folders = " ".join(f'"{f}"' if " " in str(f) else str(f) for f in moduleFolders())
    script = REPOSITORY / "Testing" / "run_in_slicer.py"
    return (f"Slicer --no-main-window --testing --additional-module-paths {folders} --python-script {script} -- "
            + " ".join(moduleNames or ["<Module>"]))


def prepare(moduleNames: Sequence[str]) -> None:
    """Outside Slicer, install the test runtime (it registers the module folders as Slicer does) and load the
    modules. Inside Slicer nothing is done: Slicer has registered and loaded the modules of its module paths."""
    if insideSlicer():
        return
    sys.path.insert(0, str(REPOSITORY / "Testing" / "runtime"))  # the runtime itself, outside Slicer only
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
    if "--print-slicer-command" in moduleNames:
        print(slicerCommand([m for m in moduleNames if m != "--print-slicer-command"]))
        return 0
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
