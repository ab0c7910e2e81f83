"""Jacobian determinant, its std and the folding fraction on analytic displacement fields."""

import numpy as np
import pytest

from mednets.metrics import deformation_metrics, folding_fraction, jacobian_determinant, jacobian_std


def _grid(shape, spacing):
    return np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij")


def test_uniform_scaling_and_identity():
    spacing = (2.0, 1.0, 0.5)
    z, y, x = _grid((6, 7, 8), spacing)
    dvf = np.stack([0.1 * z, 0.2 * y, -0.3 * x])
    det = jacobian_determinant(dvf, spacing)
    assert np.allclose(det, 1.1 * 1.2 * 0.7)
    assert jacobian_std(dvf, spacing) == pytest.approx(0.0, abs=1e-12)
    assert folding_fraction(np.zeros((3, 4, 4, 4))) == 0.0
    assert np.allclose(jacobian_determinant(np.zeros((3, 4, 4, 4))), 1.0)


def test_shear_keeps_volume_and_folding_detected():
    z, y, x = _grid((8, 8, 8), (1, 1, 1))
    shear = np.stack([0.5 * y, np.zeros_like(y), np.zeros_like(y)])
    assert np.allclose(jacobian_determinant(shear), 1.0)
    fold = np.stack([np.where(z >= 4, -2.0 * (z - 4), 0.0), np.zeros_like(z), np.zeros_like(z)])  # d u_K/dz = -2 there
    ff = folding_fraction(fold)
    assert 0.3 < ff < 0.7
    m = deformation_metrics(fold)
    assert m["folding_fraction"] == pytest.approx(ff) and m["jacobian_min"] < 0 and m["jacobian_std"] > 0


def test_2d_and_bad_input():
    y, x = np.meshgrid(np.arange(5.0), np.arange(6.0), indexing="ij")
    assert np.allclose(jacobian_determinant(np.stack([0.5 * y, 0.0 * x])), 1.5)
    with pytest.raises(ValueError):
        jacobian_determinant(np.zeros((2, 4, 4, 4)))
    bad = np.zeros((3, 4, 4, 4)); bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        jacobian_determinant(bad)
