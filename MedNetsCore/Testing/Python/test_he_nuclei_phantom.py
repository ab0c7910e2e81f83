"""The H&E nuclei phantom (mednets.phantoms.he_nuclei): seeded determinism, instance label layout, nucleus sizes,
touching and overlapping nuclei, H&E colours (purple nuclei on pink stroma), stain variation that changes colours
but not the anatomy, and runtime."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage
from skimage.color import rgb2hsv

from mednets.phantoms.he_nuclei import HE_STAIN_VECTORS, he_nuclei_dataset, he_nuclei_phantom


def test_deterministic_and_seed_dependent():
    a, b, c = he_nuclei_phantom(3), he_nuclei_phantom(3), he_nuclei_phantom(4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    assert a.image.dtype == np.uint8 and a.image.shape == (256, 256, 3)
    assert a.labels.dtype == np.int32 and a.labels.shape == (256, 256)
    assert a.modality == "SM" and len(a.label_names) == a.labels.max()


def test_instances_sizes_touching_and_overlapping():
    case = he_nuclei_phantom(1, shape=(384, 384))
    labels = case.labels
    n = labels.max()
    assert sorted(np.unique(labels).tolist()) == list(range(n + 1)) and n > 80
    areas = np.bincount(labels.ravel())[1:]
    assert areas.min() >= 6 and np.median(areas) > np.pi * 4 * 4 * 0.55
    assert areas.max() <= np.pi * 11 * 11 + 10
    placements = set(case.extra["placement"])
    assert {"free", "touching", "overlapping"} <= placements
    # touching: some instances share a border with another instance
    right = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
    down = (labels[1:, :] != labels[:-1, :]) & (labels[1:, :] > 0) & (labels[:-1, :] > 0)
    assert right.sum() + down.sum() > 50
    # the foreground is not one blob per instance: clusters merge nuclei
    _, components = ndimage.label(labels > 0)
    assert components < n
    assert len(case.extra["centres"]) == len(case.extra["radii"]) == n


def test_he_colours():
    case = he_nuclei_phantom(2)
    image = case.image.astype(float)
    nuclei, stroma = case.labels > 0, ndimage.binary_erosion(case.labels == 0, iterations=3)
    hsv = rgb2hsv(case.image)
    # nuclei are darker and more blue-purple than the pink stroma
    assert image[nuclei].mean() < image[stroma].mean() - 40
    assert image[nuclei][:, 2].mean() > image[nuclei][:, 0].mean()  # blue > red in nuclei
    assert image[stroma][:, 0].mean() > image[stroma][:, 1].mean() + 40  # pink: red >> green
    hue_nuclei, hue_stroma = np.median(hsv[..., 0][nuclei]), np.median(hsv[..., 0][stroma])
    assert 0.6 < hue_nuclei < 0.85 and (hue_stroma > 0.85 or hue_stroma < 0.05)
    assert np.allclose(np.linalg.norm(HE_STAIN_VECTORS, axis=1), 1.0)


def test_stain_variation_changes_colour_not_anatomy():
    plain = he_nuclei_phantom(7, stain_variation=0.0)
    varied = he_nuclei_phantom(7, stain_variation=1.5)
    assert np.array_equal(plain.labels, varied.labels)
    assert np.allclose(plain.extra["stain_vectors"], HE_STAIN_VECTORS)
    assert not np.allclose(varied.extra["stain_vectors"], HE_STAIN_VECTORS)
    assert np.abs(plain.image.astype(int) - varied.image.astype(int)).mean() > 3
    colours = [he_nuclei_phantom(s).image.reshape(-1, 3).mean(0) for s in range(4)]
    assert np.ptp(np.array(colours), axis=0).max() > 3


def test_options_dataset_and_runtime():
    start = time.perf_counter()
    case = he_nuclei_phantom(0, shape=(512, 512))
    assert time.perf_counter() - start < 2.0
    few = he_nuclei_phantom(0, shape=(64, 96), n_nuclei=3, radius_range=(3, 5))
    assert 1 <= few.labels.max() <= 3 and few.image.shape == (64, 96, 3)
    assert case.labels.max() > 200
    tiles = he_nuclei_dataset(3, seed=10, shape=(32, 32))
    assert len(tiles) == 3 and np.array_equal(tiles[1].labels, he_nuclei_phantom(11, shape=(32, 32)).labels)
    with pytest.raises(ValueError):
        he_nuclei_phantom(0, shape=(8, 8))
