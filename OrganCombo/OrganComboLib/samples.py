"""OrganCombo's bundled sample data: a held-out PET whole-body phantom and its reference organs.

The files under ``Resources/SampleData/`` are written by :func:`write_sample_files` (``python -m
OrganComboLib.samples``) from the seeded phantom generator, so they can be re-made and checked bit for bit. They are
offered in Slicer's Sample Data module (category "SlicerMedNets") and are the input of the batch demo.
Torch-free: the module file imports this at start-up.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Tuple

import numpy as np

from .configs import get_config

__all__ = ["SAMPLE_DIR", "SAMPLE_SEED", "PET_SAMPLE", "SAMPLES", "sample_phantom", "write_sample_files"]

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"
#: Seed of the sample phantom: used neither for the demo weights' training nor their validation.
SAMPLE_SEED = 1234
_IMAGE = SAMPLE_DIR / "OrganComboPETPhantom.nrrd"
_REFERENCE = SAMPLE_DIR / "OrganComboPETPhantom-reference.seg.nrrd"
_THUMBNAIL = Path(__file__).resolve().parent.parent / "Resources" / "Icons" / "OrganCombo.png"


def _sample_set():
    from mednets.sampledata import SampleDataSet, SampleFile

    return SampleDataSet("OrganComboPETPhantom", (SampleFile(_IMAGE, "OrganComboPETPhantom"),
                                                  SampleFile(_REFERENCE, "OrganComboPETPhantom reference")),
                         thumbnail=_THUMBNAIL)


PET_SAMPLE = _sample_set()
SAMPLES = (PET_SAMPLE,)


def sample_phantom():
    """The phantom behind the sample files (seeded generator)."""
    from mednets.phantoms import pet_whole_body_phantom

    return pet_whole_body_phantom(seed=SAMPLE_SEED)


def write_sample_files() -> Tuple[Path, Path]:
    """(Re)write the PET sample image (float32 SUV) and its reference segmentation (.seg.nrrd, named organs)."""
    from mednets import mrml
    from mednets.image import Volume
    from mednets.io import write_volume
    from mednets.terminology import segment_specs

    phantom = sample_phantom()
    volume = Volume(phantom.image.astype(np.float32), spacing=phantom.spacing,
                    directions_ras=phantom.extra["directions_ras"])
    SAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    image = write_volume(volume, _IMAGE)
    reference = mrml.write_segmentation_file(phantom.labels, volume, _REFERENCE,
                                             segment_specs(get_config("pet").classes))
    return image, reference


if __name__ == "__main__":
    for path in write_sample_files():
        print(path, path.stat().st_size, "bytes")
    sys.exit(0)
