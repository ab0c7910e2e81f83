#!/usr/bin/env python
"""Run every SlicerMedNets module present in batch on bundled sample data and bundled demo weights (``make demo``).

Outside Slicer the modules' Logic classes run on the real MRML library (``slicer-core``) with the small application
runtime under ``Testing/runtime`` (offscreen Qt; no window opens). Each module that provides
``<Module>/<Module>Lib/demo.py`` with ``run_demo(output_dir, progress=None) -> mednets.demo.DemoResult`` is run; its
files go to ``<output>/<Module>/``. A pipeline check of the shared library (CT phantom -> NRRD file -> MRML volume ->
threshold module Logic -> ``.seg.nrrd`` -> Dice against the phantom) always runs first. At the end
``<output>/summary.png`` and ``<output>/summary.json`` gather every module's pictures and numbers.

Usage:  python Scripts/run_demo.py --output demo-output [--modules OrganCombo AneurysmSeg]
Exit status 0 when every demo ran, 1 when one failed (the others still run and the summary is still written).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("OrganCombo", "AxillaryLNDetect", "AneurysmSeg", "AdaptiveRecontour", "NucleiMaskylo")

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MPLBACKEND", "Agg")
for path in (ROOT / "MedNetsCore", ROOT / "Testing" / "runtime"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def _console_progress(prefix: str) -> Callable[[float, str], None]:
    state = {"last": -1}

    def progress(fraction: float, message: str = "") -> None:
        percent = int(round(100 * max(0.0, min(1.0, float(fraction)))))
        if percent // 10 != state["last"] // 10 or percent == 100:
            state["last"] = percent
            print(f"  [{prefix}] {percent:3d}% {message}", flush=True)

    return progress


def core_pipeline_check(output_dir: Path, progress=None):
    """The shared library end to end: phantom -> file -> MRML -> a module's Logic -> .seg.nrrd -> metrics."""
    import numpy as np
    import slicer

    from mednets import io, metrics, mrml
    from mednets.demo import DemoPanel, DemoResult, overlay_labels
    from mednets.image import Volume
    from mednets.phantoms import KJI_LPS_DIRECTIONS, ct_torso_phantom

    started = time.monotonic()
    phantom = ct_torso_phantom(seed=7)
    # Phantom axes: K inferior->superior, J anterior->posterior, I right->left (LPS-like).
    volume = Volume(phantom.image, spacing=phantom.spacing, directions_ras=KJI_LPS_DIRECTIONS)
    image_path = io.write_volume(volume, output_dir / "ct_phantom.nrrd")
    slicer.mrmlScene.Clear()
    volume_node = mrml.new_volume_node(io.read_volume(image_path), slicer.mrmlScene, "CT phantom")
    threshold_module = importlib.import_module("HarnessThreshold")
    logic = threshold_module.HarnessThresholdLogic()
    segmentation_node = logic.process(volume_node, 250.0, progress=progress)
    seg_path = mrml.save_node(segmentation_node, output_dir / "bone_threshold.seg.nrrd")
    found, _ = mrml.labelmap_from_segmentation(segmentation_node, volume_node)
    spine = phantom.mask("spine")
    scores = {"Dice spine": metrics.dice(found > 0, spine),
              "HD95 spine (mm)": metrics.hausdorff_distance(found > 0, spine, phantom.spacing, percentile=95)}
    k = int(np.argmax((phantom.labels > 0).sum(axis=(1, 2))))  # axial slice, anterior at the top
    panel = DemoPanel("CT phantom, bone threshold (250 HU)",
                      overlay_labels(phantom.image[k], (found[k] > 0).astype(np.uint8), window=(-400, 600)),
                      phantom.spacing[1] / phantom.spacing[2])
    return DemoResult("MedNetsCore", "CT phantom through file I/O, MRML and a module Logic (threshold)",
                      scores, [panel], [image_path, seg_path], time.monotonic() - started)


def discover(names: Optional[Sequence[str]]) -> List[str]:
    wanted = list(names) if names else list(MODULES)
    unknown = [name for name in wanted if name not in MODULES]
    if unknown:
        raise SystemExit(f"error: unknown module(s) {unknown}; known: {list(MODULES)}")
    return [name for name in wanted if (ROOT / name / f"{name}Lib" / "demo.py").is_file()]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python Scripts/run_demo.py --output demo-output")
    parser.add_argument("--output", type=Path, default=ROOT / "demo-output", help="folder for results")
    parser.add_argument("--modules", nargs="*", help=f"subset of {', '.join(MODULES)} (default: all present)")
    parser.add_argument("--core-only", action="store_true", help="run only the shared-library pipeline check")
    args = parser.parse_args(argv)

    import slicer_test_runtime

    runtime = slicer_test_runtime.install()
    threshold = ROOT / "Testing" / "HarnessThreshold" / "HarnessThreshold.py"
    runtime.load_module(threshold)

    from mednets.demo import DemoUnavailable, write_summary

    output: Path = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    results, failures, skipped = [], [], {}
    jobs = [("MedNetsCore", core_pipeline_check)]
    for name in [] if args.core_only else discover(args.modules):
        runtime.load_module(ROOT / name / f"{name}.py")
        jobs.append((name, importlib.import_module(f"{name}Lib.demo").run_demo))
    for name, run in jobs:
        print(f"== {name}", flush=True)
        folder = output / name
        folder.mkdir(parents=True, exist_ok=True)
        try:
            result = run(folder, progress=_console_progress(name))
        except DemoUnavailable as reason:  # a known gap (e.g. demo weights not built yet): said, not a failure
            print(f"  skipped: {reason}", flush=True)
            skipped[name] = str(reason)
            continue
        except Exception as error:  # report, keep going, fail at the end
            traceback.print_exc()
            failures.append(f"{name}: {error}")
            continue
        results.append(result)
        numbers = ", ".join(f"{key}={value:.4g}" for key, value in result.metrics.items())
        print(f"  {result.summary} ({result.seconds:.1f} s): {numbers}", flush=True)
    png, summary = write_summary(results, output, skipped=skipped)
    print(f"wrote {png} and {summary}")
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
