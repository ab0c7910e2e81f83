"""Planning/daily pelvis CT pairs: seeded, all structures present, the true displacement explains the daily scan."""

import numpy as np
import pytest

from mednets.metrics import dice, folding_fraction
from mednets.phantoms.pelvis_pair import PELVIS_LABELS, pelvis_ct_pair, warp_with_displacement


@pytest.fixture(scope="module")
def pair():
    return pelvis_ct_pair(seed=5)


def test_seeded_and_seed_dependent(pair):
    again = pelvis_ct_pair(seed=5)
    assert np.array_equal(again.daily.image, pair.daily.image) and np.array_equal(again.planning.labels,
                                                                                    pair.planning.labels)
    other = pelvis_ct_pair(seed=6)
    assert not np.array_equal(other.planning.labels, pair.planning.labels)


def test_structures_on_both_scans(pair):
    for case in (pair.planning, pair.daily):
        assert case.image.dtype == np.float32 and case.image.shape == case.labels.shape == (48, 64, 80)
        for value, name in PELVIS_LABELS.items():
            assert (case.labels == value).sum() > 50, name
        assert -1100 < case.image.min() < -900 and case.image.max() > 500  # air and bone in HU
        # organs are brighter than fat, bone much brighter
        fat = np.median(case.image[(case.labels == 0) & (case.image > -300)])
        assert np.median(case.image[case.labels == 1]) > fat + 80
        assert np.median(case.image[case.labels == 5]) > 400


def test_true_displacement_explains_daily_contours(pair):
    s = pair.planning.spacing
    warped = warp_with_displacement(pair.planning.labels, pair.displacement_mm, s, order=0)
    assert np.array_equal(warped, pair.daily.labels)
    assert folding_fraction(pair.displacement_mm, s) == 0.0
    # the deformation is not trivial: contours move
    assert dice(pair.planning.labels == 2, pair.daily.labels == 2) < 0.8
    assert np.abs(pair.displacement_mm).max() > 3.0


def test_bladder_filling_changes_volume_and_noise_is_fresh(pair):
    ratio = (pair.daily.labels == 4).sum() / (pair.planning.labels == 4).sum()
    f = pair.parameters["bladder_factor"]
    assert (ratio > 1.0) == (f > 1.0) and abs(np.log(ratio)) > 0.3 * abs(np.log(f ** 3))
    background = (pair.planning.labels == 0) & (pair.daily.labels == 0)
    diff = pair.planning.image[background] - pair.daily.image[background]
    assert diff.std() > 5.0  # independent noise realisations


def test_bad_arguments():
    with pytest.raises(ValueError):
        pelvis_ct_pair(shape=(4, 64, 64))
    with pytest.raises(ValueError):
        pelvis_ct_pair(spacing=(1.0, 1.0))
