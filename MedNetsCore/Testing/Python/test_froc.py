"""Detection candidates, the paper's hit criteria and FROC, checked against MONAI's FROC functions."""
import math

import numpy as np
import pytest

from mednets.metrics.froc import (PAPER_SIZE_GROUPS, detection_candidates, evaluate_detections, froc_curve,
                                  froc_score, match_detections, object_short_axis_mm, plot_froc, sensitivity_at_fp)
from mednets.sparse_annotations import sphere_instances

monai_froc = pytest.importorskip("monai.metrics")


def _probability_with_blobs(shape, blobs, seed=0):
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0.0, 0.3, size=shape)
    for centre, radius, peak in blobs:
        grid = np.ogrid[tuple(slice(0, s) for s in shape)]
        d2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
        prob = np.where(d2 <= radius ** 2, np.maximum(prob, peak - 0.05 * np.sqrt(d2)), prob)
    return prob


def test_candidates_are_components_with_max_probability():
    prob = np.zeros((10, 10, 10))
    prob[1:3, 1:3, 1:3] = 0.6
    prob[2, 2, 2] = 0.9
    prob[7, 7, 7] = 0.55
    prob[8, 8, 8] = 0.7          # diagonal neighbour of (7,7,7): same component with full connectivity
    prob[5, 0, 9] = 0.4          # below threshold
    labels, cands = detection_candidates(prob, 0.5, spacing=(1, 1, 1))
    assert len(cands) == 2
    assert [c.confidence for c in cands] == [0.9, 0.7]
    assert cands[0].voxels == 8 and cands[0].centre == (1.5, 1.5, 1.5)
    assert cands[1].voxels == 2 and cands[1].centre == (7.5, 7.5, 7.5)
    assert set(np.unique(labels)) == {0, 1, 2}
    _, six = detection_candidates(prob, 0.5, connectivity=1)
    assert len(six) == 3
    _, big = detection_candidates(prob, 0.5, min_voxels=3)
    assert len(big) == 1
    with pytest.raises(ValueError):
        detection_candidates(np.full((3, 3), np.nan))


def test_short_axis_of_a_sphere_and_an_ellipsoid():
    sphere = sphere_instances((40, 40, 40), [(20, 20, 20)], [16.0]) > 0
    assert object_short_axis_mm(np.argwhere(sphere), (1, 1, 1)) == pytest.approx(16.0, rel=0.05)
    grid = np.ogrid[:40, :40, :40]
    ellipsoid = ((grid[0] - 20) / 12.0) ** 2 + ((grid[1] - 20) / 5.0) ** 2 + ((grid[2] - 20) / 8.0) ** 2 <= 1
    assert object_short_axis_mm(np.argwhere(ellipsoid), (1, 1, 1)) == pytest.approx(10.0, rel=0.08)


def test_hit_criteria_eq1_eq2():
    ref = np.zeros((20, 20, 20), np.int32)
    ref[2:7, 2:7, 2:7] = 1                       # G1, centre (4,4,4)
    ref[12:15, 12:15, 12:15] = 2                 # G2, centre (13,13,13)
    cand = np.zeros_like(ref)
    cand[6:10, 6:10, 6:10] = 1                   # P1 touches G1 at one corner voxel (6,6,6); CoM (7.5..) outside
    cand[10:18, 10:18, 13] = 2                   # P2: flat plate through G2's centre; its CoM (13.5,13.5,13) is in G2
    cand[0, 19, 19] = 3                          # P3: far away
    from mednets.metrics.froc import Candidate
    cands = [Candidate(1, 0.9, (7.5, 7.5, 7.5), 64, 4.0), Candidate(2, 0.8, (13.5, 13.5, 13.0), 64, 1.0),
             Candidate(3, 0.7, (0.0, 19.0, 19.0), 1, 1.0)]
    overlap = match_detections(cand, cands, ref, "overlap")
    assert overlap.hits.tolist() == [[True, False], [False, True], [False, False]]
    assert overlap.tp_probs.tolist() == [0.9, 0.8] and overlap.fp_probs.tolist() == [0.7]
    centre = match_detections(cand, cands, ref, "centre")
    assert centre.hits.tolist() == [[False, False], [False, True], [False, False]]
    assert centre.tp_probs.tolist() == [0.0, 0.8] and sorted(centre.fp_probs.tolist()) == [0.7, 0.9]
    # CoM(G) in P without CoM(P) in G: a large blob around G1 whose centre lies outside G1
    cand2 = np.zeros_like(ref)
    cand2[0:12, 0:12, 0:12] = 1
    big = [Candidate(1, 0.6, (9.0, 9.0, 9.0), 1728, 10.0)]
    assert match_detections(cand2, big, ref, "centre").hits.tolist() == [[True, False]]
    assert match_detections(cand2, big, ref, "candidate_centre").hits.tolist() == [[False, False]]
    with pytest.raises(ValueError):
        match_detections(cand, cands, ref, "iou")


def _random_case(rng, shape=(24, 24, 24)):
    n_ref = int(rng.integers(1, 5))
    centres = rng.uniform(3, 21, size=(n_ref, 3))
    diameters = rng.uniform(2.0, 9.0, size=n_ref)
    ref = sphere_instances(shape, centres, diameters)
    blobs = [(c + rng.normal(0, 1.5, 3), rng.uniform(1.0, 3.0), rng.uniform(0.55, 1.0))
             for c in centres if rng.random() < 0.8]
    blobs += [(rng.uniform(2, 22, 3), rng.uniform(0.8, 2.5), rng.uniform(0.5, 1.0)) for _ in range(rng.integers(0, 4))]
    prob = _probability_with_blobs(shape, blobs, seed=int(rng.integers(1 << 30)))
    return prob, ref, diameters


def test_froc_equals_monai_on_the_same_candidates():
    rng = np.random.default_rng(3)
    for criterion in ("overlap", "centre", "candidate_centre"):
        fp_all, tp_all, targets, images = [], [], 0, 0
        for _ in range(6):
            prob, ref, _ = _random_case(rng)
            labels, cands = detection_candidates(prob, 0.5)
            match = match_detections(labels, cands, ref, criterion)
            fp_all.append(match.fp_probs)
            tp_all.append(match.tp_probs)
            targets += ref.max()
            images += 1
            if criterion == "candidate_centre":  # the whole CAMELYON rule equals MONAI's compute_fp_tp_probs_nd
                coords = np.array([np.rint(c.centre).astype(int) for c in cands]).reshape(-1, 3)
                m_fp, m_tp, m_n = monai_froc.compute_fp_tp_probs_nd(
                    np.array([c.confidence for c in cands]), coords, ref)
                assert m_n == ref.max()
                np.testing.assert_allclose(np.sort(match.fp_probs), np.sort(m_fp), atol=1e-6)
                np.testing.assert_allclose(match.tp_probs, m_tp, atol=1e-6)
        fp, tp = np.concatenate(fp_all), np.concatenate(tp_all)
        ours = froc_curve(fp, tp, targets, images)
        theirs = monai_froc.compute_froc_curve_data(fp, tp, targets, images)
        np.testing.assert_allclose(ours[0], theirs[0], atol=1e-6)
        np.testing.assert_allclose(ours[1], theirs[1], atol=1e-6)
        assert abs(froc_score(*ours) - monai_froc.compute_froc_score(*theirs)) < 1e-6
        for thresholds in [(1, 2, 4), (0.5, 6.7)]:
            assert abs(froc_score(*ours, thresholds) - monai_froc.compute_froc_score(*theirs, thresholds)) < 1e-6


def test_froc_hand_case_and_operating_points():
    fp = np.array([0.9, 0.6, 0.3])
    tp = np.array([0.8, 0.7, 0.0, 0.6])
    fps, sens = froc_curve(fp, tp, num_targets=4, num_images=2, skip_lowest=False)
    # thresholds 0.3, 0.6, 0.7, 0.8, 0.9 then (0, 0)
    assert fps.tolist() == [1.5, 1.0, 0.5, 0.5, 0.5, 0.0]
    assert sens.tolist() == [0.75, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert sensitivity_at_fp(fps, sens, 1.0) == 0.75
    assert sensitivity_at_fp(fps, sens, 0.5) == 0.5
    assert sensitivity_at_fp(fps, sens, 0.1) == 0.0


def test_evaluate_detections_size_groups():
    ref = np.zeros((30, 30, 30), np.int32)
    ref[:] = sphere_instances(ref.shape, [(5, 5, 5), (20, 20, 20)], [4.0, 12.0])
    prob = np.zeros(ref.shape)
    prob[5, 5, 5] = 0.9            # hits the 4 mm node
    prob[25, 5, 5] = 0.8           # false positive
    labels, cands = detection_candidates(prob)
    match = match_detections(labels, cands, ref, "overlap")
    results = evaluate_detections([match], [[4.0, 12.0]], PAPER_SIZE_GROUPS, operating_points=(1.0,))
    assert results["all"]["targets"] == 2 and results["all"]["sensitivity_at"][1.0] == 0.5
    assert results["<5mm"]["targets"] == 1 and results["<5mm"]["sensitivity_at"][1.0] == 1.0
    assert results[">=10mm"]["targets"] == 1 and results[">=10mm"]["sensitivity_at"][1.0] == 0.0
    assert results[">=10mm"]["false_positives"] == 1  # FPs are shared, the 4 mm hit is left out
    assert results[">=5mm"]["detected"] == 0
    empty = evaluate_detections([match], [[4.0, 12.0]], {"huge": (50.0, math.inf)})
    assert empty["huge"]["targets"] == 0 and math.isnan(empty["huge"]["froc_score"])


def test_plot_froc_writes_png(tmp_path):
    path = plot_froc({"all": (np.array([2.0, 1.0, 0.0]), np.array([0.9, 0.5, 0.0]))}, tmp_path / "froc.png",
                     operating_points=(6.7,))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
