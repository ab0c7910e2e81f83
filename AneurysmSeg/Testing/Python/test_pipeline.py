"""Tests of the AneurysmSeg pipeline (AneurysmSegLib.pipeline): the global image, window positions read from the
positioned image (also for windows padded beyond a small image), sliding-window inference equal to a hand-written loop
over the windows (same ROI boxes, plain averaging), thresholding and the per-target table, evaluation, cancel and bad
input. Networks are tiny (widths 4-32) and volumes small so that the file runs in seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mednets.image import Volume
from mednets.inference import window_positions
from mednets.progress import OperationCancelled

from AneurysmSegLib import build_model
from AneurysmSegLib.configs import SMALL
from AneurysmSegLib.inputs import GlobalGeometry, InputError, hu_windows
from AneurysmSegLib.pipeline import (GLIAWindowPredictor, evaluate_case, global_image, positioned_image,
                                     predict_probabilities, segment_volume, summarize_cases, target_table)

TINY = SMALL.replace(model_overrides={"widths": (4, 8, 16, 32), "global_channels": 8}, patch_size=(16, 16, 16),
                     window_overlap=(8, 8, 8), global_size=(16, 16, 16))


@pytest.fixture(autouse=True, scope="module")
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return build_model("glia_net", **TINY.model_overrides).eval()


def cta(shape=(24, 32, 28), seed=0):
    rng = np.random.default_rng(seed)
    hu = rng.normal(30, 10, shape).astype(np.float32)
    hu[:, :3] = -1000
    hu[8:14, 10:16, 10:14] = 400
    return np.rint(hu)  # CT values are integers (the positioned image stores int16 HU)


def test_global_image_values_and_padding():
    hu = np.full((20, 40, 40), 50.0, np.float32)
    hu[0, 0, 0] = -1000.0  # the padding is air (the volume minimum)
    image, geometry = global_image(hu, SMALL.replace(global_size=(32, 32, 32)))
    assert image.shape == (1, 3, 32, 32, 32) and geometry.padded_shape == (40, 40, 40)
    # inside: 50 HU -> channels (0.5, 0, 0); the padding above and below (air) -> 0
    assert torch.allclose(image[0, :, 16, 16, 16], torch.tensor([0.5, 0.0, 0.0]), atol=1e-6)
    assert torch.all(image[0, :, 0] == 0) and torch.all(image[0, :, -1] == 0)
    k0, k1 = geometry.box((0, 0, 0), (20, 40, 40))[:2]
    assert torch.all(image[0, 0, k0 + 1:k1, 16, 16] == 0.5) and (k0, k1) == (8, 23)


def test_window_starts_from_positioned_image():
    hu = cta()
    image = positioned_image(hu)
    assert image.dtype == torch.int16 and image.shape == (1, 4, 24, 32, 28)
    assert torch.equal(image[0, 0], torch.from_numpy(np.rint(hu).astype(np.int16)))
    starts = [(0, 0, 0), (8, 16, 12), (8, 0, 4)]
    batch = torch.stack([image[0, :, k:k + 16, j:j + 16, i:i + 16].float() for k, j, i in starts])
    assert GLIAWindowPredictor.window_starts(batch) == starts
    # a window larger than the image, centred on it and zero-padded (as the sliding window does)
    padded = torch.zeros(1, 4, 32, 32, 32)
    padded[0, :, 4:28, :, 2:30] = image[0].float()
    assert GLIAWindowPredictor.window_starts(padded) == [(-4, 0, -2)]


def manual_inference(net, hu, config):
    """Independent loop: every window of the grid, ROI box from the geometry, plain average."""
    image, geometry = global_image(hu, config)
    windows = torch.from_numpy(hu_windows(hu, config.hu_windows))
    total = torch.zeros(hu.shape)
    count = torch.zeros(hu.shape)
    with torch.no_grad():
        for start in window_positions(hu.shape, config.patch_size, config.overlap_fraction):
            box = tuple(slice(s, s + p) for s, p in zip(start, config.patch_size))
            boxes = torch.tensor([geometry.box(start, config.patch_size)], dtype=torch.float32)
            logits, _ = net(windows[(slice(None),) + box][None], image, boxes)
            total[box] += torch.softmax(logits, 1)[0, 1]
            count[box] += 1
    return (total / count).numpy()


def test_sliding_window_equals_a_loop_over_windows():
    net, hu = tiny_net(), cta()
    probability, risk = predict_probabilities(net, hu, TINY, batch_size=3)
    expected = manual_inference(net, hu, TINY)
    np.testing.assert_allclose(probability, expected, atol=2e-5)
    assert probability.shape == hu.shape and risk.shape == hu.shape
    assert 0 <= risk.min() and risk.max() <= 1 and np.unique(np.round(risk, 5)).size > 1


def test_image_smaller_than_the_window_and_plain_network():
    net = tiny_net()
    hu = cta((10, 12, 14))
    probability, _ = predict_probabilities(net, hu, TINY)
    assert probability.shape == hu.shape and np.isfinite(probability).all()
    plain = build_model("glia_net", with_global=False, **TINY.model_overrides).eval()
    probability, risk = predict_probabilities(plain, cta(), TINY)
    assert probability.shape == (24, 32, 28) and np.allclose(risk, 1.0)


def test_segment_volume_outputs_and_threshold():
    net, hu = tiny_net(1), cta()
    volume = Volume(hu.copy(), spacing=(0.8, 0.5, 0.5))
    result = segment_volume(volume, net, TINY.replace(min_target_voxels=0), threshold=0.5)
    np.testing.assert_array_equal(result.labels, (result.probability > 0.5).astype(np.uint8))
    np.testing.assert_array_equal(volume.array, hu)  # input untouched
    low = segment_volume(volume, net, TINY, threshold=0.0)
    assert low.labels.all() and len(low.targets) == 1
    row = low.targets[0]
    assert row["voxels"] == hu.size and row["volume_mm3"] == pytest.approx(hu.size * 0.2)
    assert row["mean_probability"] == pytest.approx(float(low.probability.mean()), rel=1e-5)
    with pytest.raises(ValueError, match="threshold"):
        segment_volume(volume, net, TINY, threshold=1.5)


def test_target_table_geometry():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:6, 2:6, 2:6] = 1
    labels[12:14, 12:14, 12:14] = 1
    labels[18, 18, 18] = 1
    probability = labels * 0.8 + 0.1
    volume = Volume(np.zeros((20, 20, 20)), spacing=(2.0, 1.0, 1.0), origin_ras=(10.0, 20.0, 30.0))
    components, rows = target_table(labels, probability, volume, min_voxels=1)
    assert len(rows) == 2 and components.max() == 2
    big = max(rows, key=lambda r: r["voxels"])
    assert big["voxels"] == 64 and big["volume_mm3"] == pytest.approx(128.0)
    assert big["mean_probability"] == pytest.approx(0.9)
    centre = volume.kji_to_ras(np.array([3.5, 3.5, 3.5]))
    assert (big["centre_r"], big["centre_a"], big["centre_s"]) == pytest.approx(tuple(centre))
    # farthest voxel centres (6, 3, 3) mm apart, plus the voxel box's extent along that direction
    length = np.sqrt(6 ** 2 + 3 ** 2 + 3 ** 2)
    assert big["max_diameter_mm"] == pytest.approx(length + (6 * 2 + 3 * 1 + 3 * 1) / length)


def test_evaluate_case_and_summary():
    reference = np.zeros((20, 20, 20), bool)
    reference[4:8, 4:8, 4:8] = True
    probability = np.where(reference, 0.9, 0.05).astype(np.float32)
    probability[15:17, 15:17, 15:17] = 0.7  # a false positive
    result = evaluate_case(probability, reference, (1, 1, 1))
    assert result["target"] == {"tp": 1, "fp": 1, "fn": 0, "recall": 1.0}
    assert result["voxel"]["recall"] == 1.0 and result["voxel"]["precision"] == pytest.approx(64 / 72)
    assert result["voxel"]["auc"] == pytest.approx(1.0)
    negative = evaluate_case(np.zeros((20, 20, 20), np.float32), np.zeros((20, 20, 20)), (1, 1, 1))
    summary = summarize_cases([result, negative])
    assert summary["target_recall"] == 1.0 and summary["fp_per_case"] == 0.5
    assert summary["case_sensitivity"] == 1.0 and summary["case_specificity"] == 1.0 and summary["cases"] == 2


def test_cancel_and_bad_input():
    net = tiny_net()
    volume = Volume(cta(), spacing=(1, 1, 1))
    with pytest.raises(OperationCancelled):
        segment_volume(volume, net, TINY, cancel=lambda: True)
    with pytest.raises(InputError, match="NaN"):
        bad = cta()
        bad[0, 0, 0] = np.nan
        segment_volume(Volume(bad, spacing=(1, 1, 1)), net, TINY)
    with pytest.raises(InputError, match="2D"):
        segment_volume(Volume(cta()[:1], spacing=(1, 1, 1)), net, TINY)
    progress = []
    segment_volume(volume, net, TINY, progress=lambda f, m: progress.append(f))
    assert progress[-1] == 1.0 and progress == sorted(progress)
