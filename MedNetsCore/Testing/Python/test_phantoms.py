from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mednets import phantoms


def test_ct_torso_is_deterministic_and_seed_dependent():
    a = phantoms.ct_torso_phantom(seed=3)
    b = phantoms.ct_torso_phantom(seed=3)
    c = phantoms.ct_torso_phantom(seed=4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_ct_torso_intensities_are_in_hounsfield_units():
    case = phantoms.ct_torso_phantom(seed=0)
    assert case.image.dtype == np.float32 and case.labels.shape == case.image.shape
    assert sorted(case.label_names) == list(range(1, 9))
    assert case.image[0, 0, 0] == pytest.approx(-1000, abs=120)  # air outside the body, plus noise
    expected = {"lung_left": -850, "liver": 60, "bladder": 5, "spine": 700}
    for name, hu in expected.items():
        mask = ndimage.binary_erosion(case.mask(name))  # avoid partial-volume borders
        assert mask.sum() > 20, name
        assert np.median(case.image[mask]) == pytest.approx(hu, abs=60), name
    for value in case.label_names:
        assert ndimage.label(case.labels == value)[1] >= 1


def test_ct_torso_anatomy_is_defined_in_millimetres():
    coarse = phantoms.ct_torso_phantom(shape=(48, 96, 96), spacing=(4.0, 3.5, 3.5), seed=1)
    fine = phantoms.ct_torso_phantom(shape=(96, 168, 168), spacing=(2.0, 2.0, 2.0), seed=1)
    for value, name in coarse.label_names.items():
        volume_coarse = (coarse.labels == value).sum() * np.prod(coarse.spacing)
        volume_fine = (fine.labels == value).sum() * np.prod(fine.spacing)
        assert volume_fine == pytest.approx(volume_coarse, rel=0.25), name


def test_ellipsoid_volume_matches_formula_with_anisotropic_spacing():
    spacing = (2.0, 1.0, 0.5)
    mask = phantoms.ellipsoid_mask((60, 100, 200), (60, 50, 50), (20, 30, 25), spacing)
    expected = 4.0 / 3.0 * np.pi * 20 * 30 * 25
    assert mask.sum() * np.prod(spacing) == pytest.approx(expected, rel=0.02)


def test_rotated_ellipse_keeps_area_and_turns():
    upright = phantoms.ellipsoid_mask((101, 101), (50, 50), (40, 10))
    turned = phantoms.ellipsoid_mask((101, 101), (50, 50), (40, 10), angles=(np.pi / 2,))
    assert turned.sum() == pytest.approx(upright.sum(), rel=0.02)
    assert upright[:, 50].sum() > 70 and turned[50, :].sum() > 70 and turned[:, 50].sum() < 30


def test_blob_phantom_2d_and_3d():
    flat = phantoms.blob_phantom(shape=(96, 96), num_blobs=2, seed=5)
    assert flat.image.shape == (96, 96) and flat.labels.max() == 1
    assert len(flat.extra["centers_mm"]) == 2
    volume = phantoms.blob_phantom(shape=(48, 48, 48), seed=5)
    inside = volume.image[volume.labels == 1].mean()
    outside = volume.image[volume.labels == 0].mean()
    assert inside - outside > 0.6


def test_lumpy_blob_is_connected_and_close_to_radius():
    rng = np.random.default_rng(0)
    mask = phantoms.lumpy_blob_mask((80, 80, 80), (40, 40, 40), 20.0, rng, irregularity=0.25)
    assert ndimage.label(mask)[1] == 1
    equivalent_radius = (mask.sum() * 3 / (4 * np.pi)) ** (1 / 3)
    assert 15 < equivalent_radius < 25


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="3D"):
        phantoms.ct_torso_phantom(shape=(64, 64), spacing=(1.0, 1.0))
    with pytest.raises(KeyError, match="no label named|No label named"):
        phantoms.blob_phantom(shape=(32, 32)).mask("liver")
