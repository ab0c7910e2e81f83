"""Tests of mednets.metrics.targetwise: ROC AUC and average precision equal scikit-learn's (random scores, ties,
probability maps), target extraction (volume, centre, radius, diameter), target-wise matching by centre distance and
radii, case-wise sensitivity/specificity, and the voxel-wise metric set."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mednets.metrics.targetwise import (average_precision, case_wise_metrics, find_targets, match_targets, roc_auc,
                                        summarize_targets, voxel_detection_metrics)

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_ap_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 2000
    labels = rng.random(n) < 0.1
    scores = rng.random(n) + 0.5 * labels
    if seed % 2:  # many ties
        scores = np.round(scores, 1)
    assert roc_auc(scores, labels) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(scores, labels) == pytest.approx(
        sklearn_metrics.average_precision_score(labels, scores), abs=1e-12)


def test_auc_ap_on_a_probability_volume_and_edge_cases():
    rng = np.random.default_rng(7)
    ref = np.zeros((20, 20, 20), bool)
    ref[5:9, 5:9, 5:9] = True
    prob = np.clip(rng.normal(0.2, 0.1, ref.shape) + 0.5 * ref, 0, 1).astype(np.float32)
    assert roc_auc(prob, ref) == pytest.approx(sklearn_metrics.roc_auc_score(ref.ravel(), prob.ravel()), abs=1e-12)
    assert average_precision(prob, ref) == pytest.approx(
        sklearn_metrics.average_precision_score(ref.ravel(), prob.ravel()), abs=1e-12)
    assert roc_auc([0.1, 0.9], [1, 0]) == 0.0 and roc_auc([0.1, 0.9], [0, 1]) == 1.0
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1])) and math.isnan(average_precision([0.1, 0.2], [0, 0]))
    assert average_precision([0.5, 0.5, 0.5], [1, 0, 0]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="size"):
        roc_auc([0.1], [0, 1])


def ball(shape, centre, radius):
    grid = np.indices(shape)
    return ((grid - np.asarray(centre)[:, None, None, None]) ** 2).sum(0) <= radius ** 2


def test_find_targets_geometry():
    mask = ball((30, 30, 30), (10, 10, 10), 4) | ball((30, 30, 30), (24, 24, 24), 2)
    mask[0, 0, 0] = True  # a single voxel
    components, targets = find_targets(mask, spacing=(2.0, 1.0, 1.0))
    assert len(targets) == 3 and components.max() == 3
    big = max(targets, key=lambda t: t.voxels)
    assert big.voxels == int(ball((30, 30, 30), (10, 10, 10), 4).sum())
    assert big.volume_mm3 == pytest.approx(2.0 * big.voxels)
    assert big.centre_kji == pytest.approx((10, 10, 10)) and big.centre_mm == pytest.approx((20, 10, 10))
    assert big.radius_mm == pytest.approx((3 * big.volume_mm3 / (4 * math.pi)) ** (1 / 3))
    # extent along K: 9 voxels of 2 mm = 18 mm
    assert big.max_diameter_mm == pytest.approx(18.0, abs=0.5)
    single = min(targets, key=lambda t: t.voxels)
    assert single.voxels == 1 and single.max_diameter_mm == 2.0
    _, kept = find_targets(mask, min_voxels=1)
    assert len(kept) == 2


def test_match_targets_rule():
    shape = (40, 40, 40)
    ref = ball(shape, (10, 10, 10), 3) | ball(shape, (30, 30, 30), 3)
    # prediction: one shifted hit (distance 4 < 2 * 3.1), one far false positive, the second aneurysm missed
    pred = ball(shape, (10, 10, 14), 3) | ball(shape, (30, 8, 8), 2)
    match = match_targets(pred, ref)
    assert (match.tp, match.fp, match.fn) == (1, 1, 1)
    assert match.recall == 0.5 and match.precision == 0.5
    # a prediction just beyond the sum of radii does not match
    far = ball(shape, (10, 10, 10 + 8), 3)
    assert match_targets(far, ball(shape, (10, 10, 10), 3)).tp == 0
    # two predictions on one aneurysm: one TP, no FP
    split = ball(shape, (10, 10, 8), 1) | ball(shape, (10, 10, 12), 1)
    twice = match_targets(split, ball(shape, (10, 10, 10), 3))
    assert (twice.tp, twice.fp, twice.fn) == (1, 0, 0)
    # anisotropic spacing changes distances in mm
    assert match_targets(ball(shape, (10, 10, 14), 3), ball(shape, (10, 10, 10), 3), spacing=(1, 1, 3)).tp == 0
    summary = summarize_targets([match, twice, match_targets(np.zeros(shape), np.zeros(shape))])
    assert summary["recall"] == pytest.approx(2 / 3) and summary["fp_per_case"] == pytest.approx(1 / 3)
    # the official variant: closing merges the two halves, small regions ignored
    merged = match_targets(split, ball(shape, (10, 10, 10), 3), closing=7)
    assert len(merged.predicted) == 1
    assert len(match_targets(ball(shape, (5, 5, 5), 1), ref, min_voxels=10).predicted) == 0


def test_case_wise_metrics():
    out = case_wise_metrics([True, True, False, False, True], [True, False, False, True, True])
    assert out["sensitivity"] == pytest.approx(2 / 3) and out["specificity"] == 0.5 and out["accuracy"] == 0.6
    assert math.isnan(case_wise_metrics([True], [True])["specificity"])


def test_voxel_detection_metrics():
    ref = ball((20, 20, 20), (10, 10, 10), 3)
    prob = np.where(ball((20, 20, 20), (10, 10, 11), 3), 0.9, 0.1).astype(np.float32)
    out = voxel_detection_metrics(prob, ref, spacing=(1, 1, 1))
    pred = prob > 0.5
    tp = int((pred & ref).sum())
    assert out["precision"] == pytest.approx(tp / pred.sum()) and out["recall"] == pytest.approx(tp / ref.sum())
    assert out["dsc"] == pytest.approx(2 * tp / (pred.sum() + ref.sum()))
    assert out["hd95"] == pytest.approx(1.0)
    assert out["auc"] == pytest.approx(sklearn_metrics.roc_auc_score(ref.ravel(), prob.ravel()))
    assert out["ap"] == pytest.approx(sklearn_metrics.average_precision_score(ref.ravel(), prob.ravel()))
    empty = voxel_detection_metrics(np.zeros((5, 5, 5)), np.zeros((5, 5, 5)))
    assert math.isnan(empty["hd95"]) and math.isnan(empty["auc"])
