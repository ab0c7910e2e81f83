"""Pre-processing of NucleiMaskylo: stain normalisation (Macenko, Reinhard) on H&E phantoms with known stains, the
tile grid, region reads of tiled/striped compressed TIFFs, and seam-free stitching: an image processed in overlapping
tiles gives exactly the instances of the untiled image for a detector that only sees each tile (tolerance: identical
instance masks, no instance lost, split or doubled). About 5 s on 2 CPU cores."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from skimage.color import rgb2lab

from mednets.metrics.coco_instances import masks_from_label_map
from mednets.phantoms.he_nuclei import HE_STAIN_VECTORS, he_nuclei_phantom
from NucleiMaskyloLib.detections import Detections
from NucleiMaskyloLib.stain import (InsufficientTissueError, StainNormalizer, macenko_stains, reinhard_stats)
from NucleiMaskyloLib.tiling import RegionReader, predict_tiled, stitch_tiles, tile_grid


@pytest.fixture(scope="module")
def tiles():
    reference = he_nuclei_phantom(0, stain_variation=0.0)
    varied = [he_nuclei_phantom(seed, stain_variation=1.5) for seed in (1, 2, 3)]
    return reference, varied


def angle_between(u, v):
    u, v = np.asarray(u, float), np.asarray(v, float)
    return float(np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1))))


def test_macenko_recovers_the_phantom_stain_vectors(tiles):
    _, varied = tiles
    for case in varied:
        stains = macenko_stains(case.image)["stains"]
        truth = case.extra["stain_vectors"]
        # hematoxylin first; both vectors within a few degrees of the stains the phantom was made with
        assert angle_between(stains[:, 0], truth[0]) < 4.0
        assert angle_between(stains[:, 1], truth[1]) < 6.0


def test_macenko_maps_tiles_onto_the_reference_stains(tiles):
    reference, varied = tiles
    normalizer = StainNormalizer("macenko").fit(reference.image)
    for case in varied:
        out = normalizer.transform(case.image)
        assert out.dtype == np.uint8 and out.shape == case.image.shape
        after = macenko_stains(out)
        for k in range(2):
            assert angle_between(after["stains"][:, k], normalizer.reference["stains"][:, k]) < 3.0
        np.testing.assert_allclose(after["max_concentrations"], normalizer.reference["max_concentrations"], rtol=0.1)
        # the colour difference to the reference tile shrinks
        before = np.abs(rgb2lab(case.image).mean((0, 1)) - rgb2lab(reference.image).mean((0, 1))).sum()
        now = np.abs(rgb2lab(out).mean((0, 1)) - rgb2lab(reference.image).mean((0, 1))).sum()
        assert now < before
    # a tile normalised to its own stains changes little
    self_map = StainNormalizer("macenko").fit(reference.image).transform(reference.image)
    assert np.abs(self_map.astype(int) - reference.image.astype(int)).mean() < 4.0


def test_reinhard_matches_reference_statistics(tiles):
    reference, varied = tiles
    normalizer = StainNormalizer("reinhard").fit(reference.image)
    for case in varied:
        stats = reinhard_stats(normalizer.transform(case.image))
        np.testing.assert_allclose(stats["mean"], normalizer.reference["mean"], atol=1.0)
        np.testing.assert_allclose(stats["std"], normalizer.reference["std"], rtol=0.08)


def test_bundled_references_blank_tiles_and_serialisation(tiles):
    reference, _ = tiles
    macenko = StainNormalizer("macenko")
    assert macenko.reference["stains"].shape == (3, 2)
    blank = np.full((64, 64, 3), 238, np.uint8)
    with pytest.raises(InsufficientTissueError):
        macenko_stains(blank)
    assert np.array_equal(macenko.transform(blank), blank)  # glass is left alone
    assert StainNormalizer("reinhard").reference["mean"].shape == (3,)
    restored = StainNormalizer.from_dict(macenko.to_dict())
    assert np.array_equal(restored.transform(reference.image), macenko.transform(reference.image))
    assert np.array_equal(StainNormalizer("none").transform(reference.image), reference.image)
    with pytest.raises(ValueError, match="RGB"):
        macenko.transform(reference.image[..., 0])
    with pytest.raises(ValueError, match="unknown"):
        StainNormalizer("vahadane")


def test_tile_grid_covers_with_overlap_and_cores_partition():
    grid = tile_grid((1100, 700), tile_size=512, overlap=64)
    owner = np.zeros((1100, 700), int)
    cover = np.zeros((1100, 700), int)
    for tile in grid:
        assert tile.shape == (512, 512)
        cover[tile.y0:tile.y1, tile.x0:tile.x1] += 1
        cy0, cx0, cy1, cx1 = tile.core
        assert tile.y0 <= cy0 and cy1 <= tile.y1 and tile.x0 <= cx0 and cx1 <= tile.x1
        owner[cy0:cy1, cx0:cx1] += 1
    assert (owner == 1).all() and (cover >= 1).all()
    ys = sorted({t.y0 for t in grid})
    assert all(b - a <= 512 - 64 for a, b in zip(ys, ys[1:]))
    assert tile_grid((100, 80), 512, 64)[0].shape == (100, 80)
    with pytest.raises(ValueError):
        tile_grid((100, 100), 64, 64)


@pytest.mark.parametrize("layout", ["tiled", "striped", "plain"])
def test_region_reader_reads_only_what_is_asked(tmp_path, layout):
    image = np.random.default_rng(0).integers(0, 255, (300, 260, 3), dtype=np.uint8)
    path = tmp_path / "slide.tif"
    options = {"tiled": dict(tile=(64, 64), compression="zlib"), "striped": dict(rowsperstrip=16, compression="zlib"),
               "plain": {}}[layout]
    tifffile.imwrite(path, image, photometric="rgb", **options)
    with RegionReader(path) as reader:
        assert reader.shape == (300, 260, 3)
        for region in [(0, 0, 300, 260), (10, 70, 75, 200), (250, 250, 300, 260), (63, 63, 65, 65)]:
            y0, x0, y1, x1 = region
            assert np.array_equal(reader.read(*region), image[y0:y1, x0:x1])
        with pytest.raises(ValueError, match="outside"):
            reader.read(0, 0, 301, 10)


def perfect_tile_detector(label_map, offset_holder):
    """A detector that returns the true instances visible inside the tile it is given (cut ones too)."""
    def predict(pixels, tile):
        window = label_map[tile.y0:tile.y1, tile.x0:tile.x1]
        masks, _ = masks_from_label_map(window)
        return Detections(np.zeros((len(masks), 4)), np.linspace(0.99, 0.5, len(masks)), masks, "mask_rcnn")
    return predict


def same_instances(label_a, label_b):
    masks_a, _ = masks_from_label_map(label_a)
    masks_b, _ = masks_from_label_map(label_b)
    if len(masks_a) != len(masks_b):
        return False
    key = lambda masks: sorted(tuple(np.flatnonzero(m.ravel())[:3]) + (int(m.sum()),) for m in masks)  # noqa: E731
    return key(masks_a) == key(masks_b)


def test_stitching_tiled_equals_untiled():
    case = he_nuclei_phantom(5, shape=(700, 900), n_nuclei=600, overlap_fraction=0.0)
    truth = case.labels
    grid = tile_grid(truth.shape, tile_size=256, overlap=64)
    detector = perfect_tile_detector(truth, None)
    stitched = stitch_tiles(truth.shape, grid, [detector(None, tile) for tile in grid])
    # Tolerance: none. Every nucleus once, whole, with its exact pixels, although many cross tile borders.
    crossing = sum(1 for t in grid for v in np.unique(truth[t.y0:t.y1, t.x0:t.x1])
                   if v and (truth[t.y0:t.y1, t.x0:t.x1] == v).sum() < (truth == v).sum())
    assert crossing > 50
    assert len(stitched) == truth.max()
    assert same_instances(stitched.label_map(), truth)
    assert np.array_equal(stitched.label_map() > 0, truth > 0)
    # per-instance outputs
    assert stitched.areas().sum() == (truth > 0).sum()
    assert stitched.centroids().shape == (len(stitched), 2)


def test_predict_tiled_from_tiff_matches_array(tmp_path):
    case = he_nuclei_phantom(6, shape=(400, 520))
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, case.image, photometric="rgb", tile=(64, 64), compression="zlib")

    def threshold_detector(pixels):  # dark purple pixels, split into connected components
        from scipy import ndimage

        components, n = ndimage.label(pixels[..., 0] < 150)
        masks, _ = masks_from_label_map(components)
        return Detections(np.zeros((n, 4)), np.full(n, 0.9), masks)

    from_array = predict_tiled(case.image, threshold_detector, tile_size=128, overlap=48)
    from_file = predict_tiled(path, threshold_detector, tile_size=128, overlap=48)
    assert len(from_array) == len(from_file) > 20
    assert np.array_equal(from_array.label_map(), from_file.label_map())
    seen = []
    predict_tiled(case.image, threshold_detector, tile_size=128, overlap=48, progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and len(seen) == len(tile_grid(case.image.shape, 128, 48))
    from mednets.progress import OperationCancelled

    with pytest.raises(OperationCancelled):
        predict_tiled(case.image, threshold_detector, tile_size=128, overlap=48, cancel=lambda: True)
