"""Datasets: the NuInsSeg folder layout (written here in miniature from phantoms), COCO-JSON export/import with our
RLE codec checked against pycocotools (encode strings, decode masks, COCO API reading our files), instance label
map TIFF export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from skimage.io import imsave

from mednets.phantoms.he_nuclei import he_nuclei_phantom
from NucleiMaskyloLib.datasets import (load_coco, load_nuinsseg_case, read_label_map, rle_decode, rle_encode,
                                       scan_nuinsseg, write_coco, write_label_map)


def same_partition(a, b):
    """Same instances up to renumbering."""
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist()))
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def test_nuinsseg_layout(tmp_path):
    for organ, seeds in (("human liver", (1, 2)), ("mouse lung", (3,))):
        for seed in seeds:
            case = he_nuclei_phantom(seed, shape=(64, 64))
            (tmp_path / organ / "tissue images").mkdir(parents=True, exist_ok=True)
            (tmp_path / organ / "label masks modify").mkdir(parents=True, exist_ok=True)
            imsave(tmp_path / organ / "tissue images" / f"{organ}_{seed}.png", case.image, check_contrast=False)
            tifffile.imwrite(tmp_path / organ / "label masks modify" / f"{organ}_{seed}.tif",
                             case.labels.astype(np.uint16))
    (tmp_path / "notes").mkdir()
    cases = scan_nuinsseg(tmp_path)
    assert [(c.organ, c.name) for c in cases] == [("human liver", "human liver_1"), ("human liver", "human liver_2"),
                                                 ("mouse lung", "mouse lung_3")]
    image, labels, vague = load_nuinsseg_case(cases[2])
    truth = he_nuclei_phantom(3, shape=(64, 64))
    assert np.array_equal(image, truth.image) and np.array_equal(labels, truth.labels) and vague is None
    assert len(scan_nuinsseg(tmp_path, organs=["mouse lung"])) == 1
    with pytest.raises(ValueError, match="no NuInsSeg"):
        scan_nuinsseg(tmp_path / "notes")


def test_rle_codec_equals_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    masks = [rng.random((37, 53)) > 0.6, np.zeros((8, 9), bool), np.ones((8, 9), bool),
             he_nuclei_phantom(1, shape=(128, 128)).labels == 3]
    big = np.zeros((300, 400), bool)
    big[10:290, 5:395] = True  # long runs exercise multi-group counts
    masks.append(big)
    for mask in masks:
        ours = rle_encode(mask)
        theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert ours["counts"] == theirs["counts"].decode("ascii") and ours["size"] == list(theirs["size"])
        assert np.array_equal(rle_decode(ours), mask)
        assert np.array_equal(rle_decode(theirs), mask)
    uncompressed = {"size": [2, 3], "counts": [1, 2, 3]}
    assert rle_decode(uncompressed).tolist() == [[False, True, False], [True, False, False]]


def test_coco_round_trip_and_pycocotools_reads_it(tmp_path):
    cases = [he_nuclei_phantom(seed, shape=(96, 128)) for seed in (4, 5)]
    scores = [np.linspace(0.9, 0.5, c.labels.max()) for c in cases]
    path = write_coco(tmp_path / "nuclei.json", [c.labels for c in cases], ["a.png", "b.png"], scores)
    loaded = load_coco(path)
    for case, entry, score in zip(cases, loaded, scores):
        assert entry["labels"].shape == case.labels.shape
        assert same_partition(entry["labels"], case.labels) or np.array_equal(entry["labels"] > 0, case.labels > 0)
        np.testing.assert_allclose(entry["scores"], score)
    coco_module = pytest.importorskip("pycocotools.coco")
    coco = coco_module.COCO(str(path))
    first = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(first) == cases[0].labels.max()
    assert np.array_equal(coco.annToMask(first[2]).astype(bool), cases[0].labels == 3)
    assert first[2]["bbox"][2] > 0 and first[2]["area"] == (cases[0].labels == 3).sum()


def test_coco_polygons_and_label_map_tiff(tmp_path):
    data = {"images": [{"id": 7, "file_name": "x.png", "height": 20, "width": 20}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0,
                             "segmentation": [[2, 2, 8, 2, 8, 6, 2, 6]], "area": 24, "bbox": [2, 2, 6, 4]}],
            "categories": [{"id": 1, "name": "nucleus"}]}
    path = tmp_path / "poly.json"
    path.write_text(json.dumps(data))
    labels = load_coco(path)[0]["labels"]
    assert labels.sum() == 24 and labels[2:6, 2:8].all()
    with pytest.raises(ValueError, match="COCO"):
        (tmp_path / "bad.json").write_text("{}")
        load_coco(tmp_path / "bad.json")
    label_map = he_nuclei_phantom(2, shape=(64, 64)).labels
    written = write_label_map(tmp_path / "labels.tif", label_map)
    assert np.array_equal(read_label_map(written), label_map)
