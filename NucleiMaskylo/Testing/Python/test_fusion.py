"""Fusion of branch outputs (NucleiMaskyloLib.fusion) on hand-made boxes and masks: IoU voting, confidence weighting
and weighted box fusion with values worked out by hand, the configurable IoU threshold, no merging within one branch,
detection-only branches refined by a segmentation branch."""

from __future__ import annotations

import numpy as np
import pytest

from NucleiMaskyloLib.detections import Detections
from NucleiMaskyloLib.fusion import FUSION_METHODS, fuse


def box_masks(boxes, shape=(64, 64)):
    masks = np.zeros((len(boxes),) + shape, bool)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes):
        mask[y0:y1, x0:x1] = True
    return masks


A_BOXES = [[0, 0, 10, 10], [20, 20, 30, 30]]
B_BOXES = [[1, 1, 11, 11], [50, 50, 60, 60]]


def branches(with_masks=True):
    a = Detections(A_BOXES, [0.9, 0.8], box_masks(A_BOXES) if with_masks else None, "mask_rcnn")
    b = Detections(B_BOXES, [0.7, 0.6], box_masks(B_BOXES) if with_masks else None, "yolo_seg")
    return [a, b]


def test_iou_voting_keeps_agreed_nuclei():
    fused = fuse(branches(), "iou_voting", iou_threshold=0.5)
    # only the first nucleus was found by both branches (IoU 81/119 = 0.68)
    assert len(fused) == 1
    assert fused.boxes[0].tolist() == [0, 0, 10, 10]  # the best-scoring member's box and mask
    assert fused.scores[0] == pytest.approx((0.9 + 0.7) / 2)
    assert fused.branch == ["fused"]
    assert np.array_equal(fused.masks[0], box_masks([A_BOXES[0]])[0])
    single_vote = fuse(branches(), "iou_voting", min_votes=1)
    assert len(single_vote) == 3 and sorted(single_vote.scores.round(3).tolist()) == [0.3, 0.4, 0.8]


def test_confidence_weighting_by_hand():
    fused = fuse(branches(), "confidence_weighting")
    assert len(fused) == 3
    first = int(np.argmax(fused.scores))
    expected = (0.9 * np.array(A_BOXES[0]) + 0.7 * np.array(B_BOXES[0])) / 1.6
    np.testing.assert_allclose(fused.boxes[first], expected)
    assert fused.scores[first] == pytest.approx(0.8)
    # weighted mask vote: pixels of A only have weight 0.9/1.6 >= 0.5, pixels of B only 0.7/1.6 < 0.5
    assert np.array_equal(fused.masks[first], box_masks([A_BOXES[0]])[0])
    assert sorted(fused.scores.round(3).tolist()) == [0.3, 0.4, 0.8]


def test_weighted_box_fusion_by_hand():
    fused = fuse(branches(), "wbf")
    order = np.argsort(-fused.scores)
    np.testing.assert_allclose(fused.boxes[order[0]], (0.9 * np.array(A_BOXES[0]) + 0.7 * np.array(B_BOXES[0])) / 1.6)
    # mean score of the cluster x min(members, branches) / branches; singletons are halved
    np.testing.assert_allclose(fused.scores[order], [0.8, 0.4, 0.3])
    boxes_only = fuse(branches(with_masks=False), "wbf")
    assert boxes_only.masks is None and len(boxes_only) == 3


def test_wbf_running_box_and_three_branches():
    a = Detections([[0, 0, 10, 10]], [0.6], None, "mask_rcnn")
    b = Detections([[2, 0, 12, 10]], [0.6], None, "yolo_seg")
    c = Detections([[4, 0, 14, 10]], [0.6], None, "yolo_det")
    fused = fuse([a, b, c], "wbf", iou_threshold=0.5)
    # [4,0,14,10] has IoU 60/140 = 0.43 with the first box but 70/130 = 0.54 with the running fused box [1,0,11,10]
    assert len(fused) == 1
    np.testing.assert_allclose(fused.boxes[0], [2, 0, 12, 10])
    assert fused.scores[0] == pytest.approx(0.6)


def test_iou_threshold_is_configurable():
    # the pair overlaps with IoU 0.68: merged at 0.5, kept apart at 0.7
    assert len(fuse(branches(), "confidence_weighting", iou_threshold=0.5)) == 3
    assert len(fuse(branches(), "confidence_weighting", iou_threshold=0.7)) == 4
    assert len(fuse(branches(), "iou_voting", iou_threshold=0.7)) == 0
    with pytest.raises(ValueError, match="iou_threshold"):
        fuse(branches(), "wbf", iou_threshold=0.0)
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse(branches(), "average")


def test_same_branch_never_merges():
    a = Detections([[0, 0, 10, 10], [0, 0, 10, 9]], [0.9, 0.8], box_masks([[0, 0, 10, 10], [0, 0, 10, 9]]), "mask_rcnn")
    for method in FUSION_METHODS:
        assert len(fuse([a], method, min_votes=1)) == 2


def test_detection_branch_refined_by_segmentation_branch():
    detector = Detections([[0, 0, 10, 10], [40, 40, 50, 50]], [0.95, 0.9], None, "yolo_det")
    segmenter = Detections([[1, 1, 11, 11]], [0.6], box_masks([[1, 1, 11, 11]]), "yolo_seg")
    fused = fuse([detector, segmenter], "iou_voting", min_votes=1)
    # the agreed nucleus takes the segmenter's mask; the box-only one has no mask and is dropped by default
    assert len(fused) == 1 and fused.boxes[0].tolist() == [1, 1, 11, 11]
    assert fused.masks[0].sum() == 100
    kept = fuse([detector, segmenter], "iou_voting", min_votes=1, box_only_masks="box")
    assert len(kept) == 2 and kept.masks[1].sum() == 100 and kept.branch[1] == "yolo_det"
