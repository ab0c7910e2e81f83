#!/usr/bin/env python
"""Render the screenshots in ``Docs/`` (``make screenshots``): each module's panel with results, and an overview.

For every module whose demo can run (bundled demo weights present), the module's demo (``<Module>Lib/demo.py``,
as ``make demo`` runs it) fills the scene with its input, result and reference nodes; then the module's panel is
built through the Slicer test runtime (offscreen Qt), its selectors are pointed at those nodes, Evaluate is pressed
and the panel is grabbed. ``Docs/screenshot-overview.png`` puts the panels next to the demo's result pictures (slice
montages with overlays); it is the screenshot the Extension Manager shows (``EXTENSION_SCREENSHOTURLS``).

Usage:  python Scripts/make_screenshots.py [--output Docs] [--modules OrganCombo AneurysmSeg]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("OrganCombo", "AxillaryLNDetect", "AneurysmSeg", "AdaptiveRecontour", "NucleiMaskylo")
PANEL_SIZE = (460, 820)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MPLBACKEND", "Agg")
for path in (ROOT / "MedNetsCore", ROOT / "Testing" / "runtime", ROOT / "Scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def _nodes(class_name: str) -> List:
    import slicer

    return [slicer.mrmlScene.GetNthNodeByClass(i, class_name)
            for i in range(slicer.mrmlScene.GetNumberOfNodesByClass(class_name))]


def _named(class_name: str, *, containing: str = "", excluding: Sequence[str] = ()) -> Optional[object]:
    """The first node of ``class_name`` whose name contains ``containing`` and none of ``excluding`` (case-blind)."""
    for node in _nodes(class_name):
        name = node.GetName().lower()
        if containing.lower() in name and not any(word.lower() in name for word in excluding):
            return node
    return None


SEGMENTATION, VOLUME, LABELMAP = "vtkMRMLSegmentationNode", "vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode"
POINTS, TRANSFORM = "vtkMRMLMarkupsFiducialNode", "vtkMRMLTransformNode"

#: Module -> {selector name in the panel's .ui: (node class, name contains, name excludes)} for the demo's nodes.
SELECTIONS: Dict[str, Dict[str, Tuple[str, str, Tuple[str, ...]]]] = {
    "OrganCombo": {"inputSelector": (VOLUME, "", ()),
                   "resultSelector": (SEGMENTATION, "", ("reference",)),
                   "referenceSelector": (SEGMENTATION, "reference", ())},
    "AneurysmSeg": {"inputSelector": (VOLUME, "", ("risk", "probab")),
                    "resultSelector": (SEGMENTATION, "", ("reference",)),
                    "referenceSelector": (SEGMENTATION, "reference", ())},
    "NucleiMaskylo": {"inputSelector": (VOLUME, "", ()),
                      "resultSelector": (LABELMAP, "", ("reference",)),
                      "referenceSelector": (LABELMAP, "reference", ())},
    "AxillaryLNDetect": {"inputSelector": (VOLUME, "", ()),
                         "resultPointsSelector": (POINTS, "", ("reference",)),
                         "referencePointsSelector": (POINTS, "reference", ())},
    "AdaptiveRecontour": {"planningVolumeSelector": (VOLUME, "planning", ()),
                          "planningSegmentationSelector": (SEGMENTATION, "planning", ()),
                          "dailyVolumeSelector": (VOLUME, "daily", ()),
                          "resultSegmentationSelector": (SEGMENTATION, "daily", ("reference",)),
                          "referenceSegmentationSelector": (SEGMENTATION, "reference", ()),
                          "resultTransformSelector": (TRANSFORM, "", ())},
}


def module_panel(runtime, module: str, output: Path, demo_dir: Path) -> Optional[Tuple[Path, object]]:
    """Run the module's demo, show its nodes in the module panel, press Evaluate, grab the panel into ``output``.
    Returns the picture and the demo's ``DemoResult`` (None when the module's demo cannot run)."""
    import importlib

    from mednets.demo import DemoUnavailable

    runtime.load_module(ROOT / module / f"{module}.py")
    demo = importlib.import_module(f"{module}Lib.demo")
    try:
        result = demo.run_demo(demo_dir / module)
    except DemoUnavailable as reason:
        print(f"{module}: skipped ({reason})")
        return None
    widget = runtime.create_widget(module)
    for selector, (class_name, containing, excluding) in SELECTIONS[module].items():
        node = _named(class_name, containing=containing, excluding=excluding)
        if node is None:
            raise RuntimeError(f"{module}: the demo left no {class_name} node for {selector}")
        getattr(widget.ui, selector).setCurrentNode(node)
    widget.ui.evaluateCollapsibleButton.setCollapsed(False)
    runtime.pump_events()
    if widget.ui.evaluateButton.isEnabled():
        widget.ui.evaluateButton.click()
        busy = getattr(widget, "isEvaluating", lambda: False)
        runtime.pump_events(until=lambda: not busy(), timeout=300)
    panel = widget.parent
    panel.resize(*PANEL_SIZE)
    panel.show()
    runtime.pump_events()
    path = output / f"{module}-panel.png"
    if not panel.grab().save(str(path)):
        raise RuntimeError(f"could not write {path}")
    panel.hide()
    runtime.destroy_widget(module)
    return path, result


def overview(shots: Dict[str, Tuple[Path, object]], path: Path) -> Path:
    """One picture, one row per module: its panel, then the demo's result pictures (slice montages with overlays)."""
    import matplotlib.pyplot as plt

    columns = 1 + max(len(result.panels) for _, result in shots.values())
    figure, axes = plt.subplots(len(shots), columns, figsize=(3.6 * columns, 5.0 * len(shots)), squeeze=False,
                                gridspec_kw={"width_ratios": [1.3] + [1] * (columns - 1)})
    for (module, (panel, result)), row in zip(shots.items(), axes):
        for axis in row:
            axis.axis("off")
        row[0].imshow(plt.imread(panel))
        row[0].set_title(f"{module} panel (Evaluate done)", fontsize=9)
        for axis, picture in zip(row[1:], result.panels):
            axis.imshow(picture.rgb, interpolation="nearest", aspect=picture.aspect)
            axis.set_title(picture.title, fontsize=9)
    figure.suptitle("SlicerMedNets on its bundled sample data (synthetic phantoms; research use only)", fontsize=12)
    figure.tight_layout(rect=(0, 0, 1, 0.97))  # leave room for the title
    figure.savefig(path, dpi=72)
    plt.close(figure)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "Docs")
    parser.add_argument("--modules", nargs="*", default=list(MODULES), choices=MODULES)
    arguments = parser.parse_args(argv)

    import slicer_test_runtime

    runtime = slicer_test_runtime.install()
    arguments.output.mkdir(parents=True, exist_ok=True)
    shots: Dict[str, Tuple[Path, object]] = {}
    with tempfile.TemporaryDirectory(prefix="mednets-screenshots-") as folder:
        for module in arguments.modules:
            started = time.monotonic()
            shot = module_panel(runtime, module, arguments.output, Path(folder))
            if shot is not None:
                shots[module] = shot
                print(f"{module}: {shot[0]} ({time.monotonic() - started:.0f} s)")
    if not shots:
        print("no module could run its demo: no screenshots written")
        return 1
    print(f"overview: {overview(shots, arguments.output / 'screenshot-overview.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
