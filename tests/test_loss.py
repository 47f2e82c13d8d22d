"""Tests of the weighted BCE + Dice training loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segmentation.training.loss import BCEDiceLoss


def _batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 2, 4, 8, 8, generator=generator) * 3
    target = (torch.rand(2, 2, 4, 8, 8, generator=generator) > 0.6).float()
    weight = torch.rand(2, 2, 4, 8, 8, generator=generator) * 10
    return logits, target, weight


@pytest.mark.parametrize("seed", range(5))
def test_loss_is_never_negative(seed):
    logits, target, weight = _batch(seed)
    loss_fn = BCEDiceLoss()
    for candidate in (logits, -logits, target * 40 - 20):
        assert loss_fn(candidate, target, weight).item() >= 0.0
        assert loss_fn(candidate, target).item() >= 0.0


def test_perfect_confident_logits_give_near_zero_loss():
    _, target, weight = _batch()
    logits = target * 40 - 20
    assert BCEDiceLoss()(logits, target, weight).item() < 1e-4
    empty = torch.zeros_like(target)
    assert BCEDiceLoss()(torch.full_like(target, -20.0), empty).item() < 1e-4


def test_all_ones_weights_equal_unweighted():
    logits, target, _ = _batch()
    loss_fn = BCEDiceLoss()
    weighted = loss_fn(logits, target, torch.ones_like(target))
    assert torch.allclose(weighted, loss_fn(logits, target))


def test_bce_is_computed_on_logits_once():
    logits, target, weight = _batch()
    loss = BCEDiceLoss(bce_weight=1.0, dice_weight=0.0)(logits, target, weight)
    probability = torch.sigmoid(logits)
    manual_map = -(target * torch.log(probability) + (1 - target) * torch.log(1 - probability))
    dims = (0, 2, 3, 4)
    manual = ((weight * manual_map).sum(dims) / weight.sum(dims)).mean()
    assert torch.allclose(loss, manual, atol=1e-5)
    double_sigmoid = F.binary_cross_entropy_with_logits(probability, target)
    assert not torch.allclose(loss, double_sigmoid, atol=1e-2)


def test_dice_uses_weights_in_numerator_and_denominator():
    logits, target, weight = _batch()
    loss = BCEDiceLoss(bce_weight=0.0, dice_weight=1.0, smooth=0.0)(logits, target, weight)
    probability = torch.sigmoid(logits)
    dims = (0, 2, 3, 4)
    dice = 2 * (weight * probability * target).sum(dims) / (
        (weight * probability).sum(dims) + (weight * target).sum(dims)
    )
    assert torch.allclose(loss, 1 - dice.mean(), atol=1e-6)


def test_gradient_is_finite_and_channel_weights_apply():
    logits, target, weight = _batch()
    logits.requires_grad_(True)
    loss = BCEDiceLoss(channel_weights=[1.0, 0.0])(logits, target, weight)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[:, 0].abs().sum() > 0
    assert logits.grad[:, 1].abs().sum() == 0
