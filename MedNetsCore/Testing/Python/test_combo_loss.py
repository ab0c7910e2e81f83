"""Tests of mednets.losses.ComboLoss: values against an independent NumPy implementation, float64 gradient checks,
the false-positive / false-negative trade-off of beta, the alpha = 1 and alpha = 0 limits, presets, label-map
targets, argument errors and a few iterations inside the training engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mednets.losses import COMBO_LOSS_PRESETS, ComboLoss
from mednets.losses.combo import combo_loss_terms


def numpy_combo(p=None, t=None, alpha=0.5, beta=0.5, smooth=1.0, eps=1e-7, logits=None):
    """Reference: eq. (5) of Taghanaki et al. with the flattened volume, written with NumPy only (float64)."""
    t = np.asarray(t, dtype=np.float64).ravel()
    if logits is not None:
        x = np.asarray(logits, dtype=np.float64).ravel()
        p = 1.0 / (1.0 + np.exp(-x))
        log_p, log_q = -np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)
    else:
        p = np.asarray(p, dtype=np.float64).ravel()
        clipped = np.clip(p, eps, 1.0 - eps)
        log_p, log_q = np.log(clipped), np.log(1.0 - clipped)
    n = p.size
    wbce = -np.sum(beta * t * log_p + (1.0 - beta) * (1.0 - t) * log_q) / n
    dice = (2.0 * np.sum(p * t) + smooth) / (np.sum(p) + np.sum(t) + smooth)
    return alpha * wbce - (1.0 - alpha) * dice, wbce, dice


def random_case(shape, seed, foreground=0.3):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 1.0, size=shape)
    p.flat[:3] = [0.0, 1.0, 1e-12]  # exercise the clamp
    t = (rng.uniform(size=shape) < foreground).astype(np.float64)
    return p, t


SHAPES = [(2, 3, 7, 9), (3, 1, 10, 11), (1, 5, 6, 7, 8), (2, 2, 4, 5, 6)]
SETTINGS = [(0.5, 0.5, 1.0), (0.5, 0.4, 1.0), (0.3, 0.7, 1.0), (0.8, 0.2, 0.5), (1.0, 0.6, 1.0), (0.0, 0.5, 2.0)]


@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
@pytest.mark.parametrize("alpha, beta, smooth", SETTINGS)
def test_matches_numpy_reference(shape, alpha, beta, smooth):
    p, t = random_case(shape, seed=len(shape) + shape[1])
    expected, wbce, dice = numpy_combo(p, t, alpha, beta, smooth)
    loss = ComboLoss(alpha=alpha, beta=beta, smooth=smooth)
    value = loss(torch.from_numpy(p), torch.from_numpy(t))
    assert value.dtype == torch.float64 and value.ndim == 0
    assert float(value) == pytest.approx(expected, abs=1e-6, rel=0)
    assert loss.last_values["wbce"] == pytest.approx(wbce, abs=1e-6, rel=0)
    assert loss.last_values["dice"] == pytest.approx(dice, abs=1e-6, rel=0)


@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_logits_match_numpy_reference(shape):
    rng = np.random.default_rng(shape[1])
    x = rng.normal(0.0, 4.0, size=shape)
    x.flat[:2] = [40.0, -40.0]  # far outside the clamp: logsigmoid keeps the exact log-probabilities
    t = (rng.uniform(size=shape) < 0.4).astype(np.float64)
    expected, _, _ = numpy_combo(t=t, alpha=0.5, beta=0.4, logits=x)
    value = ComboLoss(alpha=0.5, beta=0.4, from_logits=True)(torch.from_numpy(x), torch.from_numpy(t))
    assert float(value) == pytest.approx(expected, abs=1e-6, rel=0)


def test_logits_equal_probabilities_inside_the_clamp_range():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 6, 6, generator=generator, dtype=torch.float64) * 5.0  # |x| << 16
    t = (torch.rand(2, 3, 6, 6, generator=generator, dtype=torch.float64) < 0.3).double()
    from_logits = ComboLoss(beta=0.3, from_logits=True)(x, t)
    from_probabilities = ComboLoss(beta=0.3)(torch.sigmoid(x), t)
    # equal up to rounding: 1 - sigmoid(x) loses digits for large x
    torch.testing.assert_close(from_logits, from_probabilities, rtol=0, atol=1e-9)
    # Beyond |x| ~ 16.1 the clamped version saturates, the logits version does not.
    extreme = torch.full((1, 1, 2, 2), -30.0, dtype=torch.float64)
    ones = torch.ones_like(extreme)
    saturated = float(ComboLoss(alpha=1.0, beta=1.0)(torch.sigmoid(extreme), ones))
    exact = float(ComboLoss(alpha=1.0, beta=1.0, from_logits=True)(extreme, ones))
    assert saturated == pytest.approx(-np.log(1e-7), rel=1e-9) and exact == pytest.approx(30.0, rel=1e-9)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("alpha, beta", [(0.5, 0.4), (0.3, 0.7)])
def test_gradcheck(from_logits, alpha, beta):
    generator = torch.Generator().manual_seed(3)
    shape = (2, 2, 3, 4)
    if from_logits:
        input = torch.randn(shape, generator=generator, dtype=torch.float64) * 2.0
    else:  # away from 0 and 1 so the finite differences never cross the clamp
        input = torch.rand(shape, generator=generator, dtype=torch.float64) * 0.9 + 0.05
    target = (torch.rand(shape, generator=generator, dtype=torch.float64) < 0.4).double()
    loss = ComboLoss(alpha=alpha, beta=beta, from_logits=from_logits)
    assert torch.autograd.gradcheck(lambda x: loss(x, target), (input.requires_grad_(True),))


def fp_and_fn_predictions(errors=10):
    """Target with 100 foreground voxels of 200; one prediction with `errors` false positives, one with as many false
    negatives; every other voxel is predicted 0.95 (foreground) / 0.05 (background), each error voxel 0.9 / 0.1."""
    target = torch.zeros(1, 1, 200, dtype=torch.float64)
    target[..., :100] = 1.0
    base = torch.where(target > 0, torch.tensor(0.95, dtype=torch.float64), torch.tensor(0.05, dtype=torch.float64))
    false_positive, false_negative = base.clone(), base.clone()
    false_positive[..., 100:100 + errors] = 0.9  # background predicted foreground
    false_negative[..., :errors] = 0.1  # foreground predicted background
    return target, false_positive, false_negative


def test_beta_below_half_penalises_false_positives_more():
    target, false_positive, false_negative = fp_and_fn_predictions()
    for alpha in (1.0, 0.5):  # the weighted BCE alone, and the PET preset (alpha = 0.5, beta = 0.4)
        loss = ComboLoss(alpha=alpha, beta=0.4)
        assert loss(false_positive, target) > loss(false_negative, target) + 1e-3, alpha
    fn_heavy = ComboLoss(alpha=1.0, beta=0.6)
    assert fn_heavy(false_negative, target) > fn_heavy(false_positive, target) + 1e-3
    balanced = ComboLoss(alpha=1.0, beta=0.5)  # symmetric cross-entropy: same cost for both errors
    torch.testing.assert_close(balanced(false_positive, target), balanced(false_negative, target))


def test_beta_scales_the_gradient_of_false_positives_and_negatives():
    # One false-positive voxel (t=0, p=0.9) and one false-negative voxel (t=1, p=0.1): with alpha = 1 the gradient
    # magnitudes are (1 - beta) / (N * 0.1) and beta / (N * 0.1).
    target = torch.tensor([[[0.0, 1.0]]], dtype=torch.float64)
    for beta in (0.2, 0.4, 0.7):
        p = torch.tensor([[[0.9, 0.1]]], dtype=torch.float64, requires_grad=True)
        ComboLoss(alpha=1.0, beta=beta)(p, target).backward()
        fp_grad, fn_grad = p.grad[0, 0].tolist()
        assert fp_grad == pytest.approx((1 - beta) / (2 * 0.1)) and fn_grad == pytest.approx(-beta / (2 * 0.1))


def test_alpha_one_is_weighted_bce_and_alpha_zero_is_minus_smoothed_dice():
    p, t = random_case((2, 3, 5, 6), seed=7)
    p_t, t_t = torch.from_numpy(p), torch.from_numpy(t)
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    for beta in (0.3, 0.5, 0.8):
        wbce = -np.mean(beta * t * np.log(clipped) + (1 - beta) * (1 - t) * np.log(1 - clipped))
        assert float(ComboLoss(alpha=1.0, beta=beta)(p_t, t_t)) == pytest.approx(wbce, abs=1e-9)
    # beta = 0.5 is half the ordinary binary cross-entropy.
    bce = torch.nn.functional.binary_cross_entropy(p_t.clamp(1e-7, 1 - 1e-7), t_t)
    assert float(ComboLoss(alpha=1.0, beta=0.5)(p_t, t_t)) == pytest.approx(0.5 * float(bce), abs=1e-9)
    for smooth in (0.0, 1.0, 3.0):
        dice = (2 * np.sum(p * t) + smooth) / (np.sum(p) + np.sum(t) + smooth)
        for beta in (0.1, 0.9):  # beta has no effect without the cross-entropy term
            assert float(ComboLoss(alpha=0.0, beta=beta, smooth=smooth)(p_t, t_t)) == pytest.approx(-dice, abs=1e-9)


def test_add_one_smoothing_of_empty_prediction_and_target():
    empty = torch.zeros(1, 2, 4, 4)
    loss = ComboLoss(alpha=0.0)
    assert float(loss(empty, empty)) == pytest.approx(-1.0)  # (0 + 1) / (0 + 0 + 1)
    perfect = ComboLoss(alpha=0.5)(empty, empty)  # clamp: -ln(1 - 1e-7) ~ 1e-7 per voxel
    assert float(perfect) == pytest.approx(-0.5, abs=1e-6)


def test_presets_and_for_modality():
    assert COMBO_LOSS_PRESETS == {"pet": {"alpha": 0.5, "beta": 0.4}, "mri": {"alpha": 0.5, "beta": 0.6},
                                  "ultrasound": {"alpha": 0.5, "beta": 0.7}}
    for names, beta in ((("pet", "PET", "PT"), 0.4), (("mri", "MR", "Mri"), 0.6), (("ultrasound", "US"), 0.7)):
        for name in names:
            loss = ComboLoss.for_modality(name)
            assert (loss.alpha, loss.beta, loss.smooth, loss.eps, loss.from_logits) == (0.5, beta, 1.0, 1e-7, False)
    custom = ComboLoss.for_modality("pet", from_logits=True, alpha=0.7)
    assert (custom.alpha, custom.beta, custom.from_logits) == (0.7, 0.4, True)
    assert "beta=0.4" in repr(ComboLoss.for_modality("pet"))
    with pytest.raises(ValueError, match=r"no Combo loss preset for modality 'CT'.*\['mri', 'pet', 'ultrasound'\]"):
        ComboLoss.for_modality("CT")


def test_label_map_targets_equal_multilabel_masks():
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 5, 6, 7, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 6, (2, 6, 7, 4), generator=generator)  # 0 = background, organs 1..5
    masks = torch.stack([labels == value for value in range(1, 6)], dim=1)
    loss = ComboLoss.for_modality("pet", from_logits=True)
    expected = loss(logits, masks.double())
    torch.testing.assert_close(loss(logits, labels), expected)
    torch.testing.assert_close(loss(logits, labels[:, None].int()), expected)
    torch.testing.assert_close(loss(logits, masks), expected)  # bool masks
    binary = torch.randint(0, 2, (2, 1, 5, 5), generator=generator)
    single = torch.randn(2, 1, 5, 5, generator=generator)
    torch.testing.assert_close(loss(single, binary), loss(single, binary[:, 0]))


def test_half_precision_input_is_computed_in_float32():
    p, t = random_case((1, 2, 8, 8), seed=2)
    p[p > 0.999] = 0.999
    value = ComboLoss(beta=0.4)(torch.from_numpy(p).half(), torch.from_numpy(t))
    assert value.dtype == torch.float32 and torch.isfinite(value)
    expected, _, _ = numpy_combo(torch.from_numpy(p).half().double().numpy(), t, 0.5, 0.4)
    assert float(value) == pytest.approx(expected, abs=1e-5)


def test_argument_and_input_errors():
    for name, value in (("alpha", -0.1), ("alpha", 1.5), ("beta", 2.0), ("beta", float("nan"))):
        with pytest.raises(ValueError, match=rf"{name} must lie in \[0, 1\]"):
            ComboLoss(**{name: value})
    with pytest.raises(ValueError, match="smooth must be finite and >= 0"):
        ComboLoss(smooth=-1.0)
    with pytest.raises(ValueError, match=r"eps must lie in \(0, 0.5\)"):
        ComboLoss(eps=0.0)
    with pytest.raises(TypeError):
        ComboLoss(reduction="mean")  # one scalar by definition: there is no reduction to choose
    loss = ComboLoss()
    p = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"masks of the input's shape \(2, 3, 4, 4\).*got shape \(2, 3, 4, 5\)"):
        loss(p, torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="got shape \\(2, 4, 4\\) and dtype torch.float32"):
        loss(p, torch.zeros(2, 4, 4))  # a float label map is ambiguous
    with pytest.raises(ValueError, match=r"label map values must lie in \[0, 3\] for 3 output channel"):
        loss(p, torch.full((2, 4, 4), 4))
    with pytest.raises(ValueError, match=r"target masks must lie in \[0, 1\]"):
        loss(p, torch.full((2, 3, 4, 4), 2.0))
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\].*from_logits=True"):
        loss(p * 3.0 - 1.0, torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="at least one spatial axis"):
        loss(torch.rand(2, 3), torch.zeros(2, 3))


def test_functional_terms():
    p, t = random_case((2, 2, 5, 5), seed=9)
    wbce, dice = combo_loss_terms(torch.from_numpy(p), torch.from_numpy(t), beta=0.3)
    _, expected_wbce, expected_dice = numpy_combo(p, t, beta=0.3)
    assert float(wbce) == pytest.approx(expected_wbce) and float(dice) == pytest.approx(expected_dice)


def test_trains_inside_the_engine():
    from mednets.phantoms import blob_phantom
    from mednets.training import Case, Trainer, TrainingConfig

    cases = []
    for seed in range(2):
        phantom = blob_phantom(shape=(32, 32), num_blobs=2, radius_range_mm=(5.0, 8.0), seed=seed)
        cases.append(Case.from_volume(f"blob{seed}", phantom.image, phantom.labels, phantom.spacing))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))
    loss_fn = ComboLoss.for_modality("ultrasound", from_logits=True)
    config = TrainingConfig(iterations=4, batch_size=2, patch_size=(24, 24), validate_every=0, device="cpu",
                            optimizer={"name": "adam", "lr": 0.01}, seed=0, plot=False, log_every=1)
    result = Trainer(model, loss_fn, cases, config=config).fit()
    losses = [row["loss"] for row in result.history.train]
    assert result.iterations == 4 and len(losses) == 4 and all(np.isfinite(losses))
    assert all(-0.5 <= value < 5.0 for value in losses)  # alpha * wBCE - (1 - alpha) * Dice >= -(1 - alpha)
