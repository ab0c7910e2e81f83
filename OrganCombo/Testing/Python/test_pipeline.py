"""OrganCombo pipeline: the paper's max-over-windows rule, thresholding, input checks, normalisation, configs."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from mednets.image import Volume
from OrganComboLib.configs import CONFIGS, config_from_dict, get_config
from OrganComboLib.pipeline import (InputError, IntensityWarning, WindowNormalizingPredictor, check_input_volume,
                                    min_max_normalize, predict_probabilities, probabilities_to_labels)


class WindowStatistic(torch.nn.Module):
    """A stand-in network whose output depends on the whole window (so aggregation order matters): channel 0 is
    sigmoid(10 * (x - window mean)), channel 1 is x * window max."""

    size_factor = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
        top = x.amax(dim=tuple(range(1, x.dim())), keepdim=True)
        return torch.cat([torch.sigmoid(10 * (x - mean)), x * top], dim=1)


def brute_force_max(image: np.ndarray, window: int, stride: int) -> np.ndarray:
    """The paper's rule written out: for every window position (stride, last window flush with the border), the
    normalised window's network output; each voxel keeps the maximum over the windows covering it."""
    network = WindowNormalizingPredictor(WindowStatistic())
    result = np.full((2,) + image.shape, -np.inf, dtype=np.float64)
    starts = []
    for size in image.shape:
        positions = list(range(0, size - window + 1, stride))
        if positions[-1] != size - window:
            positions.append(size - window)
        starts.append(positions)
    for corner in itertools.product(*starts):
        region = tuple(slice(c, c + window) for c in corner)
        with torch.no_grad():
            out = network(torch.from_numpy(image[region][None, None].astype(np.float32)))[0].numpy()
        result[(slice(None),) + region] = np.maximum(result[(slice(None),) + region], out)
    return result


def test_max_aggregation_matches_brute_force_reference():
    rng = np.random.default_rng(3)
    image = rng.gamma(2.0, 1.0, size=(22, 17, 19)).astype(np.float32)
    config = get_config("pet").replace(window_size=(8, 8, 8), window_stride=(2, 2, 2))
    ours = predict_probabilities(WindowStatistic(), image, config, device="cpu", batch_size=3)
    expected = brute_force_max(image, 8, 2)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    # The paper's label: a voxel is organ when ANY covering window exceeds t.
    labels = probabilities_to_labels(ours, 0.5)
    assert np.array_equal(labels > 0, expected.max(axis=0) > 0.5)


def test_stride_is_expressed_as_overlap():
    pet = get_config("pet")
    assert pet.window_size == (80, 80, 80) and pet.window_stride == (20, 20, 20)
    assert pet.window_overlap == (0.75, 0.75, 0.75)
    assert pet.foreground_fraction == pytest.approx(500 / 600)
    assert pet.patches_per_volume() == 600
    assert (pet.alpha, pet.beta, get_config("MRI").beta, get_config("ultrasound").beta) == (0.5, 0.4, 0.6, 0.7)
    assert pet.optimizer == {"name": "adadelta", "lr": 1.0, "rho": 0.95, "eps": 1e-8, "weight_decay": 0.0}
    assert pet.class_names == ("brain", "heart", "left kidney", "right kidney", "bladder")
    with pytest.raises(ValueError, match="pet"):
        get_config("ct")


def test_config_round_trips_through_metadata_dict():
    for config in CONFIGS.values():
        changed = config.replace(window_size=(32, 32, 32) if config.window_size else None, threshold=0.4)
        assert config_from_dict(changed.to_dict()) == changed


def test_labels_take_the_most_probable_organ_above_threshold():
    probabilities = np.array([[0.9, 0.6, 0.2, 0.5], [0.8, 0.7, 0.1, 0.49]], dtype=np.float32)
    np.testing.assert_array_equal(probabilities_to_labels(probabilities, 0.5), [1, 2, 0, 0])
    with pytest.raises(ValueError):
        probabilities_to_labels(probabilities, 1.0)


def test_window_normalisation_maps_each_window_to_unit_range():
    batch = torch.tensor([[[[0.0, 5.0], [10.0, 2.0]]], [[[3.0, 3.0], [3.0, 3.0]]]])
    normalised = WindowNormalizingPredictor.normalize(batch)
    assert torch.equal(normalised[0, 0], torch.tensor([[0.0, 0.5], [1.0, 0.2]]))
    assert torch.equal(normalised[1], torch.zeros(1, 2, 2))  # a constant window becomes 0
    np.testing.assert_allclose(min_max_normalize(np.array([2.0, 4.0, 6.0])), [0.0, 0.5, 1.0])
    assert not min_max_normalize(np.full(3, 7.0)).any()


@pytest.mark.parametrize("make, message", [
    (lambda: Volume(np.zeros((8, 8, 8, 3), np.float32)), "RGB"),
    (lambda: Volume(np.random.default_rng(0).random((1, 8, 8))), "2D"),
    (lambda: Volume(np.where(np.eye(8)[None].repeat(8, 0) > 0, np.nan, 1.0)), "NaN"),
    (lambda: Volume(np.full((8, 8, 8), 3.0)), "constant"),
])
def test_bad_inputs_are_refused_with_a_reason(make, message):
    with pytest.raises(InputError, match=message):
        check_input_volume(make(), get_config("pet"))


def test_3d_volume_for_a_2d_model_and_ct_like_values():
    volume = Volume(np.random.default_rng(0).random((4, 8, 8)))
    with pytest.raises(InputError, match="2D images"):
        check_input_volume(volume, get_config("ultrasound").replace(spatial_dims=2))
    ct_like = Volume(np.random.default_rng(0).normal(-500, 300, (8, 8, 8)))
    with pytest.warns(IntensityWarning, match="CT"):
        check_input_volume(ct_like, get_config("pet"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_input_volume(ct_like, get_config("mri"))  # MRI intensities are arbitrary: no warning


def test_oblique_volumes_are_accepted_and_huge_ones_refused(monkeypatch):
    from OrganComboLib import inputs

    angle = np.deg2rad(20)
    oblique = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    volume = Volume(np.random.default_rng(1).random((8, 8, 8)), spacing=(3.0, 2.0, 2.0), directions_ras=oblique)
    check_input_volume(volume, get_config("pet"))  # geometry is carried through; voxels are processed as they are
    monkeypatch.setattr(inputs, "MAX_VOXELS", 100)
    with pytest.raises(InputError, match="crop"):
        check_input_volume(volume, get_config("pet"))
