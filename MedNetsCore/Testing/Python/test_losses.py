"""Tests of mednets.losses: SoftDiceLoss against monai.losses.DiceLoss, VoxelWeightedCrossEntropyLoss against
torch.nn.functional.cross_entropy and a hand formula, WeightedSumLoss bookkeeping, target handling, input errors and
float64 gradient checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from mednets.losses import SoftDiceLoss, VoxelWeightedCrossEntropyLoss, WeightedSumLoss


def logits_and_labels(shape, seed=0, dtype=torch.float32):
    """Random logits (B, C, *spatial) and integer labels (B, *spatial) in [0, C)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=generator, dtype=dtype) * 2.0
    labels = torch.randint(0, shape[1], (shape[0],) + tuple(shape[2:]), generator=generator)
    return logits, labels


# ---------------------------------------------------------------------------------------------------------------------
# SoftDiceLoss


DICE_SETTINGS = [
    # activation, include_background, squared, batch, smooth_nr, smooth_dr, reduction
    ("softmax", True, False, False, 1e-5, 1e-5, "mean"),
    ("softmax", False, False, False, 0.0, 1e-6, "sum"),
    ("softmax", True, True, False, 1.0, 1.0, "none"),
    ("softmax", False, True, True, 1e-5, 1e-5, "mean"),
    ("sigmoid", True, False, True, 0.5, 0.5, "none"),
    ("sigmoid", False, True, False, 1e-5, 1e-5, "mean"),
    (None, True, False, False, 1e-5, 1e-5, "sum"),
    (None, False, True, True, 0.0, 1e-5, "none"),
]


@pytest.mark.parametrize("setting", DICE_SETTINGS, ids=[str(s) for s in DICE_SETTINGS])
@pytest.mark.parametrize("spatial", [(9, 11), (5, 6, 7)], ids=["2d", "3d"])
def test_soft_dice_matches_monai(setting, spatial):
    activation, include_background, squared, batch, smooth_nr, smooth_dr, reduction = setting
    logits, labels = logits_and_labels((3, 4) + spatial, seed=len(spatial))
    input = torch.softmax(logits, 1) if activation is None else logits
    ours = SoftDiceLoss(activation=activation, include_background=include_background, smooth_numerator=smooth_nr,
                        smooth_denominator=smooth_dr, squared_denominator=squared, batch=batch, reduction=reduction)
    theirs = DiceLoss(sigmoid=activation == "sigmoid", softmax=activation == "softmax",
                      include_background=include_background, squared_pred=squared, batch=batch,
                      smooth_nr=smooth_nr, smooth_dr=smooth_dr, reduction=reduction, to_onehot_y=True)
    expected = theirs(input, labels[:, None])
    for target in (labels, labels[:, None], F.one_hot(labels, 4).movedim(-1, 1)):
        value = ours(input, target)
        if reduction == "none":
            channels = 4 if include_background else 3
            assert value.shape == ((channels,) if batch else (3, channels))
            expected_values = expected.reshape(value.shape)
        else:
            assert value.ndim == 0
            expected_values = expected
        torch.testing.assert_close(value, expected_values, rtol=1e-6, atol=1e-6)


def test_soft_dice_binary_single_channel_matches_monai():
    logits, _ = logits_and_labels((2, 1, 8, 9), seed=3)
    mask = torch.rand(2, 8, 9, generator=torch.Generator().manual_seed(4)) > 0.6
    ours = SoftDiceLoss(activation="sigmoid")
    expected = DiceLoss(sigmoid=True)(logits, mask[:, None].float())
    torch.testing.assert_close(ours(logits, mask), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours(logits, mask[:, None]), expected, rtol=1e-6, atol=1e-6)


def test_soft_dice_hand_computed():
    # One item, two channels of four voxels, probabilities given directly.
    probabilities = torch.tensor([[[0.9, 0.8, 0.2, 0.1], [0.1, 0.2, 0.8, 0.9]]])
    target = torch.tensor([[0, 1, 1, 1]])
    loss = SoftDiceLoss(smooth_numerator=0.0, smooth_denominator=0.0, reduction="none")(probabilities, target)
    # channel 0: 2 * 0.9 / (2.0 + 1) ; channel 1: 2 * (0.2 + 0.8 + 0.9) / (2.0 + 3)
    torch.testing.assert_close(loss, torch.tensor([[1 - 1.8 / 3.0, 1 - 3.8 / 5.0]]))
    squared = SoftDiceLoss(smooth_numerator=0.0, smooth_denominator=0.0, squared_denominator=True,
                           reduction="none")(probabilities, target)
    # channel 0: sum p^2 = 0.81 + 0.64 + 0.04 + 0.01 = 1.5 ; channel 1: the same 1.5
    torch.testing.assert_close(squared, torch.tensor([[1 - 1.8 / 2.5, 1 - 3.8 / 4.5]]))


def test_soft_dice_of_a_perfect_prediction_is_zero_and_smoothing_handles_empty_channels():
    labels = torch.zeros(2, 6, 6, dtype=torch.long)
    labels[:, 1:4, 2:5] = 1
    perfect = F.one_hot(labels, 3).movedim(-1, 1).float()  # channel 2 is empty in prediction and target
    loss = SoftDiceLoss(reduction="none")(perfect, labels)
    torch.testing.assert_close(loss, torch.zeros(2, 3), atol=1e-6, rtol=0)
    no_smoothing = SoftDiceLoss(smooth_numerator=0.0, smooth_denominator=1e-5, reduction="none")(perfect, labels)
    torch.testing.assert_close(no_smoothing[:, 2], torch.ones(2))  # empty channel: 0 / 1e-5 -> loss 1


def test_soft_dice_input_errors():
    logits, labels = logits_and_labels((2, 3, 5, 5))
    with pytest.raises(ValueError, match="activation must be one of"):
        SoftDiceLoss(activation="relu")
    with pytest.raises(ValueError, match="reduction must be one of"):
        SoftDiceLoss(reduction="average")
    with pytest.raises(ValueError, match="smoothing terms must be >= 0"):
        SoftDiceLoss(smooth_denominator=-1.0)
    with pytest.raises(ValueError, match="softmax' needs at least 2 channels"):
        SoftDiceLoss(activation="softmax")(logits[:, :1], labels.clamp(max=0))
    with pytest.raises(ValueError, match="include_background=False needs at least 2 channels"):
        SoftDiceLoss(activation="sigmoid", include_background=False)(logits[:, :1], labels.clamp(max=0))
    with pytest.raises(ValueError, match="integer dtype, got torch.float32"):
        SoftDiceLoss(activation="softmax")(logits, labels.float())
    with pytest.raises(ValueError, match=r"lie in \[0, 2\] for 3 classes, got values in \[1, 3\]"):
        SoftDiceLoss(activation="softmax")(logits, labels + 1)
    with pytest.raises(ValueError, match=r"\(2, 5, 5\).*got \(2, 4, 5\)"):
        SoftDiceLoss(activation="softmax")(logits, labels[:, :4])
    with pytest.raises(ValueError, match="at least one spatial axis"):
        SoftDiceLoss()(torch.rand(2, 3), torch.zeros(2, dtype=torch.long))


# ---------------------------------------------------------------------------------------------------------------------
# VoxelWeightedCrossEntropyLoss


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("class_weights", [None, [0.2, 1.0, 3.0]])
def test_cross_entropy_with_uniform_weights_equals_torch(reduction, class_weights):
    logits, labels = logits_and_labels((2, 3, 6, 7, 5), seed=1)
    weight = None if class_weights is None else torch.tensor(class_weights)
    expected = F.cross_entropy(logits, labels, weight=weight, reduction=reduction)
    loss = VoxelWeightedCrossEntropyLoss(class_weights=class_weights, reduction=reduction)
    torch.testing.assert_close(loss(logits, labels), expected)
    torch.testing.assert_close(loss(logits, labels[:, None], torch.ones(2, 6, 7, 5)), expected)
    if reduction == "mean":  # a constant weight map cancels in the weighted mean
        torch.testing.assert_close(loss(logits, labels, torch.full((2, 1, 6, 7, 5), 3.5)), expected)


def test_cross_entropy_with_weight_map_equals_hand_formula():
    logits, labels = logits_and_labels((2, 3, 4, 5), seed=2, dtype=torch.float64)
    weight_map = torch.rand(2, 4, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    weight_map[0, 0] = 0.0
    class_weights = [0.5, 2.0, 1.0]
    z, y, w = logits.numpy(), labels.numpy(), weight_map.numpy()
    terms, weights = [], []
    for b, i, j in itertools.product(range(2), range(4), range(5)):
        log_sum = np.log(np.exp(z[b, :, i, j]).sum())
        ce = log_sum - z[b, y[b, i, j], i, j]
        weight = w[b, i, j] * class_weights[y[b, i, j]]
        terms.append(weight * ce)
        weights.append(weight)
    for reduction, expected in [("sum", sum(terms)), ("mean", sum(terms) / sum(weights))]:
        loss = VoxelWeightedCrossEntropyLoss(class_weights=class_weights, reduction=reduction)
        assert float(loss(logits, labels, weight_map)) == pytest.approx(expected, rel=1e-12)
    none = VoxelWeightedCrossEntropyLoss(class_weights=class_weights, reduction="none")(logits, labels, weight_map)
    np.testing.assert_allclose(none.numpy().reshape(-1), terms, rtol=1e-12)


def test_cross_entropy_zero_weight_ignores_voxels():
    logits, labels = logits_and_labels((1, 4, 6, 6), seed=3)
    weight_map = torch.ones(1, 6, 6)
    weight_map[:, :3] = 0.0
    loss = VoxelWeightedCrossEntropyLoss()
    changed = logits.clone()
    changed[:, :, :3] = torch.randn(1, 4, 3, 6) * 10  # only in ignored voxels
    torch.testing.assert_close(loss(logits, labels, weight_map), loss(changed, labels, weight_map))
    torch.testing.assert_close(loss(logits, labels, weight_map), F.cross_entropy(logits[:, :, 3:], labels[:, 3:]))
    all_ignored = logits.clone().requires_grad_(True)
    value = loss(all_ignored, labels, torch.zeros(1, 6, 6))
    value.backward()
    assert value.item() == 0.0 and torch.equal(all_ignored.grad, torch.zeros_like(logits))


def test_cross_entropy_input_errors():
    logits, labels = logits_and_labels((2, 3, 4, 4))
    with pytest.raises(ValueError, match="class_weights must be finite and >= 0"):
        VoxelWeightedCrossEntropyLoss(class_weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="class_weights has 2 values but input has 3 classes"):
        VoxelWeightedCrossEntropyLoss(class_weights=[1.0, 2.0])(logits, labels)
    with pytest.raises(ValueError, match="C >= 2 classes"):
        VoxelWeightedCrossEntropyLoss()(logits[:, :1], labels.clamp(max=0))
    with pytest.raises(ValueError, match="weight_map must be >= 0"):
        VoxelWeightedCrossEntropyLoss()(logits, labels, -torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match=r"weight_map must have shape \(B, \*spatial\) = \(2, 4, 4\), got \(2, 4\)"):
        VoxelWeightedCrossEntropyLoss()(logits, labels, torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"lie in \[0, 2\]"):
        VoxelWeightedCrossEntropyLoss()(logits, labels - 1)


# ---------------------------------------------------------------------------------------------------------------------
# Gradients (float64)


@pytest.mark.parametrize("activation, squared, batch", [("softmax", False, False), ("sigmoid", True, True),
                                                        ("softmax", True, True)])
def test_soft_dice_gradcheck(activation, squared, batch):
    logits, labels = logits_and_labels((2, 3, 4, 3), seed=6, dtype=torch.float64)
    loss = SoftDiceLoss(activation=activation, squared_denominator=squared, batch=batch, include_background=False)
    assert torch.autograd.gradcheck(lambda x: loss(x, labels), (logits.requires_grad_(True),))


def test_cross_entropy_gradcheck():
    logits, labels = logits_and_labels((2, 3, 4, 3), seed=7, dtype=torch.float64)
    weight_map = torch.rand(2, 4, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    loss = VoxelWeightedCrossEntropyLoss(class_weights=[0.3, 1.0, 2.0])
    assert torch.autograd.gradcheck(lambda x: loss(x, labels, weight_map), (logits.requires_grad_(True),))


# ---------------------------------------------------------------------------------------------------------------------
# WeightedSumLoss


def test_weighted_sum_total_terms_and_extras():
    logits, labels = logits_and_labels((2, 3, 5, 6), seed=9)
    weight_map = torch.rand(2, 5, 6, generator=torch.Generator().manual_seed(10))
    dice, ce = SoftDiceLoss(activation="softmax"), VoxelWeightedCrossEntropyLoss(class_weights=[1.0, 2.0, 3.0])
    loss = WeightedSumLoss({"dice": (dice, 0.8), "ce": (ce, 0.2)}, extras_to=("ce",))
    total = loss(logits, labels, weight_map)
    expected_dice, expected_ce = dice(logits, labels), ce(logits, labels, weight_map)
    torch.testing.assert_close(total, 0.8 * expected_dice + 0.2 * expected_ce)
    assert list(loss.last_values) == ["dice", "ce"]
    assert loss.last_values["dice"] == pytest.approx(float(expected_dice))
    assert loss.last_values["ce"] == pytest.approx(float(expected_ce))
    assert not any(value.requires_grad for value in loss.last_terms.values())
    assert "terms.ce.class_weights" in loss.state_dict()  # terms are registered submodules (follow .to(device))


def test_weighted_sum_errors():
    dice = SoftDiceLoss()
    with pytest.raises(ValueError, match="at least one term"):
        WeightedSumLoss({})
    with pytest.raises(ValueError, match="weight of term 'dice' must be finite and >= 0"):
        WeightedSumLoss({"dice": (dice, -1.0)})
    with pytest.raises(TypeError, match="must be a \\(loss module, weight\\) pair"):
        WeightedSumLoss({"dice": dice})
    with pytest.raises(ValueError, match="without '.'"):
        WeightedSumLoss({"a.b": (dice, 1.0)})
    with pytest.raises(ValueError, match=r"extras_to names unknown terms \['ce'\]"):
        WeightedSumLoss({"dice": (dice, 1.0)}, extras_to=("ce",))
    logits, labels = logits_and_labels((2, 3, 4, 4))
    unreduced = WeightedSumLoss({"dice": (SoftDiceLoss(reduction="none"), 1.0)})
    with pytest.raises(ValueError, match=r"term 'dice' returned shape \(2, 3\), expected a scalar"):
        unreduced(logits, labels)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_losses_on_cuda_match_cpu():
    logits, labels = logits_and_labels((2, 3, 8, 8, 8), seed=11)
    weight_map = torch.rand(2, 8, 8, 8, generator=torch.Generator().manual_seed(12))
    loss = WeightedSumLoss({"dice": (SoftDiceLoss(activation="softmax", batch=True), 1.0),
                            "ce": (VoxelWeightedCrossEntropyLoss(class_weights=[1.0, 2.0, 0.5]), 1.0)},
                           extras_to=("ce",))
    expected = loss(logits, labels, weight_map)
    on_gpu = loss.to("cuda")(logits.cuda(), labels.cuda(), weight_map.cuda())
    torch.testing.assert_close(on_gpu.cpu(), expected, rtol=1e-5, atol=1e-6)
