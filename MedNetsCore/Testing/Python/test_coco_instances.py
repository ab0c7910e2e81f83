"""Instance metrics (mednets.metrics.coco_instances): COCO mAP of masks and boxes equal to pycocotools' COCOeval to
1e-6 on seeded random images (ties in scores, missed and spurious instances, images without references or
detections, more than maxDets detections), precision/recall at IoU 0.5, and AJI / PQ / Dice / IoU against values
worked out by hand. About 3 s on 2 CPU cores."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from mednets.metrics.coco_instances import (
    InstanceSet,
    aggregated_jaccard_index,
    box_iou,
    boxes_from_masks,
    coco_average_precision,
    detection_precision_recall,
    instance_segmentation_metrics,
    label_map_from_masks,
    mask_iou,
    masks_from_label_map,
    panoptic_quality,
)

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def pycocotools_stats(references, detections, iou_type, max_dets=100):
    images, annotations, results = [], [], []
    for index, (gt, dt) in enumerate(zip(references, detections)):
        images.append({"id": index + 1, "height": gt.shape[1], "width": gt.shape[2]})
        for mask in gt:
            rle = _rle(mask)
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": 1, "iscrowd": 0,
                                "segmentation": rle, "area": float(mask.sum()),
                                "bbox": mask_utils.toBbox(rle).tolist()})
        for mask, score in zip(dt["masks"], dt["scores"]):
            rle = _rle(mask)
            results.append({"image_id": index + 1, "category_id": 1, "segmentation": rle, "score": float(score),
                            "bbox": mask_utils.toBbox(rle).tolist()})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "nucleus"}]}
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), iou_type)
        evaluation.params.maxDets = [1, 10, max_dets]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    if max_dets == 100:
        return evaluation.stats
    # summarize() hard-codes maxDets=100 for stats[0]; read the accumulated arrays at the last maxDets instead
    precision = evaluation.eval["precision"][:, :, 0, 0, 2]
    return [precision.mean(), precision[0].mean(), precision[5].mean()]


def random_masks(rng, n, shape=(48, 56)):
    masks = np.zeros((n,) + shape, bool)
    for mask in masks:
        y, x = rng.integers(0, shape[0] - 6), rng.integers(0, shape[1] - 6)
        h, w = rng.integers(3, 14, 2)
        mask[y:y + h, x:x + w] = True
    return masks


def random_case(rng, n_images=3):
    references, detections = [], []
    for _ in range(n_images):
        gt = random_masks(rng, int(rng.integers(0, 9)))
        keep = gt[: int(rng.integers(0, len(gt) + 1))]
        jitter = rng.random(keep.shape) > 0.9
        dt = np.concatenate([keep ^ jitter, random_masks(rng, int(rng.integers(0, 5)))])
        references.append(gt)
        detections.append({"masks": dt, "scores": np.round(rng.random(len(dt)), 1)})  # rounding makes ties
    return references, detections


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
@pytest.mark.parametrize("seed", range(6))
def test_map_equals_pycocotools(seed, iou_type):
    rng = np.random.default_rng(seed)
    references, detections = random_case(rng)
    stats = pycocotools_stats(references, detections, iou_type)
    ours = coco_average_precision([InstanceSet(masks=g) for g in references],
                                  [InstanceSet(masks=d["masks"], scores=d["scores"]) for d in detections], iou_type)
    assert ours["mAP"] == pytest.approx(stats[0], abs=1e-6)
    assert ours["mAP50"] == pytest.approx(stats[1], abs=1e-6)
    assert ours["mAP75"] == pytest.approx(stats[2], abs=1e-6)
    assert ours["AR"] == pytest.approx(stats[8], abs=1e-6)


def test_map_equals_pycocotools_beyond_max_dets():
    rng = np.random.default_rng(11)
    gt = random_masks(rng, 30, (96, 96))
    dt = np.concatenate([gt, random_masks(rng, 20, (96, 96))])
    scores = rng.random(len(dt))
    for max_dets in (10, 100):
        stats = pycocotools_stats([gt], [{"masks": dt, "scores": scores}], "segm", max_dets=max_dets)
        ours = coco_average_precision([gt], [{"masks": dt, "scores": scores}], "segm", max_dets=max_dets)
        assert ours["mAP"] == pytest.approx(stats[0], abs=1e-6)
        assert ours["mAP50"] == pytest.approx(stats[1], abs=1e-6)


def test_map_perfect_and_empty():
    rng = np.random.default_rng(3)
    gt = random_masks(rng, 5)
    perfect = coco_average_precision([gt], [{"masks": gt, "scores": np.linspace(0.9, 0.5, 5)}])
    assert perfect["mAP"] == pytest.approx(1.0) and perfect["mAP50"] == pytest.approx(1.0)
    nothing = coco_average_precision([gt], [{"masks": gt[:0], "scores": np.zeros(0)}])
    assert nothing["mAP"] == 0.0 and nothing["AR"] == 0.0
    assert coco_average_precision([gt[:0]], [{"masks": gt, "scores": np.ones(5)}])["mAP"] == -1.0


def test_label_maps_masks_boxes_round_trip():
    labels = np.zeros((10, 12), np.int32)
    labels[1:4, 2:5] = 7
    labels[6:9, 8:12] = 3
    masks, values = masks_from_label_map(labels)
    assert values.tolist() == [3, 7] and masks.sum(axis=(1, 2)).tolist() == [12, 9]
    assert boxes_from_masks(masks).tolist() == [[8, 6, 12, 9], [2, 1, 5, 4]]
    rebuilt = label_map_from_masks(masks)
    assert np.array_equal(rebuilt > 0, labels > 0) and len(np.unique(rebuilt)) == 3
    overlapping = np.zeros((2, 4, 4), bool)
    overlapping[0, :2] = overlapping[1, 1:3] = True
    assert label_map_from_masks(overlapping, np.array([0.2, 0.9]))[1].tolist() == [2, 2, 2, 2]


def test_ious_by_hand():
    assert box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [2, 2, 4, 4]]).tolist() == [[1 / 7, 0.0]]
    a = np.zeros((1, 4, 4), bool)
    b = np.zeros((2, 4, 4), bool)
    a[0, :2, :2] = True
    b[0, :2, :3] = True
    assert mask_iou(a, b).tolist() == [[4 / 6, 0.0]]


def test_precision_recall_at_half_iou():
    gt = np.zeros((3, 20, 20), bool)
    gt[0, 0:5, 0:5] = gt[1, 10:15, 10:15] = gt[2, 0:5, 12:18] = True
    dt = np.zeros((3, 20, 20), bool)
    dt[0] = gt[0]
    dt[1, 10:15, 10:13] = True  # IoU 0.6: a match
    dt[2, 15:19, 0:4] = True  # no overlap: a false positive
    out = detection_precision_recall([gt], [{"masks": dt, "scores": np.array([0.9, 0.8, 0.7])}])
    assert (out["tp"], out["fp"], out["fn"]) == (2, 1, 1)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(2 / 3)
    strict = detection_precision_recall([gt], [{"masks": dt, "scores": np.array([0.9, 0.8, 0.7])}], iou_threshold=0.7)
    assert strict["tp"] == 1
    high = detection_precision_recall([gt], [{"masks": dt, "scores": np.array([0.9, 0.8, 0.7])}], score_threshold=0.85)
    assert (high["tp"], high["fp"], high["fn"]) == (1, 0, 2)


def hand_case():
    reference = np.zeros((10, 10), np.int32)
    reference[0:4, 0:4] = 1  # 16 px
    reference[6:10, 6:10] = 2  # 16 px
    reference[0:2, 7:10] = 3  # 6 px, missed
    prediction = np.zeros((10, 10), np.int32)
    prediction[0:4, 0:2] = 5  # 8 px inside nucleus 1 (IoU 0.5, not > 0.5)
    prediction[6:10, 6:9] = 9  # 12 px inside nucleus 2 (IoU 0.75)
    prediction[4:6, 0:2] = 4  # 4 px false positive
    return reference, prediction


def test_aji_by_hand():
    reference, prediction = hand_case()
    # C = 8 + 12 + 0, U = 16 + 16 + 6 (missed) + 4 (unused prediction) = 42
    assert aggregated_jaccard_index(reference, prediction) == pytest.approx(20 / 42)
    assert aggregated_jaccard_index(reference, reference) == 1.0
    assert aggregated_jaccard_index(reference, np.zeros_like(reference)) == 0.0
    assert aggregated_jaccard_index(np.zeros_like(reference), np.zeros_like(reference)) == 1.0


def test_pq_by_hand():
    reference, prediction = hand_case()
    pq = panoptic_quality(reference, prediction)
    # only nucleus 2 matches (IoU 0.75 > 0.5): TP 1, FP 2, FN 2 -> DQ = 1 / 3, SQ = 0.75
    assert (pq["tp"], pq["fp"], pq["fn"]) == (1, 2, 2)
    assert pq["dq"] == pytest.approx(1 / 3) and pq["sq"] == pytest.approx(0.75) and pq["pq"] == pytest.approx(0.25)
    assert panoptic_quality(reference, reference)["pq"] == 1.0


def test_instance_segmentation_table():
    reference, prediction = hand_case()
    table = instance_segmentation_metrics(reference, prediction)
    assert table["dice"] == pytest.approx(2 * 20 / (38 + 24)) and table["iou"] == pytest.approx(20 / 42)
    assert table["aji"] == pytest.approx(20 / 42) and table["pq"] == pytest.approx(0.25)
    assert table["precision"] == pytest.approx(2 / 3) and table["recall"] == pytest.approx(2 / 3)  # IoU >= 0.5
    assert table["n_reference"] == 3 and table["n_predicted"] == 3
    assert set(table) >= {"mAP50", "mAP50_95", "box_mAP50", "sq", "dq", "f1"}
    assert instance_segmentation_metrics(reference, reference)["mAP50_95"] == pytest.approx(1.0)
