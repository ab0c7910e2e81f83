"""NucleiMaskylo's bundled sample data: a held-out H&E phantom tile and its reference nuclei.

The files under ``Resources/SampleData/`` are written by :func:`write_sample_files` (``python -m
NucleiMaskyloLib.samples``, from the NucleiMaskylo folder) from the seeded phantom generator at the tile size the demo
weights were trained on (256 x 256 pixels, :func:`NucleiMaskyloLib.demo.phantom_cases`), so they can be re-made and
checked. The tile is a 2D RGB NRRD (uint8, 3 components: Slicer loads it as a colour vector volume, the module's
input; a NRRD rather than a PNG so that the Slicer test runtime's reader, which does not open PNGs, loads it as Slicer
does); the reference is an instance label map (one value per nucleus) in a NRRD on the tile's grid, offered as its own
Sample Data entry that loads it as a label map volume, the node type Evaluate takes as reference. Both are in Slicer's Sample Data
module (category "SlicerMedNets"). Torch-free: the module file imports this at start-up.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Tuple

import numpy as np

__all__ = ["SAMPLE_DIR", "SAMPLE_SEED", "SAMPLE_SHAPE", "HE_SAMPLE", "HE_REFERENCE_SAMPLE", "SAMPLES",
           "sample_phantom", "reference_volume", "write_sample_files"]

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"
#: Seed of the sample tile: used neither for the demo weights' training (100-123) nor their validation (900-905).
SAMPLE_SEED = 1234
#: Tile size (pixels): the demo weights' training tiles.
SAMPLE_SHAPE = (256, 256)
_IMAGE = SAMPLE_DIR / "NucleiMaskyloHEPhantom.nrrd"
_REFERENCE = SAMPLE_DIR / "NucleiMaskyloHEPhantom-reference-label.nrrd"
_THUMBNAIL = Path(__file__).resolve().parent.parent / "Resources" / "Icons" / "NucleiMaskylo.png"
#: Slicer's IJK-to-RAS of the tile as written (unit spacing, origin 0, LPS axes).
_TILE_IJK_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _sample_sets():
    from mednets.sampledata import SampleDataSet, SampleFile

    image = SampleDataSet("NucleiMaskyloHEPhantom", (SampleFile(_IMAGE, "NucleiMaskyloHEPhantom"),),
                          thumbnail=_THUMBNAIL)
    # Slicer's reader properties hold for every file of an entry: the label map needs its own entry.
    reference = SampleDataSet("NucleiMaskyloHEPhantomReference",
                              (SampleFile(_REFERENCE, "NucleiMaskyloHEPhantom reference nuclei"),),
                              thumbnail=_THUMBNAIL, load_file_properties={"labelmap": True})
    return image, reference


HE_SAMPLE, HE_REFERENCE_SAMPLE = _sample_sets()
SAMPLES = (HE_SAMPLE, HE_REFERENCE_SAMPLE)


def sample_phantom():
    """The phantom tile behind the sample files (seeded generator)."""
    from mednets.phantoms.he_nuclei import he_nuclei_phantom

    return he_nuclei_phantom(SAMPLE_SEED, shape=SAMPLE_SHAPE)


def reference_volume(phantom=None):
    """The reference instance labels (uint16, one value per nucleus) as a one-slice Volume on the tile's grid."""
    from mednets.image import Volume

    phantom = sample_phantom() if phantom is None else phantom
    if int(phantom.labels.max()) > np.iinfo(np.uint16).max:
        raise ValueError("too many nuclei for a uint16 label map")
    return Volume(phantom.labels.astype(np.uint16)[None], _TILE_IJK_TO_RAS)


def write_sample_files() -> Tuple[Path, Path]:
    """(Re)write the H&E tile (2D RGB gzip NRRD) and its reference instance label map (gzip NRRD)."""
    import SimpleITK as sitk
    from mednets.io import write_volume

    phantom = sample_phantom()
    SAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    rgb = sitk.GetImageFromArray(np.ascontiguousarray(phantom.image, dtype=np.uint8), isVector=True)
    image = write_volume(rgb, _IMAGE)
    reference = write_volume(reference_volume(phantom), _REFERENCE)
    return image, reference


if __name__ == "__main__":
    for path in write_sample_files():
        print(path, path.stat().st_size, "bytes")
    sys.exit(0)
