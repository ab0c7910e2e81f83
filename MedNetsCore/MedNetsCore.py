"""MedNetsCore: a hidden module whose only job is to make the shared library ``mednets`` importable.

Slicer's scripted-module factory appends the folder of every module file it discovers to ``sys.path`` before it
instantiates any module (``ctkFactoryScriptedItem::load()`` in Base/QTGUI/qSlicerScriptedLoadableModuleFactory.cxx,
called from CTK's ``ctkAbstractFactory::registerItem``). A folder without a module file is never added, so from a
source checkout (Additional module paths) ``import mednets`` would fail in every SlicerMedNets module. This file puts
``MedNetsCore/`` on the path there; in a built extension ``mednets`` is installed next to the module files
(lib/Slicer-X.Y/qt-scripted-modules) and this module is harmless. It has no panel.
"""

import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest


class MedNetsCore(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedNets Core")
        self.parent.categories = [_("Segmentation"), _("SlicerMedNets")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerMedNets developers"]
        self.parent.hidden = True  # no panel: a library for the other SlicerMedNets modules
        self.parent.helpText = _(
            "The shared library of the SlicerMedNets modules (mednets): image input/output and MRML conversion, "
            "resampling, sliding-window inference, device choice, checkpoints, the training engine, losses, metrics, "
            "synthetic phantoms and the command lines the panels run as child processes. This hidden module makes "
            "the library importable; it has no user interface. Research use only, not for clinical use.")
        self.parent.acknowledgementText = _(
            "Part of SlicerMedNets (Apache-2.0). The methods are acknowledged in the AxillaryLNDetect, AneurysmSeg, "
            "AdaptiveRecontour, OrganCombo and NucleiMaskylo modules.")


class MedNetsCoreTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (ctest, Testing/run_in_slicer.py) and under the test runtime: ``mednets`` imports."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_MednetsImports()

    def test_MednetsImports(self):
        import os

        import mednets

        version = mednets.__version__
        self.assertTrue(version and all(part.isdigit() for part in version.split(".")[:2]), version)
        # The package beside this module file (source checkout) or installed next to it (built extension).
        self.assertEqual(os.path.dirname(os.path.dirname(os.path.abspath(mednets.__file__))),
                         os.path.dirname(os.path.abspath(__file__)))
