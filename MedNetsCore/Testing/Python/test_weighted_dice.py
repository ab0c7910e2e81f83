"""Voxel-weighted soft Dice (Altun et al., eq. 6)."""
import pytest
import torch

from mednets.losses.weighted_dice import WeightedDiceLoss


def test_hand_case_and_zero_weights():
    probs = torch.tensor([[[0.2, 0.6, 1.0, 0.0]], [[0.8, 0.4, 0.0, 1.0]]]).permute(1, 0, 2)  # (1, 2, 4)
    target = torch.tensor([[1, 1, 0, 0]])
    loss = WeightedDiceLoss(activation=None, eps=0.0)
    # class 1: p = (0.8, 0.4, 0, 1), y = (1, 1, 0, 0): 1 - 2*1.2 / (2 + 2.2)
    assert loss(probs, target).item() == pytest.approx(1 - 2.4 / 4.2)
    weights = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # ignore the last voxel
    assert loss(probs, target, weights).item() == pytest.approx(1 - 2.4 / 3.2)
    # a constant non-zero weight cancels (eq. 7)
    assert loss(probs, target, 3.0 * torch.ones(1, 4)).item() == pytest.approx(1 - 2.4 / 4.2)


def test_matches_soft_dice_without_weights():
    from mednets.losses import SoftDiceLoss
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 6, 6, 6)
    target = torch.randint(0, 2, (2, 6, 6, 6))
    ours = WeightedDiceLoss(include_background=False)(logits, target)
    reference = SoftDiceLoss(activation="softmax", include_background=False)(logits, target)
    assert ours.item() == pytest.approx(reference.item(), abs=1e-5)
    with pytest.raises(ValueError):
        WeightedDiceLoss()(logits, target, -torch.ones(2, 6, 6, 6))
