"""Tests of the GLIA-Net losses (mednets.losses.explog) against independent NumPy references written here with plain
loops: pyramid weights (voxel-by-voxel 3x3x3 minimum, per target and per patch), exponential-logarithmic Dice,
pyramid-weighted exponential cross-entropy, the local and total losses; gradients; input validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mednets.losses.explog import (ExpLogDiceLoss, ExpLogLoss, GLIANetLoss, PyramidCrossEntropyLoss,
                                   pyramid_weights)


# --------------------------------------------------------------------------------------------- numpy references

def np_erode(mask):
    """Voxel-by-voxel 3x3x3 minimum over the neighbours that exist inside the array."""
    out = np.zeros_like(mask)
    shape = mask.shape
    for index in itertools.product(*[range(n) for n in shape]):
        values = []
        for offset in itertools.product((-1, 0, 1), repeat=mask.ndim):
            neighbour = tuple(i + o for i, o in zip(index, offset))
            if all(0 <= q < n for q, n in zip(neighbour, shape)):
                values.append(mask[neighbour])
        out[index] = min(values)
    return out


def np_components(mask):
    """26-connected components by flood fill."""
    labels = np.zeros(mask.shape, int)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        stack = [start]
        labels[start] = count
        while stack:
            voxel = stack.pop()
            for offset in itertools.product((-1, 0, 1), repeat=mask.ndim):
                q = tuple(v + o for v, o in zip(voxel, offset))
                if all(0 <= a < n for a, n in zip(q, mask.shape)) and mask[q] and not labels[q]:
                    labels[q] = count
                    stack.append(q)
    return labels, count


def np_pyramid_one(mask, threshold, low, high):
    if mask.sum() > threshold:
        return np.where(mask > 0, (low + high) / 2, 0.0)
    total = mask.astype(float).copy()
    current = mask.astype(float)
    while current.sum() > threshold / 20:
        current = np_erode(current)
        total += current
    return np.where(mask > 0, low + (high - low) * total / total.max(), 0.0)


def np_pyramid(target, threshold=400, low=3.0, high=20.0, negative=1.0, per_target=True):
    out = np.full(target.shape, negative, float)
    for b in range(target.shape[0]):
        item = (target[b] > 0).astype(float)
        if not item.any():
            continue
        if per_target:
            labels, count = np_components(item)
            for number in range(1, count + 1):
                part = (labels == number).astype(float)
                values = np_pyramid_one(part, threshold, low, high)
                out[b][part > 0] = values[part > 0]
        else:
            values = np_pyramid_one(item, threshold, low, high)
            out[b][item > 0] = values[item > 0]
    return out


def np_softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_explog_dice(logits, target, gamma=0.3, smooth=1.0, activation="softmax"):
    if activation == "softmax":
        p = np_softmax(logits)[:, 1]
    else:
        p = 1 / (1 + np.exp(-logits[:, 1]))
    losses = []
    for b in range(len(p)):
        dice = (2 * (p[b] * target[b]).sum() + smooth) / (p[b].sum() + target[b].sum() + smooth)
        losses.append(max(-np.log(dice), 1e-8) ** gamma)
    return float(np.mean(losses))


def np_pyramid_ce(logits, target, weight, gamma=0.3):
    p = np_softmax(logits)
    losses = []
    for b in range(len(p)):
        picked = np.where(target[b] > 0, p[b, 1], p[b, 0])
        ce = np.maximum(-np.log(picked), 1e-8) ** gamma
        losses.append(float((weight[b] * ce).mean()))
    return float(np.mean(losses))


# ------------------------------------------------------------------------------------------------------ tests

def sample_target(seed=0, shape=(2, 12, 12, 12)):
    rng = np.random.default_rng(seed)
    target = np.zeros(shape, np.int64)
    grid = np.indices(shape[1:])
    # item 0: a small ball (pyramid) and a large box (> 40 voxels with threshold 40: fixed weight) touching the border
    ball = ((grid - np.array([4, 4, 4])[:, None, None, None]) ** 2).sum(0) <= 5
    target[0][ball] = 1
    target[0, 8:12, 7:12, 9:12] = 1
    # item 1: random speckle and a plate
    target[1][rng.random(shape[1:]) > 0.97] = 1
    target[1, 2:5, 2:9, 6:8] = 1
    return target


@pytest.mark.parametrize("per_target", [True, False])
def test_pyramid_weights_match_numpy_reference(per_target):
    target = sample_target()
    ours = pyramid_weights(torch.from_numpy(target), size_threshold=40, per_target=per_target).numpy()
    ref = np_pyramid(target, threshold=40, per_target=per_target)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
    default = pyramid_weights(torch.from_numpy(target)).numpy()
    np.testing.assert_allclose(default, np_pyramid(target), rtol=1e-6, atol=1e-6)


def test_pyramid_weight_rules():
    target = np.zeros((3, 16, 16, 16), np.int64)
    target[0, 4:11, 4:11, 4:11] = 1  # 343 voxels: pyramid, centre 20, edge low
    target[1, 1:10, 1:10, 1:10] = 1  # 729 voxels > 400: fixed 11.5
    weights = pyramid_weights(torch.from_numpy(target)).numpy()
    assert weights[0, 7, 7, 7] == pytest.approx(20.0)
    assert 3.0 < weights[0, 4, 4, 4] < weights[0, 5, 5, 5] < 20.0
    assert np.all(weights[1][target[1] > 0] == 11.5)
    assert np.all(weights[target == 0] == 1.0) and np.all(weights[2] == 1.0)
    # per target: a small target next to a large one keeps its own pyramid (the per-patch rule would not)
    both = target[:1].copy()
    both[0, 12:15, 12:15, 0:16] = 1  # 144 more voxels -> patch total 487 > 400
    per_target = pyramid_weights(torch.from_numpy(both)).numpy()
    per_patch = pyramid_weights(torch.from_numpy(both), per_target=False).numpy()
    assert per_target[0, 7, 7, 7] == pytest.approx(20.0) and per_patch[0, 7, 7, 7] == pytest.approx(11.5)
    assert pyramid_weights(torch.from_numpy(both[:, None])).shape == both.shape  # (B, 1, D, H, W) accepted


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_explog_dice_matches_numpy(activation):
    torch.manual_seed(0)
    target = sample_target(1)
    logits = torch.randn(2, 2, 12, 12, 12, dtype=torch.float64)
    ours = ExpLogDiceLoss(activation=activation)(logits, torch.from_numpy(target))
    assert float(ours) == pytest.approx(np_explog_dice(logits.numpy(), target, activation=activation), rel=1e-9)
    none = ExpLogDiceLoss(reduction="none")(logits, torch.from_numpy(target))
    assert none.shape == (2,)


def test_pyramid_ce_matches_numpy():
    torch.manual_seed(1)
    target = sample_target(2)
    logits = 3 * torch.randn(2, 2, 12, 12, 12, dtype=torch.float64)
    ours = PyramidCrossEntropyLoss()(logits, torch.from_numpy(target))
    ref = np_pyramid_ce(logits.numpy(), target, np_pyramid(target))
    assert float(ours) == pytest.approx(ref, rel=1e-9)
    flat = PyramidCrossEntropyLoss(pyramid=False)(logits, torch.from_numpy(target))
    assert float(flat) == pytest.approx(np_pyramid_ce(logits.numpy(), target, np.ones(target.shape)), rel=1e-9)
    given = torch.rand(2, 12, 12, 12, dtype=torch.float64)
    assert float(PyramidCrossEntropyLoss()(logits, torch.from_numpy(target), given)) == pytest.approx(
        np_pyramid_ce(logits.numpy(), target, given.numpy()), rel=1e-9)


def test_local_and_total_losses_match_numpy_and_paper_weights():
    torch.manual_seed(2)
    target = sample_target(3)
    logits = torch.randn(2, 2, 12, 12, 12, dtype=torch.float64, requires_grad=True)
    global_logits = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    loss_fn = GLIANetLoss()
    total = loss_fn(logits, global_logits, torch.from_numpy(target))
    dice = np_explog_dice(logits.detach().numpy(), target)
    ce = np_pyramid_ce(logits.detach().numpy(), target, np_pyramid(target))
    labels = (target.reshape(2, -1).sum(1) > 3).astype(int)
    g = global_logits.detach().numpy()
    log_p = g - np.log(np.exp(g).sum(1, keepdims=True))
    global_ce = -np.mean(log_p[np.arange(2), labels])
    expected = 0.1 * global_ce + 1.0 * (0.8 * dice + 0.2 * ce)
    assert float(total.detach()) == pytest.approx(expected, rel=1e-9)
    values = loss_fn.last_values
    assert values["dice"] == pytest.approx(dice) and values["cross_entropy"] == pytest.approx(ce)
    assert values["global"] == pytest.approx(global_ce) and values["total"] == pytest.approx(expected)
    total.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert torch.isfinite(global_logits.grad).all() and global_logits.grad.abs().sum() > 0
    official = ExpLogLoss(dice_weight=0.2, ce_weight=0.8, activation="sigmoid")
    value = official(logits.detach(), torch.from_numpy(target))
    assert float(value) == pytest.approx(0.2 * np_explog_dice(logits.detach().numpy(), target, activation="sigmoid")
                                         + 0.8 * ce, rel=1e-9)
    local_only = GLIANetLoss()(logits.detach(), None, torch.from_numpy(target))
    assert float(local_only) == pytest.approx(0.8 * dice + 0.2 * ce, rel=1e-9)


def test_perfect_prediction_gives_small_loss_and_bad_targets_fail():
    target = torch.from_numpy(sample_target(4))
    perfect = torch.stack([(1 - target) * 20.0 - 10, target * 20.0 - 10], dim=1).double()
    assert float(ExpLogLoss()(perfect, target)) < 0.05
    assert float(ExpLogLoss()(-perfect, target)) > 1.0
    with pytest.raises(ValueError, match="class indices"):
        ExpLogDiceLoss()(perfect, target * 3)
    with pytest.raises(ValueError, match="does not match"):
        PyramidCrossEntropyLoss()(perfect, target[:, :4])
    with pytest.raises(ValueError, match="activation"):
        ExpLogDiceLoss(activation="relu")
