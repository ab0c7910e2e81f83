"""Tests of the Combo-loss phantoms in mednets.phantoms: whole-body PET with five organs, prostate MRI and
echocardiography (2D and 3D): determinism, label layout and sizes, intensities, orientation and runtime."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from mednets import phantoms
from mednets.image import Volume

GENERATORS = {
    "pet": phantoms.pet_whole_body_phantom,
    "mri": phantoms.mri_prostate_phantom,
    "us2d": phantoms.ultrasound_lv_phantom,
    "us3d": lambda seed: phantoms.ultrasound_lv_phantom(seed, ndim=3),
}


@pytest.fixture(scope="module")
def pet_cases():
    return [phantoms.pet_whole_body_phantom(seed) for seed in range(4)]


@pytest.mark.parametrize("name", GENERATORS)
def test_deterministic_by_seed_and_seed_dependent(name):
    make = GENERATORS[name]
    a, b, c = make(7), make(7), make(8)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels) and not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.float32 and a.labels.dtype == np.uint8 and a.labels.shape == a.image.shape
    assert np.isfinite(a.image).all()


@pytest.mark.parametrize("name", GENERATORS)
def test_runtime_at_default_size(name):
    make = GENERATORS[name]
    make(0)  # warm-up (imports, allocator)
    started = time.perf_counter()
    make(1)
    assert time.perf_counter() - started < 1.0


def test_pet_labels_sizes_and_order(pet_cases):
    assert phantoms.PET_ORGANS == {1: "brain", 2: "heart", 3: "left kidney", 4: "right kidney", 5: "bladder"}
    for case in pet_cases:
        assert case.modality == "PET" and case.label_names == phantoms.PET_ORGANS
        assert case.image.shape == (128, 52, 72) and case.spacing == (8.0, 6.0, 6.0)
        assert set(np.unique(case.labels)) == {0, 1, 2, 3, 4, 5}  # one label per voxel: no overlaps by construction
        percent = {name: 100.0 * case.mask(name).mean() for name in case.label_names.values()}
        assert 0.35 < percent["brain"] < 2.0, percent  # paper, Table 4: 0.64 %
        assert 0.2 < percent["heart"] < 1.0, percent  # paper: 0.14 %
        for name in ("left kidney", "right kidney", "bladder"):
            assert 0.04 < percent[name] < 0.5, (name, percent)  # paper: 0.08-0.09 %
        kidneys = (percent["left kidney"], percent["right kidney"])
        assert percent["brain"] > percent["heart"] > max(*kidneys, percent["bladder"])
        assert 1 / 3 < percent["bladder"] / np.mean(kidneys) < 3.0  # kidneys ~ bladder
        for value in case.label_names:  # each organ is one connected piece inside the body
            assert ndimage.label(case.labels == value)[1] == 1
        assert not (case.labels > 0)[~case.extra["body_mask"]].any()


def test_pet_anatomical_positions(pet_cases):
    # Axes: k inferior -> superior, j anterior -> posterior, i right -> left (KJI_LPS_DIRECTIONS).
    for case in pet_cases:
        centre = {name: np.argwhere(case.mask(name)).mean(0) * case.spacing for name in case.label_names.values()}
        body = np.argwhere(case.extra["body_mask"]).mean(0) * case.spacing
        k = {name: c[0] for name, c in centre.items()}
        assert k["brain"] > k["heart"] > max(k["left kidney"], k["right kidney"]) > k["bladder"]
        assert k["left kidney"] > k["right kidney"]  # the right kidney sits lower, under the liver
        assert centre["left kidney"][2] > body[2] + 30 > body[2] - 30 > centre["right kidney"][2]
        assert centre["heart"][2] > body[2]  # left of the midline
        assert centre["heart"][1] < centre["left kidney"][1] and centre["bladder"][1] < centre["right kidney"][1]
        liver = np.argwhere(case.extra["unlabelled_masks"]["liver"]).mean(0) * case.spacing
        assert liver[2] < body[2]  # on the patient's right
        # The same through the returned geometry: the left kidney has the smaller RAS x (more to the Left).
        volume = Volume(case.image, spacing=case.spacing, directions_ras=case.extra["directions_ras"])
        ras = {name: volume.kji_to_ras(np.argwhere(case.mask(name)).mean(0)) for name in ("left kidney", "right kidney",
                                                                                            "brain", "bladder")}
        assert ras["left kidney"][0] < ras["right kidney"][0] and ras["brain"][2] > ras["bladder"][2]


def test_pet_uptake_hot_spots_and_noise(pet_cases):
    ranges = {"brain": (6.0, 13.0), "heart": (2.5, 8.0), "left kidney": (3.0, 6.5), "right kidney": (3.0, 6.5),
              "bladder": (8.0, 32.0)}
    for case in pet_cases:
        background_mask = case.extra["body_mask"] & (case.labels == 0) & ~case.extra["hot_spot_mask"]
        for name in case.extra["unlabelled_masks"]:
            background_mask &= ~case.extra["unlabelled_masks"][name]
        background = float(np.median(case.image[background_mask]))
        assert 0.4 < background < 1.1
        for name, (low, high) in ranges.items():
            core = ndimage.binary_erosion(case.mask(name))
            mean = float(case.image[core].mean()) if core.any() else float(case.image[case.mask(name)].mean())
            assert low < mean < high and mean > 2.5 * background, (name, mean)
        air = ndimage.distance_transform_edt(~case.extra["body_mask"], sampling=case.spacing) > 12.0
        assert float(case.image[air].max()) < 0.3  # air: only blur spill-over next to the body
        liver = float(np.median(case.image[case.extra["unlabelled_masks"]["liver"]]))
        assert 1.5 < liver < 3.5  # moderate, not labelled
        # Hot spots: outside every label, brighter than background, well away from the organs.
        hot = case.extra["hot_spot_mask"]
        assert len(case.extra["hot_spots_mm"]) == 6 and hot.sum() >= 6
        assert not (hot & (case.labels > 0)).any()
        assert float(case.image[hot].mean()) > 2.5 * background
        distance = ndimage.distance_transform_edt(case.labels == 0, sampling=case.spacing)
        assert distance[hot].min() > 5.0
        assert float(np.std(case.image[background_mask])) > 0.05  # noisy


def test_pet_missing_organs_options_and_errors():
    everything_missing = phantoms.pet_whole_body_phantom(2, missing_organ_probability=1.0, num_hot_spots=0)
    assert everything_missing.extra["missing_organs"] == list(phantoms.PET_ORGANS.values())
    assert everything_missing.labels.max() == 0 and not everything_missing.extra["hot_spot_mask"].any()
    none_missing = phantoms.pet_whole_body_phantom(2)
    assert none_missing.extra["missing_organs"] == []
    assert float(everything_missing.image[none_missing.mask("brain")].mean()) < 1.5  # no uptake left
    some = [phantoms.pet_whole_body_phantom(seed, missing_organ_probability=0.3).extra["missing_organs"]
            for seed in range(6)]
    assert any(some) and not all(len(names) == 5 for names in some)
    # Anatomy in mm: a finer grid over the same field of view shows the same organs.
    fine = phantoms.pet_whole_body_phantom(2, shape=(256, 78, 108), spacing=(4.0, 4.0, 4.0))
    for name in phantoms.PET_ORGANS.values():
        coarse_ml = none_missing.mask(name).sum() * np.prod(none_missing.spacing) / 1000
        fine_ml = fine.mask(name).sum() * np.prod(fine.spacing) / 1000
        assert fine_ml == pytest.approx(coarse_ml, rel=0.25), name
    with_arms = phantoms.pet_whole_body_phantom(2, arms=True)
    assert with_arms.extra["body_mask"].sum() > none_missing.extra["body_mask"].sum()
    with pytest.raises(ValueError, match="3D"):
        phantoms.pet_whole_body_phantom(0, shape=(64, 64), spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="missing_organ_probability"):
        phantoms.pet_whole_body_phantom(0, missing_organ_probability=1.5)


def test_mri_prostate():
    for seed in range(3):
        case = phantoms.mri_prostate_phantom(seed)
        assert case.modality == "MR" and case.label_names == {1: "prostate"}
        assert case.image.shape == (24, 80, 80) and case.spacing == (3.0, 2.0, 2.0)
        prostate = case.mask("prostate")
        assert ndimage.label(prostate)[1] == 1
        assert 12.0 < case.extra["prostate_volume_ml"] < 50.0
        assert 0.3 < 100 * prostate.mean() < 3.0
        transition = case.extra["transition_zone"]
        peripheral = prostate & ~ndimage.binary_dilation(transition, iterations=2)
        peripheral = ndimage.binary_erosion(peripheral, structure=np.ones((1, 3, 3), dtype=bool))
        assert np.median(case.image[peripheral]) > 1.3 * np.median(case.image[transition])
        centre = np.argwhere(prostate).mean(0)
        assert abs(centre[2] - 40) < 6 and abs(centre[1] - 40) < 6  # near the middle of the field
        assert case.image.min() >= 0.0  # magnitude image (Rician noise)
        np.testing.assert_array_equal(case.extra["directions_ras"], phantoms.KJI_LPS_DIRECTIONS)


def test_ultrasound_2d_and_3d():
    flat = phantoms.ultrasound_lv_phantom(3)
    assert flat.image.shape == (128, 128) and flat.spacing == (1.0, 1.0) and flat.modality == "US"
    assert flat.label_names == {1: "left ventricular myocardium"}
    assert Volume(flat.image, spacing=flat.spacing).array.shape == (1, 128, 128)
    assert 0.0 <= flat.image.min() and flat.image.max() <= 1.0
    sector = flat.extra["sector_mask"]
    assert not flat.image[~sector].any() and 0.3 < sector.mean() < 0.8
    myocardium, cavity = flat.mask("left ventricular myocardium"), flat.extra["cavity_mask"]
    assert ndimage.label(myocardium)[1] == 1
    # A ring: the cavity is a hole of the myocardium, and the blood is darker than the wall.
    filled = ndimage.binary_fill_holes(myocardium)
    assert (filled & ~myocardium).sum() > 0.8 * cavity.sum() and not (cavity & myocardium).any()
    assert np.median(flat.image[myocardium]) > np.median(flat.image[cavity]) + 0.2
    assert 2.0 < 100 * myocardium.mean() < 15.0
    # Speckle: a multiplicative, rough texture inside the uniform wall.
    assert float(np.std(flat.image[ndimage.binary_erosion(myocardium)])) > 0.05

    volume = phantoms.ultrasound_lv_phantom(3, ndim=3)
    assert volume.image.shape == (64, 80, 64) and volume.spacing == (2.0, 2.0, 2.0)
    shell = volume.mask("left ventricular myocardium")
    assert ndimage.label(shell)[1] == 1 and 1.0 < 100 * shell.mean() < 10.0
    assert np.median(volume.image[shell]) > np.median(volume.image[volume.extra["cavity_mask"]]) + 0.2
    apex_depth = np.argwhere(shell)[:, 1].min()
    assert 5 < apex_depth < 30  # the apex points to the transducer (row 0)
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        phantoms.ultrasound_lv_phantom(0, ndim=4)
    with pytest.raises(ValueError, match="needs 2 shape and spacing values"):
        phantoms.ultrasound_lv_phantom(0, shape=(32, 32, 32))
