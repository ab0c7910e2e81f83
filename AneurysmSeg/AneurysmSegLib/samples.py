"""AneurysmSeg's bundled sample data: a held-out CTA head phantom and its reference aneurysms.

The files under ``Resources/SampleData/`` are written by :func:`write_sample_files` (``python -m
AneurysmSegLib.samples``, from the AneurysmSeg folder) from the seeded phantom generator on the grid the demo weights
were trained on (:data:`AneurysmSegLib.demo.PHANTOM_SHAPE`, 1.25 mm voxels, aneurysms of 5-10 mm), so they can be
re-made and checked. The reference is a ``.seg.nrrd`` with one segment named and coded as the module names its output
(:data:`AneurysmSegLib.configs.ANEURYSM`). They are offered in Slicer's Sample Data module (category "SlicerMedNets").
Torch-free: the module file imports this at start-up.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Tuple

import numpy as np

__all__ = ["SAMPLE_DIR", "SAMPLE_SEED", "SAMPLE_ANEURYSMS", "CTA_SAMPLE", "SAMPLES", "sample_phantom",
           "sample_volume", "reference_labels", "write_sample_files"]

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"
#: Seed of the sample phantom: used neither for the demo weights' training (0-7) nor their validation (200, 201),
#: nor by the batch demo (4242).
SAMPLE_SEED = 1234
#: Aneurysms in the sample phantom (two, as in the batch demo).
SAMPLE_ANEURYSMS = 2
_IMAGE = SAMPLE_DIR / "AneurysmSegCTAPhantom.nrrd"
_REFERENCE = SAMPLE_DIR / "AneurysmSegCTAPhantom-reference.seg.nrrd"
_THUMBNAIL = Path(__file__).resolve().parent.parent / "Resources" / "Icons" / "AneurysmSeg.png"


def _sample_set():
    from mednets.sampledata import SampleDataSet, SampleFile

    return SampleDataSet("AneurysmSegCTAPhantom", (SampleFile(_IMAGE, "AneurysmSegCTAPhantom"),
                                                   SampleFile(_REFERENCE, "AneurysmSegCTAPhantom reference")),
                         thumbnail=_THUMBNAIL)


CTA_SAMPLE = _sample_set()
SAMPLES = (CTA_SAMPLE,)


def sample_phantom():
    """The phantom behind the sample files (seeded generator, the demo weights' grid)."""
    from mednets.phantoms.cta_head import cta_head_phantom

    from .demo import DIAMETERS_MM, PHANTOM_SHAPE, PHANTOM_SPACING

    return cta_head_phantom(shape=PHANTOM_SHAPE, spacing=PHANTOM_SPACING, seed=SAMPLE_SEED,
                            num_aneurysms=SAMPLE_ANEURYSMS, aneurysm_diameter_mm=DIAMETERS_MM)


def sample_volume(phantom=None):
    """The sample CTA as a :class:`mednets.image.Volume` (HU, int16: the phantom's values rounded)."""
    from mednets.image import Volume
    from mednets.phantoms import KJI_LPS_DIRECTIONS

    phantom = sample_phantom() if phantom is None else phantom
    image = np.clip(np.rint(phantom.image), -32768, 32767).astype(np.int16)
    return Volume(image, spacing=phantom.spacing, directions_ras=KJI_LPS_DIRECTIONS)


def reference_labels(phantom) -> np.ndarray:
    """The reference aneurysm mask (label 1 of the phantom)."""
    return (phantom.labels == 1).astype(np.uint8)


def write_sample_files() -> Tuple[Path, Path]:
    """(Re)write the CTA sample (int16 HU, gzip NRRD) and its reference segmentation (.seg.nrrd, 'aneurysm')."""
    from mednets import mrml
    from mednets.io import write_volume
    from mednets.terminology import segment_specs

    from .configs import ANEURYSM

    phantom = sample_phantom()
    volume = sample_volume(phantom)
    SAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    image = write_volume(volume, _IMAGE)
    reference = mrml.write_segmentation_file(reference_labels(phantom), volume, _REFERENCE, segment_specs([ANEURYSM]))
    return image, reference


if __name__ == "__main__":
    for path in write_sample_files():
        print(path, path.stat().st_size, "bytes")
    sys.exit(0)
