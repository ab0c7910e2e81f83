"""NCC, bending energy and warped-contour Dice against NumPy references and analytic fields."""

import numpy as np
import pytest
import torch

from mednets.losses import BendingEnergyLoss, NCCLoss, WarpedContourDiceLoss, bending_energy, ncc


def test_ncc_matches_numpy_corrcoef():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2, 1, 6, 7, 8))
    w = 0.7 * f + rng.normal(size=f.shape) * 0.5
    got = ncc(torch.tensor(f), torch.tensor(w)).numpy()
    for b in range(2):
        want = np.corrcoef(f[b].ravel(), w[b].ravel())[0, 1]
        assert got[b, 0] == pytest.approx(want, abs=1e-6)
    loss = NCCLoss()(torch.tensor(f), torch.tensor(w)).item()
    assert loss == pytest.approx(1 - np.mean([np.corrcoef(f[b].ravel(), w[b].ravel())[0, 1] for b in range(2)]),
                                 abs=1e-6)


def test_ncc_invariant_to_affine_intensity_and_bounds():
    x = torch.randn(1, 1, 8, 8, 8, dtype=torch.float64)
    assert NCCLoss()(x, 3 * x + 5).item() == pytest.approx(0.0, abs=1e-6)
    assert NCCLoss()(x, -x).item() == pytest.approx(2.0, abs=1e-6)
    const = torch.ones_like(x)
    assert torch.isfinite(NCCLoss()(x, const))


def _numpy_bending(u, h):
    """Reference: Hessian by explicit central differences on the interior, summed Frobenius norm."""
    D, H, W = u.shape[1:]
    total = np.zeros((D - 2, H - 2, W - 2))
    for c in range(3):
        for k in range(1, D - 1):
            for j in range(1, H - 1):
                for i in range(1, W - 1):
                    p = np.array([k, j, i])
                    hess = np.zeros((3, 3))
                    for a in range(3):
                        for b in range(3):
                            ea, eb = np.eye(3, dtype=int)[a], np.eye(3, dtype=int)[b]
                            if a == b:
                                hess[a, a] = (u[c][tuple(p + ea)] - 2 * u[c][tuple(p)] + u[c][tuple(p - ea)]) / h[a] ** 2
                            else:
                                hess[a, b] = (u[c][tuple(p + ea + eb)] - u[c][tuple(p + ea - eb)]
                                              - u[c][tuple(p - ea + eb)] + u[c][tuple(p - ea - eb)]) / (4 * h[a] * h[b])
                    total[k - 1, j - 1, i - 1] += np.sum(hess ** 2)
    return total.mean()


def test_bending_energy_matches_numpy_reference_random_field():
    rng = np.random.default_rng(1)
    u = rng.normal(size=(3, 5, 6, 7))
    h = (2.0, 1.0, 0.5)
    got = bending_energy(torch.tensor(u[None]), h).item()
    assert got == pytest.approx(_numpy_bending(u, h), rel=1e-10)


def test_bending_energy_analytic_quadratic_with_axis_order():
    # u_K = a z^2, u_J = b z y, u_I = c x^2 in mm; ||H||^2 = (2a)^2 + 2 b^2 + (2c)^2 everywhere
    a, b, c = 0.3, -0.2, 0.1
    h = (2.0, 1.5, 1.0)
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip((6, 7, 8), h)), indexing="ij")
    u = np.stack([a * z ** 2, b * z * y, c * x ** 2])
    want = 4 * a * a + 2 * b * b + 4 * c * c
    assert bending_energy(torch.tensor(u[None]), h).item() == pytest.approx(want, rel=1e-9)
    # wrong spacing order gives a different value: axes are not interchangeable
    assert bending_energy(torch.tensor(u[None]), h[::-1]).item() != pytest.approx(want, rel=1e-3)
    # an affine field bends nothing
    aff = np.stack([0.1 * z + 0.2 * y, -0.3 * x, 0.05 * z + 1.0])
    assert bending_energy(torch.tensor(aff[None]), h).item() == pytest.approx(0.0, abs=1e-12)


def test_bending_energy_finite_and_small_input_error():
    u = torch.zeros(2, 3, 4, 4, 4, requires_grad=True)
    loss = BendingEnergyLoss()(u)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(u.grad).all() and loss.item() == 0.0
    with pytest.raises(ValueError, match="at least 3"):
        bending_energy(torch.zeros(1, 3, 2, 5, 5))
    with pytest.raises(ValueError):
        bending_energy(torch.zeros(1, 2, 5, 5, 5))


def test_warped_contour_dice_identity_and_shift():
    lab = torch.zeros(1, 1, 12, 12, 12, dtype=torch.long)
    lab[:, :, 3:8, 3:8, 3:8] = 1
    lab[:, :, 8:10, 2:5, 6:9] = 2
    loss = WarpedContourDiceLoss(num_classes=3)
    zero = torch.zeros(1, 3, 12, 12, 12, requires_grad=True)
    assert loss(lab, zero, lab).item() == pytest.approx(0.0, abs=1e-4)
    # fixed = moving shifted by +2 along K; the dvf that recovers it is u_K = -2
    fixed = torch.roll(lab, 2, dims=2)
    dvf = torch.zeros(1, 3, 12, 12, 12)
    dvf[:, 0] = -2.0
    assert loss(lab, dvf, fixed).item() < 0.02
    bad = loss(lab, zero, fixed)
    assert bad.item() > 0.3
    bad.backward()
    assert zero.grad.abs().sum() > 0


def test_warped_contour_dice_is_continuous_at_the_identity_for_an_absent_structure():
    """Bug of the first version (smoothing 1e-5): a structure absent from the fixed grid but lying just outside it in
    the moving image scored 0 at the identity and about 1 for a displacement of 1e-4 voxels (a spike, not a slope)."""
    moving = torch.zeros(1, 1, 12, 12, 12, dtype=torch.long)
    moving[:, :, 0:2] = 1  # a slab just before the output grid (offset 2 along every axis)
    fixed = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    tiny = torch.zeros(1, 3, 8, 8, 8)
    tiny[:, 0] = -1e-4  # samples K = 1.9999 on the first grid plane: a mass of 6.4e-3 voxels of structure 1
    spiky = WarpedContourDiceLoss(num_classes=2, smooth=1e-5)
    assert spiky(moving, torch.zeros_like(tiny), fixed, offset=2).item() == pytest.approx(0.0, abs=1e-6)
    assert spiky(moving, tiny, fixed, offset=2).item() > 0.99
    loss = WarpedContourDiceLoss(num_classes=2)  # default smoothing 1
    assert loss(moving, torch.zeros_like(tiny), fixed, offset=2).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(moving, tiny, fixed, offset=2).item() == pytest.approx(6.4e-3 / (1 + 6.4e-3), rel=2e-2)  # float32 sampling
    # batch=True: one ratio per structure over the whole batch
    both = torch.cat([moving, moving]), torch.cat([tiny, tiny]), torch.cat([fixed, fixed])
    assert WarpedContourDiceLoss(2, batch=True)(*both, offset=2).item() == pytest.approx(0.0128 / 1.0128, rel=2e-2)
