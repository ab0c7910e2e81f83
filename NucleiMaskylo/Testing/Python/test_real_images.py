"""Real images from the stardist wheel (BSD-3, a test dependency; read from its site-packages folder, never copied):
``histo.jpg`` (a real H&E tile, no labels) and ``img2d.tif`` + ``mask2d.tif`` (a fluorescence nuclei image from the
2018 Data Science Bowl with 125 instance masks).

* H&E tile: Macenko finds hematoxylin and eosin vectors close to the reference ones; Macenko and Reinhard map it onto
  the reference; a tiled normalisation read region by region from a tiled TIFF (source stains estimated once) equals
  the whole-image normalisation pixel for pixel (no seams).
* Real masks: stitching tiled == untiled (exact), mAP equal to pycocotools on perturbed predictions, AJI/PQ/Dice
  sanity, COCO-JSON round trip (and pycocotools reads our file).

All tests skip cleanly when stardist is not installed. About 5 s on 2 CPU cores."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from mednets.metrics.coco_instances import (aggregated_jaccard_index, coco_average_precision,
                                            instance_segmentation_metrics, masks_from_label_map, panoptic_quality)
from NucleiMaskyloLib.datasets import load_coco, write_coco
from NucleiMaskyloLib.detections import Detections
from NucleiMaskyloLib.stain import MACENKO_REFERENCE, StainNormalizer, macenko_stains
from NucleiMaskyloLib.tiling import RegionReader, stitch_tiles, tile_grid


def _stardist_images() -> Path | None:
    spec = importlib.util.find_spec("stardist")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
    return folder if (folder / "histo.jpg").is_file() and (folder / "mask2d.tif").is_file() else None


IMAGES = _stardist_images()
pytestmark = pytest.mark.skipif(IMAGES is None, reason="stardist (test dependency with real images) is not installed")


@pytest.fixture(scope="module")
def histo():
    from skimage.io import imread

    return np.asarray(imread(str(IMAGES / "histo.jpg")))[..., :3]


@pytest.fixture(scope="module")
def real_masks():
    return tifffile.imread(str(IMAGES / "img2d.tif")), tifffile.imread(str(IMAGES / "mask2d.tif")).astype(np.int32)


def angle(u, v):
    return float(np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1))))


def test_macenko_on_real_he(histo):
    assert histo.shape == (300, 500, 3) and histo.dtype == np.uint8
    found = macenko_stains(histo)
    reference = np.asarray(MACENKO_REFERENCE["stains"])
    # hematoxylin absorbs more red than eosin; both near the reference stains measured on other H&E slides
    assert found["stains"][0, 0] > found["stains"][0, 1]
    assert angle(found["stains"][:, 0], reference[:, 0]) < 25 and angle(found["stains"][:, 1], reference[:, 1]) < 25
    normalizer = StainNormalizer("macenko")
    out = normalizer.transform(histo)
    after = macenko_stains(out)
    for k in range(2):
        assert angle(after["stains"][:, k], reference[:, k]) < 3.0
    np.testing.assert_allclose(after["max_concentrations"], MACENKO_REFERENCE["max_concentrations"], rtol=0.1)


def test_reinhard_on_real_he(histo):
    from skimage.color import rgb2lab

    normalizer = StainNormalizer("reinhard")
    lab = rgb2lab(normalizer.transform(histo)).reshape(-1, 3)
    np.testing.assert_allclose(lab.mean(0), normalizer.reference["mean"], atol=1.5)
    np.testing.assert_allclose(lab.std(0), normalizer.reference["std"], rtol=0.1)


def test_tiled_normalisation_has_no_seams(histo, tmp_path):
    path = tmp_path / "histo.tif"
    tifffile.imwrite(path, histo, photometric="rgb", tile=(64, 64), compression="zlib")
    normalizer = StainNormalizer("macenko")
    source = normalizer.estimate_source(histo)  # one estimate for the whole slide
    whole = normalizer.transform(histo, source)
    tiled = np.zeros_like(whole)
    with RegionReader(path) as reader:
        for tile in tile_grid(reader.shape, tile_size=128, overlap=32):
            cy0, cx0, cy1, cx1 = tile.core
            pixels = normalizer.transform(reader.read(tile.y0, tile.x0, tile.y1, tile.x1), source)
            tiled[cy0:cy1, cx0:cx1] = pixels[cy0 - tile.y0:cy1 - tile.y0, cx0 - tile.x0:cx1 - tile.x0]
    assert np.array_equal(tiled, whole)


def test_stitching_real_masks(real_masks):
    _, truth = real_masks
    assert len(np.unique(truth)) == 126  # 125 nuclei (label values are not consecutive)
    grid = tile_grid(truth.shape, tile_size=128, overlap=64)
    found = []
    for tile in grid:
        masks, _ = masks_from_label_map(truth[tile.y0:tile.y1, tile.x0:tile.x1])
        found.append(Detections(np.zeros((len(masks), 4)), np.full(len(masks), 0.9), masks))
    stitched = stitch_tiles(truth.shape, grid, found)
    assert len(stitched) == 125
    rebuilt = stitched.label_map()
    pairs = set(zip(rebuilt.ravel().tolist(), truth.ravel().tolist()))
    assert len(pairs) == 126  # a one-to-one relabelling: identical instances


def perturbed_predictions(truth, seed=0):
    """Each real nucleus eroded or dilated at random, 10 % missed, a few false ones; scores correlate with quality."""
    rng = np.random.default_rng(seed)
    masks, _ = masks_from_label_map(truth)
    out, scores = [], []
    for mask in masks:
        if rng.random() < 0.1:
            continue
        change = rng.integers(-2, 3)
        if change > 0:
            mask = ndimage.binary_dilation(mask, iterations=int(change))
        elif change < 0:
            eroded = ndimage.binary_erosion(mask, iterations=int(-change))
            mask = eroded if eroded.any() else mask
        out.append(mask)
        scores.append(float(np.clip(0.9 - 0.1 * abs(change) + rng.normal(0, 0.05), 0.01, 1)))
    for _ in range(6):
        fake = np.zeros_like(masks[0])
        y, x = rng.integers(10, truth.shape[0] - 10, 2)
        fake[y - 4:y + 4, x - 4:x + 4] = True
        out.append(fake)
        scores.append(float(rng.uniform(0.1, 0.6)))
    return np.array(out), np.array(scores)


def test_map_on_real_masks_equals_pycocotools(real_masks):
    mask_utils = pytest.importorskip("pycocotools.mask")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _, truth = real_masks
    masks, scores = perturbed_predictions(truth)
    gt_masks, _ = masks_from_label_map(truth)

    def rle(mask):
        encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        encoded["counts"] = encoded["counts"].decode()
        return encoded

    annotations = [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": rle(m),
                    "area": float(m.sum()), "bbox": [float(v) for v in mask_utils.toBbox(rle(m))]}
                   for i, m in enumerate(gt_masks)]
    results = [{"image_id": 1, "category_id": 1, "segmentation": rle(m), "score": float(s)}
               for m, s in zip(masks, scores)]
    for max_dets in (100, 300):
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = {"images": [{"id": 1, "height": 512, "width": 512}], "annotations": annotations,
                            "categories": [{"id": 1, "name": "nucleus"}]}
            coco.createIndex()
            evaluation = COCOeval(coco, coco.loadRes([dict(r) for r in results]), "segm")  # loadRes edits in place
            evaluation.params.maxDets = [1, 10, max_dets]
            evaluation.evaluate()
            evaluation.accumulate()
        precision = evaluation.eval["precision"][:, :, 0, 0, 2]
        ours = coco_average_precision([gt_masks], [{"masks": masks, "scores": scores}], "segm", max_dets=max_dets)
        assert ours["mAP"] == pytest.approx(precision.mean(), abs=1e-6)
        assert ours["mAP50"] == pytest.approx(precision[0].mean(), abs=1e-6)
    assert 0.5 < ours["mAP50"] < 1.0


def test_instance_metrics_on_real_masks(real_masks):
    _, truth = real_masks
    assert aggregated_jaccard_index(truth, truth) == 1.0 and panoptic_quality(truth, truth)["pq"] == 1.0
    masks, scores = perturbed_predictions(truth, seed=1)
    table = instance_segmentation_metrics(truth, {"masks": masks, "scores": scores}, max_dets=300)
    assert 0.8 < table["recall"] <= 0.92 and 0.85 < table["precision"] < 1.0
    assert 0.6 < table["aji"] < table["dice"] < 1.0 and 0.5 < table["pq"] < 0.9
    assert table["n_reference"] == 125


def test_coco_round_trip_real_masks(real_masks, tmp_path):
    _, truth = real_masks
    path = write_coco(tmp_path / "dsb.json", [truth], ["img2d.tif"])
    back = load_coco(path)[0]["labels"]
    assert len(set(zip(back.ravel().tolist(), truth.ravel().tolist()))) == 126
    coco_module = pytest.importorskip("pycocotools.coco")
    coco = coco_module.COCO(str(path))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(anns) == 125
    union = np.zeros(truth.shape, bool)
    for ann in anns:
        union |= coco.annToMask(ann).astype(bool)
    assert np.array_equal(union, truth > 0)
