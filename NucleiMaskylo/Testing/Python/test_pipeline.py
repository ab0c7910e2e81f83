"""Inference pipeline (NucleiMaskyloLib.pipeline): input checks, per-tile Mask R-CNN detections, a consistent label
map + nucleus table, thumbnails read by region, the same result from an array and from a tiled TIFF read region by
region, cancel, and (with the bundled demo weights) tiled == untiled within a stated tolerance."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from mednets.metrics.coco_instances import coco_average_precision
from mednets.phantoms.he_nuclei import he_nuclei_phantom
from mednets.progress import OperationCancelled
from NucleiMaskyloLib import build_model
from NucleiMaskyloLib.detections import Detections
from NucleiMaskyloLib.pipeline import (NucleiPipeline, PipelineSettings, check_rgb_image, labels_and_table,
                                       predict_tile, thumbnail)
from NucleiMaskyloLib.tiling import RegionReader, StitchedInstances


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("mask_rcnn_small", box_detections_per_img=40).eval()


def test_check_rgb_image():
    rgb = he_nuclei_phantom(1, shape=(32, 32)).image
    assert check_rgb_image(rgb[None]) is not None and check_rgb_image(rgb).dtype == np.uint8
    assert check_rgb_image(rgb.astype(np.float32) / 255.0).max() > 200  # [0, 1] floats are scaled
    with pytest.raises(ValueError, match="grey"):
        check_rgb_image(rgb[..., 0])
    with pytest.raises(ValueError, match="constant"):
        check_rgb_image(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        bad = rgb.astype(np.float32)
        bad[0, 0, 0] = np.nan
        check_rgb_image(bad)
    with pytest.raises(ValueError, match="small"):
        check_rgb_image(rgb[:8, :8])
    assert check_rgb_image(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).shape[-1] == 3  # RGBA


def test_predict_tile_gives_sigmoid_masks_in_tile_coordinates(tiny):
    tile = he_nuclei_phantom(2, shape=(80, 96)).image
    found = predict_tile(tiny, tile, score_threshold=0.0)
    assert isinstance(found, Detections) and found.masks.shape[1:] == (80, 96)
    assert found.masks.reshape(len(found), -1).any(axis=1).all()
    assert set(found.branch) <= {"mask_rcnn"} and np.all((found.scores >= 0) & (found.scores <= 1))


def test_labels_and_table_are_consistent():
    crops = [np.ones((4, 4), bool), np.ones((2, 2), bool), np.ones((3, 3), bool)]
    boxes = np.array([[0, 0, 4, 4], [1, 1, 3, 3], [6, 6, 9, 9]])
    stitched = StitchedInstances((10, 10), boxes, crops, np.array([0.9, 0.5, 0.8]), ["mask_rcnn"] * 3)
    labels, table = labels_and_table(stitched, pixel_size_um=0.5)
    # the 2x2 nucleus lies under the more confident 4x4 one and disappears; labels stay consecutive
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]
    assert table["label"] == [1, 2] and table["area_px"] == [16, 9] and table["confidence"] == [0.9, 0.8]
    assert table["centroid_row"] == [1.5, 7.0] and table["area_um2"] == [4.0, 2.25]


def test_thumbnail_reads_by_region(tmp_path):
    image = he_nuclei_phantom(3, shape=(300, 200)).image
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, image, photometric="rgb", tile=(64, 64), compression="zlib")
    with RegionReader(path) as reader:
        small = thumbnail(reader, max_pixels=10_000)
    assert np.array_equal(small, image[::3, ::3])


def test_pipeline_array_equals_tiff_and_cancels(tiny, tmp_path):
    image = he_nuclei_phantom(4, shape=(200, 240)).image
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, image, photometric="rgb", tile=(64, 64), compression="zlib")
    settings = PipelineSettings(tile_size=128, overlap=48, score_threshold=0.05)
    pipeline = NucleiPipeline(tiny, settings)
    from_array = pipeline.predict(image)
    from_file = pipeline.predict(str(path))
    assert np.array_equal(from_array.label_map(), from_file.label_map())
    with pytest.raises(OperationCancelled):
        pipeline.predict(image, cancel=lambda: True)
    with pytest.raises(ValueError, match="RGB"):
        pipeline.predict(image[..., 0])


def test_tiled_equals_untiled_with_demo_weights():
    from NucleiMaskyloLib.models import CATALOGUE, load_nuclei_model

    if not CATALOGUE.is_file():
        pytest.skip("the bundled demo weights are not built yet")
    torch.set_num_threads(2)
    loaded, _ = load_nuclei_model(device="cpu")
    image = he_nuclei_phantom(77, shape=(256, 256)).image
    untiled = NucleiPipeline(loaded.network, PipelineSettings(tile_size=256, overlap=0)).predict(image)
    tiled = NucleiPipeline(loaded.network, PipelineSettings(tile_size=128, overlap=64,
                                                            score_threshold=0.05)).predict(image)
    assert len(untiled) > 30
    # Tolerance: taking the untiled nuclei (score >= 0.5) as the reference, the tiled ones (all scores, ranked) reach
    # mAP@50 >= 0.9 (the network sees different context near tile borders, so a few borderline nuclei change; a
    # nucleus cut in two or counted twice would fail to match at IoU 0.5).
    reference = untiled.label_map()
    ap = coco_average_precision([reference], [{"masks": tiled.full_masks(), "scores": tiled.scores}], "segm",
                                max_dets=1000)
    assert ap["mAP50"] >= 0.9, ap


def test_weights_of_another_module_or_tampered_are_refused(tmp_path, tiny):
    from mednets.checkpoints import CheckpointError, CheckpointMetadata, save_checkpoint
    from NucleiMaskyloLib.models import load_nuclei_model
    from NucleiMaskyloLib.training import save_nuclei_checkpoint

    foreign = tmp_path / "foreign.safetensors"
    save_checkpoint(foreign, tiny, CheckpointMetadata(architecture="mask_rcnn_small", module="OrganCombo"))
    with pytest.raises(CheckpointError, match="OrganCombo"):
        load_nuclei_model(str(foreign), device="cpu")
    ours = tmp_path / "ours.safetensors"
    save_nuclei_checkpoint(ours, tiny, "mask_rcnn_small", {"box_detections_per_img": 40})
    data = bytearray(ours.read_bytes())
    data[-10] ^= 0xFF  # flip bits in the last tensor
    ours.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_nuclei_model(str(ours), device="cpu")
