"""``python -m SegmentEditorMedNetsLib segment ...``: what the MedNets Segment Editor effect runs as its child process
(``PythonSlicer -m SegmentEditorMedNetsLib`` inside Slicer), and the same command in batch.

In real Slicer a Python worker thread of the Slicer process starves (PythonQt keeps the GIL in the main thread), and a
network run on the GUI thread freezes the application, so the effect writes the image it needs to its job folder and
runs this command. No ``slicer``, ``qt`` or ``vtk`` import here: ``PythonSlicer`` has none of Slicer's application.

``--input`` is the image the network sees (the user's region plus the context the network needs, or the whole image
for networks that need it); ``--region K0,J0,I0,K1,J1,I1`` the user's region inside it (voxel indices, stop exclusive;
the whole input without it). Then either ``--box-center/--box-size/--box-axes`` (a markups ROI: only voxels whose
centres lie inside are kept) or ``--point/--radius`` (the connected structure at the point, else the nearest within
the radius). ``--output`` gets the mask on the region's grid (NRRD, uint8 0/1, full geometry).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

import numpy as np

from mednets.cli import emit_result, progress_bar, run_command

__all__ = ["build_parser", "main", "METHOD_NAMES"]

#: ``--method`` value -> module name.
METHOD_NAMES = {"organcombo": "OrganCombo", "aneurysmseg": "AneurysmSeg", "nucleimaskylo": "NucleiMaskylo",
                "axillarylndetect": "AxillaryLNDetect"}


def _floats(text: str, count: int, what: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{what} must be {count} comma-separated numbers, got '{text}'") from None
    if len(values) != count:
        raise ValueError(f"{what} must be {count} comma-separated numbers, got '{text}'")
    return values


def _segment(args: argparse.Namespace) -> int:
    from mednets.image import Volume
    from mednets.io import read_volume, write_volume

    from SegmentEditorMedNetsLib.methods import METHODS
    from SegmentEditorMedNetsLib.regions import component_at_point, inside_roi

    module = METHOD_NAMES[args.method]
    method = next(m for m in METHODS if m.module == module)
    if not method.is_available():
        raise ImportError(f"the {module} module's code ({module}Lib) is not on this process's path")
    if args.model:
        method.model = args.model
    if (args.point is None) == (args.box_center is None):
        raise ValueError("give either --point (with --radius) or --box-center/--box-size")
    image = read_volume(args.input)
    if args.region:
        values = [int(v) for v in _floats(args.region, 6, "--region")]
        start, stop = tuple(values[:3]), tuple(values[3:])
    else:
        start, stop = (0, 0, 0), tuple(image.shape)
    if any(a < 0 or b > n or a >= b for a, b, n in zip(start, stop, image.shape)):
        raise ValueError(f"--region {args.region} is not inside the input image of shape {tuple(image.shape)}")
    with progress_bar(f"{module} {args.structure}") as progress:
        mask = method.segment(image, args.structure, args.device, progress=progress)
    region = image.crop(start, stop)
    mask = mask[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
    if args.point is not None:
        mask = component_at_point(mask, region, _floats(args.point, 3, "--point"), float(args.radius))
    else:
        axes = np.array(_floats(args.box_axes, 9, "--box-axes")).reshape(3, 3) if args.box_axes else np.eye(3)
        mask = mask & inside_roi(region, _floats(args.box_center, 3, "--box-center"),
                                 _floats(args.box_size, 3, "--box-size"), axes)
    output = write_volume(Volume(mask.astype(np.uint8), ijk_to_ras=region.ijk_to_ras), args.output)
    emit_result(output=str(output), voxels=int(np.count_nonzero(mask)), structure=args.structure, method=module)
    print(f"{module}: {int(np.count_nonzero(mask))} voxels of {args.structure} -> {output}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m SegmentEditorMedNetsLib",
                                     description="Run a SlicerMedNets network in a box or around a point (what the "
                                                 "MedNets Segment Editor effect runs). Research use only.")
    commands = parser.add_subparsers(dest="command", required=True)
    segment = commands.add_parser("segment", help="segment one structure in a region of an image")
    segment.add_argument("--method", required=True, choices=sorted(METHOD_NAMES))
    segment.add_argument("--structure", required=True, help="e.g. heart, aneurysm, nucleus, 'lymph node'")
    segment.add_argument("--input", required=True, help="the image the network sees (NRRD or any image file)")
    segment.add_argument("--output", required=True, help="the mask on the region's grid (.nrrd)")
    segment.add_argument("--region", help="K0,J0,I0,K1,J1,I1: the region inside the input (default: all of it)")
    segment.add_argument("--point", help="R,A,S (mm): keep the structure at / nearest to this point")
    segment.add_argument("--radius", type=float, default=30.0, help="with --point: the largest distance (mm)")
    segment.add_argument("--box-center", help="R,A,S (mm) of the box (markups ROI) centre")
    segment.add_argument("--box-size", help="the box's edge lengths along its axes (mm)")
    segment.add_argument("--box-axes", help="the box's 3x3 axes matrix in RAS, row by row (default: identity)")
    segment.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    segment.add_argument("--model", help="the module's model (a name or a weights file; default: its bundled one)")
    segment.set_defaults(run=_segment)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(build_parser(), argv)
