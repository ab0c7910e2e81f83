"""SegmentEditorMedNets: a hidden module that registers the "MedNets" Segment Editor effect at start-up.

The effect itself is ``SegmentEditorMedNetsEffect/SegmentEditorEffect.py``; Slicer's ``setPythonSource`` loads it as
the module named after its folder (``SegmentEditorMedNetsEffect``), so it must not sit in a package folder it imports
from (``SegmentEditorMedNetsLib``, its torch-free/Qt-free code and the ``python -m SegmentEditorMedNetsLib`` command
line that runs the network in a child process). It runs a SlicerMedNets network (OrganCombo,
AneurysmSeg, NucleiMaskylo, AxillaryLNDetect) inside a box or around a clicked point and adds the result to the selected segment.
"""

import os

import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest


class SegmentEditorMedNets(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Segment Editor MedNets")
        self.parent.categories = [_("Segmentation"), _("SlicerMedNets")]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["SlicerMedNets developers"]
        self.parent.hidden = True
        self.parent.helpText = _(
            "Registers the MedNets effect of the Segment Editor: run a SlicerMedNets network (OrganCombo organs, "
            "AneurysmSeg aneurysms, NucleiMaskylo nuclei, AxillaryLNDetect lymph nodes) inside a box or around a clicked point; what it finds is "
            "added to the selected segment with the editor's undo, and other segments are never changed. Research "
            "use only, not for clinical use.")
        self.parent.acknowledgementText = _(
            "Methods: see the OrganCombo, AneurysmSeg, NucleiMaskylo and AxillaryLNDetect modules (Taghanaki et al. "
            "2019 Combo loss; Bo et al. 2021 GLIA-Net; Bukhari et al. 2025 MASKYLO; Altun et al., two-stage U-Net). Part of SlicerMedNets (Apache-2.0).")
        slicer.app.startupCompleted.connect(registerEditorEffect)


def registerEditorEffect() -> None:
    """Hand the effect to the Segment Editor's effect factory (once)."""
    import qSlicerSegmentationsEditorEffectsPythonQt as effects

    instance = effects.qSlicerSegmentEditorScriptedEffect(None)
    # Module name = the folder's name, class name = the file's base name (qSlicerSegmentEditorScriptedEffect.cxx).
    path = os.path.join(os.path.dirname(__file__), "SegmentEditorMedNetsEffect", "SegmentEditorEffect.py")
    if not instance.setPythonSource(path.replace("\\", "/")) or instance.self() is None:
        raise RuntimeError(f"the MedNets Segment Editor effect could not be loaded from {path} (see the Python console)")
    instance.self().register()


class SegmentEditorMedNetsTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (ctest) and under the test runtime: the effect is registered with the editor's factory."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_EffectIsRegistered()

    def test_EffectIsRegistered(self):
        factory = slicer.qSlicerSegmentEditorEffectFactory.instance()
        names = [effect.name for effect in factory.registeredEffects()]
        if "MedNets" not in names:
            registerEditorEffect()
            names = [effect.name for effect in factory.registeredEffects()]
        self.assertIn("MedNets", names)
