"""Tests of the CTA head phantom (mednets.phantoms.cta_head): determinism, label layout, HU of the tissues, aneurysm
sizes and positions at bifurcations, attachment of each sac to an artery, negative cases, orientation and runtime."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import ndimage

from mednets.phantoms import KJI_LPS_DIRECTIONS
from mednets.phantoms.cta_head import BIFURCATIONS, CTA_HEAD_LABELS, cta_head_phantom


def test_deterministic_and_seed_dependent():
    a, b, c = cta_head_phantom(seed=5), cta_head_phantom(seed=5), cta_head_phantom(seed=6)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.float32 and a.labels.dtype == np.uint8 and a.image.shape == (64, 80, 80)
    assert np.isfinite(a.image).all() and a.label_names == CTA_HEAD_LABELS and a.modality == "CT"
    np.testing.assert_array_equal(a.extra["directions_ras"], KJI_LPS_DIRECTIONS)


def test_tissue_intensities_in_hu():
    case = cta_head_phantom(seed=1, noise_std=0.0, blur_mm=0.0)
    image, labels = case.image, case.labels
    assert image.min() < -900  # air around the head
    assert 20 < np.median(image[labels == 4]) < 45  # brain
    assert np.median(image[labels == 3]) > 600  # bone
    assert 300 < np.median(image[labels == 2]) < 450  # contrast-filled arteries
    assert 280 < np.median(image[labels == 1]) < 450  # contrast-filled aneurysm sac


@pytest.mark.parametrize("seed", range(6))
def test_aneurysms_sit_on_bifurcations_and_are_attached(seed):
    case = cta_head_phantom(seed=seed, aneurysm_diameter_mm=(4.0, 12.0))
    aneurysms = case.extra["aneurysms"]
    assert 1 <= len(aneurysms) <= 2
    assert len({a["site"] for a in aneurysms}) == len(aneurysms)
    spacing = np.asarray(case.spacing)
    components, count = ndimage.label(case.labels == 1, structure=np.ones((3, 3, 3)))
    assert count == len(aneurysms)
    vessels = ndimage.binary_dilation(case.labels == 2, structure=np.ones((3, 3, 3)))
    for item in aneurysms:
        assert item["site"] in BIFURCATIONS and 4.0 <= item["diameter_mm"] <= 12.0
        apex = np.asarray(case.extra["bifurcations"][item["site"]])
        distance = np.linalg.norm((np.asarray(item["centre_kji"]) - apex) * spacing)
        assert distance < item["diameter_mm"] + 3.0  # the sac starts at the bifurcation apex
        sac = components[tuple(np.round(item["centre_kji"]).astype(int))]
        region = components == sac if sac else None
        if region is not None:
            assert (region & vessels).any()  # attached to an artery through its neck
        # volume close to the sphere of the drawn diameter (radii vary by +-15 %, the brain may clip it)
        sphere = 4 / 3 * math.pi * (item["diameter_mm"] / 2) ** 3 / np.prod(spacing)
        assert 0.3 * sphere < item["voxels"] < 1.8 * sphere


def test_negative_case_and_many_aneurysms():
    negative = cta_head_phantom(seed=3, num_aneurysms=0)
    assert not (negative.labels == 1).any() and negative.extra["aneurysms"] == []
    assert (negative.labels == 2).sum() > 500
    many = cta_head_phantom(seed=3, num_aneurysms=4, aneurysm_diameter_mm=(5, 6))
    assert len(many.extra["aneurysms"]) == 4
    with pytest.raises(ValueError, match="num_aneurysms"):
        cta_head_phantom(num_aneurysms=9)
    with pytest.raises(ValueError, match="diameter"):
        cta_head_phantom(aneurysm_diameter_mm=(5, 2))


def test_anatomy_in_mm_and_runtime():
    start = time.perf_counter()
    fine = cta_head_phantom(shape=(96, 120, 120), spacing=(0.8333, 0.8333, 0.8333), seed=2)
    assert time.perf_counter() - start < 5.0
    coarse = cta_head_phantom(seed=2)
    # same field of view: the same aneurysm sites and similar volumes in mm^3
    assert [a["site"] for a in fine.extra["aneurysms"]] == [a["site"] for a in coarse.extra["aneurysms"]]
    for a, b in zip(fine.extra["aneurysms"], coarse.extra["aneurysms"]):
        assert a["diameter_mm"] == pytest.approx(b["diameter_mm"])
    # the internal carotid arteries run upward on both sides (patient right = low i, left = high i)
    low = coarse.labels[5:15]
    k, j, i = np.nonzero(low == 2)
    assert (i < 40).any() and (i > 40).any()
