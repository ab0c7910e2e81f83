"""Separable Lanczos resampling: with radius 5 it equals SimpleITK's sitkLanczosWindowedSinc (resample_to_spacing);
the default radius 3 is the paper's Lanczos-3."""
import numpy as np
import pytest
from scipy import ndimage

from mednets.image import Volume
from mednets.lanczos import lanczos_weights, resample_to_spacing_lanczos
from mednets.resampling import resample_to_spacing


def _smooth_volume(shape, spacing, seed=0, directions=None):
    rng = np.random.default_rng(seed)
    array = ndimage.gaussian_filter(rng.normal(size=shape), 1.5).astype(np.float32) * 300 - 200
    return Volume(array, spacing=spacing, origin_ras=(-12.0, 5.0, 30.0), directions_ras=directions)


def test_kernel():
    assert lanczos_weights(0.0) == 1.0
    assert abs(lanczos_weights(1.0)) < 1e-12 and abs(lanczos_weights(-2.0)) < 1e-12
    assert lanczos_weights(0.5) == pytest.approx(np.sin(np.pi / 2) / (np.pi / 2) * np.sin(np.pi / 6) / (np.pi / 6))


@pytest.mark.parametrize("spacing,new", [((1.0, 1.0, 1.0), 3.0), ((2.5, 0.8, 0.8), 1.0), ((1.0, 1.0, 1.0), (2.0, 1.5, 0.7))])
def test_equals_simpleitk(spacing, new):
    volume = _smooth_volume((18, 22, 20), spacing, directions=np.diag([-1.0, -1.0, 1.0]))
    ours = resample_to_spacing_lanczos(volume, new, default_value=-1000.0, radius=5)
    theirs = resample_to_spacing(volume, new, interpolator="lanczos", default_value=-1000.0)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.ijk_to_ras, theirs.ijk_to_ras, atol=1e-9)
    np.testing.assert_allclose(ours.array, theirs.array, atol=2e-3, rtol=1e-5)
    lanczos3 = resample_to_spacing_lanczos(volume, new, default_value=-1000.0)
    assert lanczos3.shape == theirs.shape
    assert np.abs(lanczos3.array - theirs.array).max() < 0.05 * np.ptp(volume.array)  # close, not equal


def test_constant_image_weights_show_simpleitk_radius_is_5():
    constant = Volume(np.ones((8, 8, 12), np.float32))
    theirs = resample_to_spacing(constant, (1.0, 1.0, 0.7), interpolator="lanczos").array[4, 4, :8]
    five = resample_to_spacing_lanczos(constant, (1.0, 1.0, 0.7), radius=5).array[4, 4, :8]
    three = resample_to_spacing_lanczos(constant, (1.0, 1.0, 0.7), radius=3).array[4, 4, :8]
    np.testing.assert_allclose(five, theirs, atol=1e-5)
    assert np.abs(three - theirs).max() > 1e-3


def test_identity_spacing_and_errors():
    volume = _smooth_volume((6, 7, 8), (2.0, 2.0, 2.0))
    same = resample_to_spacing_lanczos(volume, 2.0)
    np.testing.assert_allclose(same.array, volume.array, atol=1e-4)
    with pytest.raises(ValueError):
        resample_to_spacing_lanczos(volume, 0.0)
