"""Two-stage pipeline with oracle networks (known outputs), inputs, annotations, detector files."""
import numpy as np
import pytest
import torch

from mednets.image import Volume
from mednets.progress import OperationCancelled

from AxillaryLNDetectLib.configs import HU_SCALE, get_config, normalise_hu
from AxillaryLNDetectLib.inputs import InputError, IntensityWarning, check_input_volume, parse_diameter_mm
from AxillaryLNDetectLib.pipeline import (crop_volume, detect_lymph_nodes, evaluate_results, metrics_rows,
                                          predict_foreground, reference_instances, single_stage_probability)

CONFIG = get_config("cpu_small").replace(stage1_spacing=4.0, stage2_spacing=2.0, inference_size=64, voi_min_voxels=1,
                                         voi_margin_mm=4.0)


class Oracle(torch.nn.Module):
    """A valid-convolution stand-in: class-1 probability = (centre-cropped input > level), softmax-shaped output."""

    output_crop = 20

    def __init__(self, level_hu: float, region=None):
        super().__init__()
        self.level = level_hu / HU_SCALE
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        inner = x[:, :, 20:-20, 20:-20, 20:-20]
        p = (inner > self.level).float() * 0.9 + 0.05
        return torch.cat([1 - p, p], dim=1)


def _volume_with_spheres(centres_mm, radii_mm, shape=(40, 48, 64), spacing=(2.0, 2.0, 2.0)):
    grid = np.indices(shape).astype(np.float64)
    image = np.full(shape, -1000.0, np.float32)
    image[:, 8:40, 4:60] = -100.0  # a fat slab
    for centre, radius in zip(centres_mm, radii_mm):
        d2 = sum(((g * s) - c) ** 2 for g, s, c in zip(grid, spacing, centre))
        image[d2 <= radius ** 2] = 40.0
    return Volume(image, spacing=spacing, origin_ras=(10.0, -20.0, 5.0), directions_ras=np.diag([-1.0, -1.0, 1.0]))


def test_crop_volume_keeps_geometry():
    volume = _volume_with_spheres([], [])
    crop = crop_volume(volume, (3, 4, 5), (10, 20, 30))
    assert crop.shape == (7, 16, 25)
    np.testing.assert_allclose(crop.kji_to_ras([[0, 0, 0]]), volume.kji_to_ras([[3, 4, 5]]))
    assert np.array_equal(crop.array, volume.array[3:10, 4:20, 5:30])
    with pytest.raises(ValueError):
        crop_volume(volume, (5, 5, 5), (5, 6, 6))


def test_predict_foreground_covers_the_image_with_output_tiles():
    volume = _volume_with_spheres([(40, 48, 64)], [10.0])
    network = Oracle(0.0)
    probability = predict_foreground(network, volume.array, CONFIG)
    assert probability.shape == volume.shape and probability.dtype == np.float32
    expected = np.where(volume.array > 0, 0.95, 0.05)
    np.testing.assert_allclose(probability, expected, atol=1e-6)
    # with a mask the network only sees windows whose output tile holds mask voxels
    full_calls = network.calls
    network.calls = 0
    empty = predict_foreground(network, volume.array, CONFIG, mask=np.zeros(volume.shape, bool))
    assert network.calls == 0 and not empty.any()
    corner = np.zeros(volume.shape, bool)
    corner[:5, :5, :5] = True
    partial = predict_foreground(network, volume.array, CONFIG, mask=corner)
    assert 0 < network.calls < full_calls
    np.testing.assert_allclose(partial[:5, :5, :5], expected[:5, :5, :5], atol=1e-6)


def test_two_stage_detection_finds_nodes_inside_the_voi_only():
    centres = [(30.0, 40.0, 30.0), (50.0, 50.0, 90.0), (40.0, 60.0, 100.0)]
    volume = _volume_with_spheres(centres, [5.0, 7.0, 4.0])

    voi = Oracle(-700.0)  # everything that is not air
    ln = Oracle(0.0)      # soft tissue
    result = detect_lymph_nodes(volume, voi, ln, CONFIG)
    assert len(result.candidates) == 3
    assert result.voi_mask.shape == volume.shape and result.voi_fraction > 0.3
    found = np.array([c.centre_ras for c in result.candidates])
    truth = volume.kji_to_ras(np.array(centres) / 2.0)
    for point in truth:  # every sphere found within a voxel of its centre
        assert np.min(np.linalg.norm(found - point, axis=1)) < 2.5
    assert [c.confidence for c in result.candidates] == pytest.approx([0.95] * 3)
    assert set(np.unique(result.candidate_labels)) == {0, 1, 2, 3}
    sizes = sorted(c.short_axis_mm for c in result.candidates)
    assert sizes[0] == pytest.approx(8.0, abs=2.5) and sizes[-1] == pytest.approx(14.0, abs=2.5)
    # evaluation against the truth: all found, no false positive
    reference = reference_instances(volume, truth, [10.0, 14.0, 8.0])
    metrics = evaluate_results([volume], [result], [reference], [[10.0, 14.0, 8.0]])
    assert metrics["all"]["detected"] == 3 and metrics["all"]["false_positives"] == 0
    assert metrics["all"]["sensitivity_at"][1.0] == 1.0
    rows = metrics_rows(metrics)
    assert rows[0]["group"] == "all" and rows[0]["lymph nodes"] == 3 and rows[1]["lymph nodes"] == 0


def test_stage_two_runs_only_inside_the_voi():
    centres = [(30.0, 40.0, 30.0), (50.0, 50.0, 100.0)]
    volume = _volume_with_spheres(centres, [5.0, 5.0])

    class RightHalf(Oracle):  # VOI where the (normalised) x-coordinate marker is set: the image's high-i half
        def forward(self, x):
            inner = x[:, :, 20:-20, 20:-20, 20:-20]
            p = torch.zeros_like(inner)
            p[..., inner.shape[-1] // 2:] = 0.9  # windows are larger than the coarse image: one window
            return torch.cat([1 - p, p], dim=1)

    result = detect_lymph_nodes(volume, RightHalf(0.0), Oracle(0.0), CONFIG)
    assert len(result.candidates) == 1
    point = volume.ras_to_kji(np.array([result.candidates[0].centre_ras]))[0]
    assert point[2] * 2.0 > 64  # the node at i = 100 mm
    assert 0.2 < result.voi_fraction < 0.8
    fine, probability = single_stage_probability(volume, Oracle(0.0), CONFIG)
    assert probability.shape == fine.shape and (probability > 0.5).sum() > 0


def test_cancel_and_bad_input():
    volume = _volume_with_spheres([(30.0, 40.0, 30.0)], [5.0])
    with pytest.raises(OperationCancelled):
        detect_lymph_nodes(volume, Oracle(-700.0), Oracle(0.0), CONFIG, cancel=lambda: True)
    with pytest.raises(InputError, match="constant"):
        check_input_volume(Volume(np.zeros((5, 5, 5), np.float32)))
    with pytest.raises(InputError, match="single slice"):
        check_input_volume(Volume(np.random.rand(1, 5, 5).astype(np.float32)))
    bad = np.random.rand(5, 5, 5).astype(np.float32)
    bad[0, 0, 0] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        check_input_volume(Volume(bad))
    with pytest.raises(InputError, match="components"):
        check_input_volume(Volume(np.random.rand(5, 5, 5, 3).astype(np.float32)))
    with pytest.warns(IntensityWarning):
        check_input_volume(Volume(np.random.rand(5, 5, 5).astype(np.float32)))  # MRI-like / normalised values
    zero = Volume(np.random.rand(5, 5, 5).astype(np.float32) * 2000 - 1000)
    zero.ijk_to_ras[0, 0] = 0.0
    with pytest.raises((InputError, ValueError)):
        check_input_volume(zero)


def test_parse_diameter():
    assert parse_diameter_mm("12.5") == 12.5 and parse_diameter_mm("12 mm") == 12.0
    assert parse_diameter_mm("confidence=0.93; short_axis_mm=8.1; volume_mm3=300") == 8.1
    assert parse_diameter_mm("diameter: 7") == 7.0 and parse_diameter_mm("short axis = 6.5") == 6.5
    assert parse_diameter_mm("", default=10.0) == 10.0 and parse_diameter_mm("node", default=None) is None
    with pytest.raises(ValueError):
        parse_diameter_mm("diameter=0")


def test_normalisation():
    assert normalise_hu(np.array([-3000.0, 0.0, 500.0, 3000.0])).tolist() == [-2.0, 0.0, 1.0, 2.0]


def test_too_large_is_refused_and_oblique_grids_work(monkeypatch):
    import AxillaryLNDetectLib.inputs as inputs

    volume = _volume_with_spheres([(30.0, 40.0, 30.0)], [6.0])
    monkeypatch.setattr(inputs, "MAX_VOXELS", 1000)
    with pytest.raises(InputError, match="more than"):
        check_input_volume(volume)
    monkeypatch.undo()
    angle = np.radians(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    oblique = Volume(volume.array, spacing=volume.spacing, origin_ras=(10.0, -20.0, 5.0), directions_ras=rotation)
    result = detect_lymph_nodes(oblique, Oracle(-700.0), Oracle(0.0), CONFIG)
    assert len(result.candidates) == 1
    truth = oblique.kji_to_ras(np.array([[15.0, 20.0, 15.0]]))[0]
    assert np.linalg.norm(np.array(result.candidates[0].centre_ras) - truth) < 2.5
