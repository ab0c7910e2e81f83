"""Tests of mednets.metrics: overlap and surface-distance metrics against MONAI (the oracle) and medpy, hand-computed
values, empty-mask conventions, input checks, and hypothesis properties (symmetry, bounds, translation invariance)."""

from __future__ import annotations

import warnings
from typing import Optional, Sequence, Tuple

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from medpy.metric import binary as medpy_binary
from monai.metrics import (
    compute_average_surface_distance,
    compute_confusion_matrix_metric,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    get_confusion_matrix,
)
from scipy import ndimage

from mednets import metrics
from mednets.progress import OperationCancelled

RTOL = 1e-6  # MONAI returns float32; ours are float64


def random_blob(shape: Sequence[int], seed: int, smoothness: float = 2.0, fill: float = 0.35) -> np.ndarray:
    """Irregular binary mask (possibly several components) from thresholded smooth noise."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), smoothness)
    return noise > np.quantile(noise, 1.0 - fill)


def blob_pair(shape: Sequence[int], seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """A reference blob and a prediction that overlaps it imperfectly (shifted, dilated and noisy)."""
    ref = random_blob(shape, seed)
    pred = np.roll(ndimage.binary_dilation(ref), 1, axis=0) ^ random_blob(shape, seed + 1000, 1.0, 0.05)
    return pred, ref


def as_batch(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]


def monai_distances(pred: np.ndarray, ref: np.ndarray, spacing: Optional[Sequence[float]]) -> Tuple[float, ...]:
    """MONAI's HD, HD95 and symmetric average surface distance."""
    p, r = as_batch(pred), as_batch(ref)
    spacing = None if spacing is None else list(spacing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns about empty masks
        hd = compute_hausdorff_distance(p, r, include_background=True, spacing=spacing).item()
        hd95 = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=spacing).item()
        msd = compute_average_surface_distance(p, r, include_background=True, symmetric=True, spacing=spacing).item()
    return hd, hd95, msd


def monai_overlap(pred: np.ndarray, ref: np.ndarray) -> dict:
    p, r = as_batch(pred), as_batch(ref)
    confusion = get_confusion_matrix(p, r)
    confusion_metric = {
        "precision": "precision", "recall": "sensitivity",
        "false_positive_rate": "fall out", "false_negative_rate": "miss rate",
    }
    values = {ours: compute_confusion_matrix_metric(theirs, confusion).item()
              for ours, theirs in confusion_metric.items()}
    values["dice"] = compute_dice(p, r, ignore_empty=False).item()
    values["jaccard"] = compute_iou(p, r, ignore_empty=False).item()
    return values


def ours_overlap(pred: np.ndarray, ref: np.ndarray) -> dict:
    return {name: getattr(metrics, name)(pred, ref) for name in
            ("dice", "jaccard", "precision", "recall", "false_positive_rate", "false_negative_rate")}


def assert_metric_dicts_close(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=RTOL, atol=1e-7, equal_nan=True, err_msg=name)


# ---------------------------------------------------------------------------------------------------------------------
# Overlap metrics


def test_overlap_metrics_hand_computed():
    pred = np.array([[1, 1, 1, 0], [0, 0, 0, 0]], dtype=np.uint8)
    ref = np.array([[0, 1, 1, 1], [1, 0, 0, 0]], dtype=bool)
    counts = metrics.confusion_counts(pred, ref)
    assert (counts.tp, counts.fp, counts.fn, counts.tn) == (2, 1, 2, 3)
    assert metrics.dice(pred, ref) == pytest.approx(4 / 7)
    assert metrics.jaccard(pred, ref) == pytest.approx(2 / 5)
    assert metrics.precision(pred, ref) == pytest.approx(2 / 3)
    assert metrics.recall(pred, ref) == pytest.approx(2 / 4)
    assert metrics.false_positive_rate(pred, ref) == pytest.approx(1 / 4)
    assert metrics.false_negative_rate(pred, ref) == pytest.approx(2 / 4)


@pytest.mark.parametrize("shape", [(40, 36), (20, 24, 22)], ids=["2d", "3d"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overlap_metrics_match_monai(shape, seed):
    pred, ref = blob_pair(shape, seed)
    assert 0.3 < metrics.dice(pred, ref) < 0.95  # a non-trivial overlap
    assert_metric_dicts_close(ours_overlap(pred, ref), monai_overlap(pred, ref))


@pytest.mark.parametrize(
    "pred_full, ref_full, expected",
    [
        (False, False, {"dice": 1.0, "jaccard": 1.0, "precision": np.nan, "recall": np.nan,
                        "false_positive_rate": 0.0, "false_negative_rate": np.nan}),
        (False, True, {"dice": 0.0, "jaccard": 0.0, "precision": np.nan, "recall": 0.0,
                       "false_positive_rate": 0.0, "false_negative_rate": 1.0}),
        (True, False, {"dice": 0.0, "jaccard": 0.0, "precision": 0.0, "recall": np.nan,
                       "false_positive_rate": 8 / 42, "false_negative_rate": np.nan}),
    ],
    ids=["both-empty", "pred-empty", "ref-empty"],
)
def test_overlap_metrics_of_empty_masks_follow_monai(pred_full, ref_full, expected):
    pred = np.zeros((6, 7), bool)
    ref = np.zeros((6, 7), bool)
    pred[2:4, 1:5] = pred_full
    ref[1:4, 2:6] = ref_full
    ours = ours_overlap(pred, ref)
    assert_metric_dicts_close(ours, expected)
    assert_metric_dicts_close(ours, monai_overlap(pred, ref))


def test_false_positive_rate_is_nan_when_reference_covers_everything():
    ref = np.ones((4, 4), bool)
    pred = np.eye(4, dtype=bool)
    assert np.isnan(metrics.false_positive_rate(pred, ref))
    assert metrics.recall(pred, ref) == pytest.approx(0.25)


# ---------------------------------------------------------------------------------------------------------------------
# Surface voxels and distances


@pytest.mark.parametrize("shape", [(30, 27), (14, 16, 15)], ids=["2d", "3d"])
def test_surface_voxels_equal_scipy_erosion_border_included(shape):
    mask = random_blob(shape, 7, fill=0.5)
    mask[0] = True  # foreground on the array border is surface
    expected = mask ^ ndimage.binary_erosion(mask)
    np.testing.assert_array_equal(metrics.surface_voxels(mask), expected)
    assert metrics.surface_voxels(mask)[0].all()


def test_hausdorff_and_mean_surface_distance_hand_computed():
    # Two 4x4 squares, the second 3 rows lower; spacing 2.0 along rows, 1.0 along columns.
    pred = np.zeros((12, 8), bool)
    ref = np.zeros((12, 8), bool)
    pred[2:6, 2:6] = True
    ref[5:9, 2:6] = True
    spacing = (2.0, 1.0)
    assert metrics.hausdorff_distance(pred, ref, spacing) == pytest.approx(6.0)
    # Each square has 12 surface pixels. Direction pred->ref: the top row (4 pixels) is 3 rows from ref's top row,
    # rows 3 and 4 (2+2 side pixels) are 2 and 1 rows away, the bottom row (4 pixels) lies on ref's top row.
    # The reverse direction is the mirror image, so the mean is (4*3 + 2*2 + 2*1 + 4*0) * 2.0 / 12.
    assert metrics.mean_surface_distance(pred, ref, spacing) == pytest.approx(36.0 / 12.0)
    distances = metrics.surface_distances(pred, ref, spacing)
    np.testing.assert_allclose(np.sort(distances.pred_to_ref), [0] * 4 + [2, 2, 4, 4] + [6] * 4)
    # 95th percentile of 12 sorted values with linear interpolation: index 10.45 between 6 and 6.
    assert metrics.hausdorff_distance(pred, ref, spacing, percentile=95) == pytest.approx(6.0)
    assert metrics.hausdorff_distance(pred, ref, spacing, percentile=50) == pytest.approx(3.0)


SPACINGS_2D = [None, (1.5, 1.5), (2.5, 0.7)]
SPACINGS_3D = [None, (1.2, 1.2, 1.2), (3.0, 0.8, 1.1)]


@pytest.mark.parametrize(
    "shape, spacing",
    [((48, 44), s) for s in SPACINGS_2D] + [((22, 26, 24), s) for s in SPACINGS_3D],
    ids=[f"2d-{s}" for s in SPACINGS_2D] + [f"3d-{s}" for s in SPACINGS_3D],
)
@pytest.mark.parametrize("seed", [3, 4])
def test_surface_distances_match_monai(shape, spacing, seed):
    pred, ref = blob_pair(shape, seed)
    hd, hd95, msd = monai_distances(pred, ref, spacing)
    assert hd > hd95 > 0 and msd > 0
    np.testing.assert_allclose(metrics.hausdorff_distance(pred, ref, spacing), hd, rtol=RTOL)
    np.testing.assert_allclose(metrics.hausdorff_distance(pred, ref, spacing, percentile=95), hd95, rtol=RTOL)
    np.testing.assert_allclose(metrics.mean_surface_distance(pred, ref, spacing), msd, rtol=RTOL)


@pytest.mark.parametrize("spacing", [None, (0.6, 2.0, 1.3)])
def test_surface_distances_match_monai_for_disjoint_masks_touching_the_border(spacing):
    pred = np.zeros((16, 20, 18), bool)
    ref = np.zeros_like(pred)
    pred[0:5, 0:6, 2:9] = True  # touches three array faces
    pred[10:16, 15:20, 14:18] = True  # a second component in the opposite corner
    ref[6:12, 8:14, 5:12] = True
    hd, hd95, msd = monai_distances(pred, ref, spacing)
    np.testing.assert_allclose(metrics.hausdorff_distance(pred, ref, spacing), hd, rtol=RTOL)
    np.testing.assert_allclose(metrics.hausdorff_distance(pred, ref, spacing, percentile=95), hd95, rtol=RTOL)
    np.testing.assert_allclose(metrics.mean_surface_distance(pred, ref, spacing), msd, rtol=RTOL)
    assert metrics.dice(pred, ref) == 0.0


def test_surface_distances_of_empty_masks():
    empty = np.zeros((10, 12, 9), bool)
    box = empty.copy()
    box[3:7, 4:9, 2:6] = True
    assert np.isnan(metrics.hausdorff_distance(empty, empty))
    assert np.isnan(metrics.hausdorff_distance(empty, empty, percentile=95))
    assert np.isnan(metrics.mean_surface_distance(empty, empty))
    np.testing.assert_array_equal(monai_distances(empty, empty, None), [np.nan] * 3)
    for pred, ref in [(empty, box), (box, empty)]:
        assert metrics.hausdorff_distance(pred, ref) == np.inf
        assert metrics.hausdorff_distance(pred, ref, percentile=95) == np.inf
        assert metrics.mean_surface_distance(pred, ref) == np.inf
        hd, hd95, msd = monai_distances(pred, ref, None)
        assert hd == np.inf and msd == np.inf
        assert np.isnan(hd95)  # MONAI's torch.quantile over infinities: the one convention we do not copy


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_directed_distances_equal_brute_force(data):
    ndim = data.draw(st.sampled_from([2, 3]), label="ndim")
    shape = data.draw(st.tuples(*[st.integers(2, 9)] * ndim), label="shape")
    pred = data.draw(arrays(np.bool_, shape), label="pred")
    ref = data.draw(arrays(np.bool_, shape), label="ref")
    spacing = data.draw(st.tuples(*[st.floats(0.3, 3.0)] * ndim), label="spacing")
    distances = metrics.surface_distances(pred, ref, spacing)
    pred_points = np.argwhere(pred ^ ndimage.binary_erosion(pred)) * spacing
    ref_points = np.argwhere(ref ^ ndimage.binary_erosion(ref)) * spacing
    for ours, source, target in [(distances.pred_to_ref, pred_points, ref_points),
                                 (distances.ref_to_pred, ref_points, pred_points)]:
        if len(source) and len(target):
            expected = np.sqrt(((source[:, None, :] - target[None, :, :]) ** 2).sum(axis=-1)).min(axis=1)
            np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
        else:
            assert len(ours) == len(source) and np.all(np.isinf(ours))


def test_parallel_and_serial_distances_are_identical():
    pred, ref = blob_pair((36, 40, 38), 12)
    parallel = metrics.surface_distances(pred, ref, (1.5, 0.9, 0.7), parallel=True)
    serial = metrics.surface_distances(pred, ref, (1.5, 0.9, 0.7), parallel=False)
    assert parallel.pred_to_ref.size + parallel.ref_to_pred.size >= 5000  # large enough to use two threads
    np.testing.assert_array_equal(parallel.pred_to_ref, serial.pred_to_ref)
    np.testing.assert_array_equal(parallel.ref_to_pred, serial.ref_to_pred)


def test_identical_masks_have_zero_distances():
    mask = random_blob((20, 18, 16), 11)
    assert metrics.hausdorff_distance(mask, mask, (2.0, 1.0, 0.5)) == 0.0
    assert metrics.mean_surface_distance(mask, mask, (2.0, 1.0, 0.5)) == 0.0


# ---------------------------------------------------------------------------------------------------------------------
# medpy: the same surfaces, different pooling for HD95 and the symmetric mean


@pytest.mark.parametrize("spacing", [None, (2.0, 0.9, 1.4)])
def test_relation_to_medpy(spacing):
    pred, ref = blob_pair((20, 24, 22), 5)
    distances = metrics.surface_distances(pred, ref, spacing)
    forward, backward = distances.pred_to_ref, distances.ref_to_pred
    # Same surface definition and Euclidean distances: the plain Hausdorff distance is identical.
    np.testing.assert_allclose(metrics.hausdorff_distance(pred, ref, spacing),
                               medpy_binary.hd(pred, ref, voxelspacing=spacing), rtol=1e-12)
    # The directed means are medpy's asd; the symmetric mean pools both directions, as medpy 0.5's assd does
    # (so it weighs each direction by its surface size, unlike the mean of the two asd values).
    np.testing.assert_allclose(forward.mean(), medpy_binary.asd(pred, ref, voxelspacing=spacing), rtol=1e-12)
    np.testing.assert_allclose(backward.mean(), medpy_binary.asd(ref, pred, voxelspacing=spacing), rtol=1e-12)
    msd = metrics.mean_surface_distance(pred, ref, spacing)
    np.testing.assert_allclose(msd, medpy_binary.assd(pred, ref, voxelspacing=spacing), rtol=1e-12)
    pooled_mean = (forward.size * forward.mean() + backward.size * backward.mean()) / (forward.size + backward.size)
    np.testing.assert_allclose(msd, pooled_mean, rtol=1e-12)
    assert forward.size != backward.size and abs(msd - (forward.mean() + backward.mean()) / 2) > 1e-3
    # medpy's hd95 is one percentile of both directions pooled; ours (MONAI's) is the max of the directed ones.
    medpy_hd95 = medpy_binary.hd95(pred, ref, voxelspacing=spacing)
    np.testing.assert_allclose(medpy_hd95, np.percentile(np.concatenate([forward, backward]), 95), rtol=1e-12)
    ours_hd95 = metrics.hausdorff_distance(pred, ref, spacing, percentile=95)
    np.testing.assert_allclose(ours_hd95, max(np.percentile(forward, 95), np.percentile(backward, 95)), rtol=1e-12)
    assert abs(medpy_hd95 - ours_hd95) > 1e-3  # the two definitions really differ on this pair


# ---------------------------------------------------------------------------------------------------------------------
# Input checks


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"pred \(4, 5\).*ref \(4, 6\)"):
        metrics.dice(np.zeros((4, 5), bool), np.zeros((4, 6), bool))
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        metrics.hausdorff_distance(np.zeros((4, 5), bool), np.zeros((5, 4), bool))


def test_binary_non_boolean_inputs_are_accepted_and_others_refused():
    ref = random_blob((16, 18), 2)
    pred = random_blob((16, 18), 3)
    expected = metrics.dice(pred, ref)
    for dtype in (np.uint8, np.int64, np.float32, np.float64):
        assert metrics.dice(pred.astype(dtype), ref) == expected
    assert metrics.dice(torch.from_numpy(pred), ref) == expected  # anything numpy.asarray accepts
    labels = pred.astype(np.int16) * 2
    with pytest.raises(ValueError, match="pred must be binary.*labels == k"):
        metrics.dice(labels, ref)
    probabilities = pred * 0.7
    with pytest.raises(ValueError, match="ref must be binary.*0.7"):
        metrics.hausdorff_distance(ref, probabilities)
    with_nan = pred.astype(float)
    with_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="must be binary"):
        metrics.dice(with_nan, ref)
    with pytest.raises(ValueError, match="at least one axis"):
        metrics.dice(np.bool_(True), np.bool_(True))


def test_spacing_and_percentile_checks():
    mask = random_blob((10, 12), 1)
    with pytest.raises(ValueError, match="one value per array axis \\(2\\), got 3"):
        metrics.hausdorff_distance(mask, mask, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="finite and > 0"):
        metrics.mean_surface_distance(mask, mask, spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="percentile must be between 0 and 100"):
        metrics.hausdorff_distance(mask, mask, percentile=101)
    shifted = np.roll(mask, 2, axis=1)
    assert metrics.hausdorff_distance(mask, shifted, spacing=0.5) == metrics.hausdorff_distance(
        mask, shifted, spacing=(0.5, 0.5))


def test_foreground_box():
    mask = np.zeros((7, 8, 9), bool)
    assert metrics.foreground_box(mask) is None
    mask[2, 5, 1] = mask[4, 3, 6] = True
    assert metrics.foreground_box(mask) == [(2, 5), (3, 6), (1, 7)]
    assert metrics.foreground_box(mask.astype(np.int32) * 7) == [(2, 5), (3, 6), (1, 7)]


# ---------------------------------------------------------------------------------------------------------------------
# Tables


def test_segmentation_metrics_equal_the_single_functions():
    pred, ref = blob_pair((18, 20, 16), 8)
    spacing = (2.0, 1.0, 0.7)
    values = metrics.segmentation_metrics(pred, ref, spacing, metrics=metrics.METRIC_NAMES)
    assert list(values) == list(metrics.METRIC_NAMES)
    expected = ours_overlap(pred, ref)
    expected.update({
        "hausdorff_distance": metrics.hausdorff_distance(pred, ref, spacing),
        "hausdorff_distance_95": metrics.hausdorff_distance(pred, ref, spacing, percentile=95),
        "mean_surface_distance": metrics.mean_surface_distance(pred, ref, spacing),
    })
    assert values == expected
    assert list(metrics.segmentation_metrics(pred, ref)) == list(metrics.DEFAULT_METRICS)


def test_segmentation_metrics_skip_distances_when_not_asked(monkeypatch):
    from mednets.metrics import tables

    def forbidden(*args, **kwargs):
        raise AssertionError("surface distances computed although no distance metric was asked for")

    monkeypatch.setattr(tables, "surface_distances", forbidden)
    pred, ref = blob_pair((12, 14), 9)
    assert metrics.segmentation_metrics(pred, ref, metrics=("recall", "dice")) == {
        "recall": metrics.recall(pred, ref), "dice": metrics.dice(pred, ref)}


def test_segmentation_metrics_reject_unknown_names():
    mask = random_blob((8, 8), 0)
    with pytest.raises(ValueError, match=r"unknown metric name\(s\) \['hd'\]"):
        metrics.segmentation_metrics(mask, mask, metrics=("dice", "hd"))
    with pytest.raises(TypeError, match="sequence of metric names"):
        metrics.segmentation_metrics(mask, mask, metrics="dice")


def test_per_label_metrics_rows_progress_and_cancel():
    ref_labels = np.zeros((16, 18, 14), np.uint8)
    ref_labels[2:8, 3:10, 2:9] = 1
    ref_labels[9:14, 10:16, 5:12] = 2
    pred_labels = np.roll(ref_labels, 1, axis=1)
    labels = {2: "kidney", 1: "liver", 5: "absent"}
    spacing = (2.5, 0.8, 0.8)
    fractions = []
    rows = metrics.per_label_metrics(pred_labels, ref_labels, labels, spacing,
                                     progress=lambda f, m: fractions.append(f))
    assert [(row["label"], row["name"]) for row in rows] == [(2, "kidney"), (1, "liver"), (5, "absent")]
    for row, value in zip(rows, labels):
        expected = metrics.segmentation_metrics(pred_labels == value, ref_labels == value, spacing)
        assert {k: v for k, v in row.items() if k not in ("label", "name")} == pytest.approx(expected, nan_ok=True)
    assert rows[0]["hausdorff_distance"] == pytest.approx(0.8)  # a one-voxel shift along an axis of 0.8 mm
    assert rows[2]["dice"] == 1.0 and np.isnan(rows[2]["hausdorff_distance"])
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    with pytest.raises(OperationCancelled):
        metrics.per_label_metrics(pred_labels, ref_labels, labels, cancel=lambda: True)
    with pytest.raises(ValueError, match=r"pred_labels \(16, 18\).*ref_labels \(16, 18, 14\)"):
        metrics.per_label_metrics(pred_labels[..., 0], ref_labels, labels)


# ---------------------------------------------------------------------------------------------------------------------
# Properties


@st.composite
def mask_pairs(draw):
    shape = draw(st.tuples(st.integers(3, 12), st.integers(3, 12)))
    return draw(arrays(np.bool_, shape)), draw(arrays(np.bool_, shape))


@settings(max_examples=60, deadline=None)
@given(mask_pairs(), st.tuples(st.floats(0.25, 4.0), st.floats(0.25, 4.0)))
def test_symmetry_and_bounds(pair, spacing):
    pred, ref = pair
    for name in ("dice", "jaccard"):
        value = getattr(metrics, name)(pred, ref)
        assert value == getattr(metrics, name)(ref, pred)
        assert 0.0 <= value <= 1.0
    for name in ("precision", "recall", "false_positive_rate", "false_negative_rate"):
        value = getattr(metrics, name)(pred, ref)
        assert np.isnan(value) or 0.0 <= value <= 1.0
    assert metrics.precision(pred, ref) == pytest.approx(metrics.recall(ref, pred), nan_ok=True)
    hd = metrics.hausdorff_distance(pred, ref, spacing)
    hd95 = metrics.hausdorff_distance(pred, ref, spacing, percentile=95)
    msd = metrics.mean_surface_distance(pred, ref, spacing)
    assert hd == pytest.approx(metrics.hausdorff_distance(ref, pred, spacing), nan_ok=True)
    assert hd95 == pytest.approx(metrics.hausdorff_distance(ref, pred, spacing, percentile=95), nan_ok=True)
    assert msd == pytest.approx(metrics.mean_surface_distance(ref, pred, spacing), nan_ok=True)
    if pred.any() and ref.any():
        assert 0.0 <= msd <= hd and 0.0 <= hd95 <= hd + 1e-12


@settings(max_examples=40, deadline=None)
@given(mask_pairs(), st.integers(0, 5), st.integers(0, 5), st.tuples(st.floats(0.25, 4.0), st.floats(0.25, 4.0)))
def test_distances_are_translation_invariant(pair, shift_0, shift_1, spacing):
    pred, ref = pair
    # Padded by at least one voxel so that no surface depends on the array border, then moved by (shift_0, shift_1).
    base_pred, base_ref = np.pad(pred, 1), np.pad(ref, 1)
    padding = ((1 + shift_0, 6 - shift_0), (1 + shift_1, 6 - shift_1))
    moved_pred, moved_ref = np.pad(pred, padding), np.pad(ref, padding)
    for percentile in (None, 95):
        assert metrics.hausdorff_distance(moved_pred, moved_ref, spacing, percentile) == pytest.approx(
            metrics.hausdorff_distance(base_pred, base_ref, spacing, percentile), nan_ok=True)
    assert metrics.mean_surface_distance(moved_pred, moved_ref, spacing) == pytest.approx(
        metrics.mean_surface_distance(base_pred, base_ref, spacing), nan_ok=True)
