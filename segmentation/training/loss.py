"""Weighted binary cross-entropy + soft Dice loss for multi-channel boundary/foreground targets.

Fixes three bugs of the reference loss: the sigmoid is applied exactly once (BCE works on
logits), the voxel weights enter both the numerator and the denominator of the Dice
coefficient (so it stays in [0, 1] and the loss never goes negative), and ``weight=None`` is
a valid call (unweighted loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class BCEDiceLoss(nn.Module):
    """``bce_weight * BCE + dice_weight * (1 - Dice)`` on logits of shape (N, K, Z, Y, X).

    For each channel ``c`` (sums over the batch and all voxels of that channel):

    - ``BCE_c = sum(w * bce(logit, t)) / sum(w)``: binary cross-entropy computed on the
      logits with ``F.binary_cross_entropy_with_logits`` (numerically stable, one sigmoid),
      averaged with the voxel weights ``w`` (a weighted mean, so the scale of ``w`` does not
      change the loss magnitude; all-ones weights give the plain mean).
    - ``Dice_c = (2 * sum(w p t) + s) / (sum(w p) + sum(w t) + s)`` with
      ``p = sigmoid(logit)`` and smoothing ``s``. Because ``2 p t <= p + t`` for
      ``p, t`` in [0, 1] and ``w >= 0``, ``Dice_c`` is in [0, 1]. The smoothing term makes an
      empty target channel predicted empty score ~1 instead of 0.

    Channels are combined with ``channel_weights`` (a weighted mean; equal by default), so
    the loss is ``>= 0`` for any logits, targets in [0, 1] and non-negative weights.

    Parameters
    ----------
    bce_weight, dice_weight : float
        Factors of the two terms.
    channel_weights : sequence of float, optional
        Relative importance of each output channel (e.g. boundary vs foreground).
    smooth : float
        Dice smoothing ``s`` (in units of weighted voxels).
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        channel_weights: Sequence[float] | None = None,
        smooth: float = 1.0,
    ) -> None:
        super().__init__()
        if bce_weight < 0 or dice_weight < 0 or smooth < 0:
            raise ValueError("bce_weight, dice_weight and smooth must be non-negative")
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)
        if channel_weights is None:
            self.channel_weights = None
        else:
            weights = torch.as_tensor(list(channel_weights), dtype=torch.float32)
            if weights.ndim != 1 or bool((weights < 0).any()) or float(weights.sum()) <= 0:
                raise ValueError("channel_weights must be non-negative with a positive sum")
            self.register_buffer("channel_weights", weights)

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the scalar loss.

        Parameters
        ----------
        logits : torch.Tensor
            Raw network outputs, shape (N, K, ...).
        target : torch.Tensor
            Targets in [0, 1], same shape as ``logits``.
        weight : torch.Tensor, optional
            Non-negative voxel weights, same shape as ``logits`` (or broadcastable to it);
            ``None`` gives the unweighted loss.
        """
        if logits.shape != target.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape"
            )
        logits = logits.float()
        target = target.float()
        if weight is None:
            weight = torch.ones_like(logits)
        else:
            weight = weight.float().expand_as(logits)
        reduce_dims = [0, *range(2, logits.ndim)]

        bce_map = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        weight_sum = weight.sum(dim=reduce_dims)
        bce = (weight * bce_map).sum(dim=reduce_dims) / weight_sum.clamp_min(1e-12)

        probability = torch.sigmoid(logits)
        intersection = (weight * probability * target).sum(dim=reduce_dims)
        predicted = (weight * probability).sum(dim=reduce_dims)
        reference = (weight * target).sum(dim=reduce_dims)
        denominator = (predicted + reference + self.smooth).clamp_min(1e-12)
        dice = (2.0 * intersection + self.smooth) / denominator

        per_channel = self.bce_weight * bce + self.dice_weight * (1.0 - dice)
        if self.channel_weights is None:
            return per_channel.mean()
        channel_weights = self.channel_weights.to(per_channel.device)
        if channel_weights.numel() != per_channel.numel():
            raise ValueError(
                f"{channel_weights.numel()} channel_weights for {per_channel.numel()} channels"
            )
        return (channel_weights * per_channel).sum() / channel_weights.sum()
