"""AxillaryLNDetect's bundled sample data: a held-out CT axilla phantom and its reference lymph nodes.

The files under ``Resources/SampleData/`` are written by :func:`write_sample_files` (``python -m
AxillaryLNDetectLib.samples``, from the AxillaryLNDetect folder) from the seeded phantom generator on the grid the demo
detector was trained on (:data:`AxillaryLNDetectLib.demo.PHANTOM_GRID`), so they can be re-made and checked. The
reference nodes are a point list whose descriptions give each node's short-axis diameter (``diameter=<mm>``), the form
Evaluate and "Add current case" read. They are offered in Slicer's Sample Data module (category "SlicerMedNets").
Torch-free: the module file imports this at start-up.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Tuple

import numpy as np

__all__ = ["SAMPLE_DIR", "SAMPLE_SEED", "CT_SAMPLE", "SAMPLES", "sample_phantom", "sample_volume",
           "reference_descriptions", "write_sample_files"]

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"
#: Seed of the sample phantom: used neither for the demo detector's training (0-5) nor its validation (100), nor its
#: held-out scores (200-202) or the batch demo (950).
SAMPLE_SEED = 1234
_IMAGE = SAMPLE_DIR / "AxillaryLNDetectCTPhantom.nrrd"
_REFERENCE = SAMPLE_DIR / "AxillaryLNDetectCTPhantom-reference.mrk.json"
_THUMBNAIL = Path(__file__).resolve().parent.parent / "Resources" / "Icons" / "AxillaryLNDetect.png"


def _sample_set():
    from mednets.sampledata import SampleDataSet, SampleFile

    return SampleDataSet("AxillaryLNDetectCTPhantom",
                         (SampleFile(_IMAGE, "AxillaryLNDetectCTPhantom"),
                          SampleFile(_REFERENCE, "AxillaryLNDetectCTPhantom reference nodes")),
                         thumbnail=_THUMBNAIL)


CT_SAMPLE = _sample_set()
SAMPLES = (CT_SAMPLE,)


def sample_phantom():
    """The phantom behind the sample files (seeded generator, the demo detector's grid)."""
    from mednets.phantoms.axilla_ct import axilla_ct_phantom

    from .demo import PHANTOM_GRID  # demo.py imports torch only inside its functions

    return axilla_ct_phantom(seed=SAMPLE_SEED, **PHANTOM_GRID)


def sample_volume(phantom=None):
    """The sample CT as a :class:`mednets.image.Volume` (HU, int16: the phantom's values rounded)."""
    from mednets.image import Volume

    phantom = sample_phantom() if phantom is None else phantom
    image = np.clip(np.rint(phantom.image), -32768, 32767).astype(np.int16)
    return Volume(image, spacing=phantom.spacing, directions_ras=phantom.extra["directions_ras"])


def reference_descriptions(phantom) -> list:
    """One ``diameter=<mm>`` description per reference node (the short-axis diameter, as Evaluate parses it)."""
    return [f"diameter={d:.1f}" for d in phantom.extra["short_axis_mm"]]


def write_sample_files() -> Tuple[Path, Path]:
    """(Re)write the CT sample (int16 HU, gzip NRRD) and its reference nodes (.mrk.json point list)."""
    import slicer
    from mednets import mrml
    from mednets.io import write_volume

    phantom = sample_phantom()
    volume = sample_volume(phantom)
    SAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    image = write_volume(volume, _IMAGE)
    scene = slicer.vtkMRMLScene()  # a private scene: nothing of the user's is touched
    scene.RegisterNodeClass(slicer.vtkMRMLMarkupsJsonStorageNode())  # a bare scene does not know the markups writer
    try:
        points = mrml.new_point_list_node(volume.kji_to_ras(phantom.extra["centres_kji"]),
                                          labels=[f"node-{i + 1}" for i in range(len(phantom.extra["short_axis_mm"]))],
                                          descriptions=reference_descriptions(phantom), scene=scene,
                                          name="AxillaryLNDetectCTPhantom reference nodes")
        reference = mrml.save_node(points, _REFERENCE)
    finally:
        scene.Clear(1)
    return image, reference


if __name__ == "__main__":
    for path in write_sample_files():
        print(path, path.stat().st_size, "bytes")
    sys.exit(0)
