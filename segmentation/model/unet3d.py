"""3D U-Net with the module layout and state_dict keys of pytorch-3dunet.

The layout (``encoders.N.basic_module.SingleConvK.{groupnorm,conv}``, ``decoders.N...``,
``final_conv``) matches the reference project's ``UNet3D`` (a trimmed copy of
wolny/pytorch-3dunet), so its ``{"state_dict": ...}`` checkpoints load with ``strict=True``.
``forward`` returns logits; apply a sigmoid to get probabilities.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _num_groups(channels: int, num_groups: int) -> int:
    """GroupNorm groups: 1 below ``num_groups`` channels (as the reference), else a divisor."""
    if channels < num_groups:
        return 1
    return math.gcd(channels, num_groups)


class SingleConv(nn.Sequential):
    """GroupNorm → Conv3d (no bias) → ReLU, the reference's layer order ``"gcr"``."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int = 8) -> None:
        super().__init__()
        self.add_module(
            "groupnorm", nn.GroupNorm(_num_groups(in_channels, num_groups), in_channels)
        )
        self.add_module(
            "conv", nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        )
        self.add_module("ReLU", nn.ReLU(inplace=True))


class DoubleConv(nn.Sequential):
    """Two :class:`SingleConv`; in an encoder the first one outputs ``max(out // 2, in)``."""

    def __init__(
        self, in_channels: int, out_channels: int, *, encoder: bool, num_groups: int = 8
    ) -> None:
        super().__init__()
        if encoder:
            middle = max(out_channels // 2, in_channels)
        else:
            middle = out_channels
        self.add_module("SingleConv1", SingleConv(in_channels, middle, num_groups))
        self.add_module("SingleConv2", SingleConv(middle, out_channels, num_groups))


class Encoder(nn.Module):
    """Optional 2×2×2 max pooling followed by a :class:`DoubleConv`."""

    def __init__(
        self, in_channels: int, out_channels: int, *, pool: bool, num_groups: int = 8
    ) -> None:
        super().__init__()
        self.pooling = nn.MaxPool3d(kernel_size=2) if pool else None
        self.basic_module = DoubleConv(
            in_channels, out_channels, encoder=True, num_groups=num_groups
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling is not None:
            x = self.pooling(x)
        return self.basic_module(x)


class Decoder(nn.Module):
    """Nearest-neighbour upsampling to the skip's size, concatenation ``[skip, x]``, DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int = 8) -> None:
        super().__init__()
        self.basic_module = DoubleConv(
            in_channels, out_channels, encoder=False, num_groups=num_groups
        )

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
        return self.basic_module(torch.cat((skip, x), dim=1))


class UNet3D(nn.Module):
    """3D U-Net for boundary (and foreground) prediction.

    Parameters
    ----------
    in_channels : int
        Input channels (2: cytoplasm and membrane markers).
    out_channels : int
        Output channels: 1 (boundary) or 2 (boundary, foreground).
    f_maps : int
        Feature maps at the first level; level k has ``f_maps * 2**k``.
    num_levels : int
        Number of resolution levels (each after the first halves Z, Y and X).
    num_groups : int
        GroupNorm groups.
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 2,
        f_maps: int = 32,
        num_levels: int = 4,
        num_groups: int = 8,
    ) -> None:
        super().__init__()
        features = [f_maps * 2**level for level in range(num_levels)]
        self.encoders = nn.ModuleList(
            Encoder(
                in_channels if level == 0 else features[level - 1],
                features[level],
                pool=level > 0,
                num_groups=num_groups,
            )
            for level in range(num_levels)
        )
        reversed_features = features[::-1]
        self.decoders = nn.ModuleList(
            Decoder(
                reversed_features[i] + reversed_features[i + 1],
                reversed_features[i + 1],
                num_groups=num_groups,
            )
            for i in range(num_levels - 1)
        )
        self.final_conv = nn.Conv3d(features[0], out_channels, kernel_size=1)

    @property
    def downsampling_factor(self) -> int:
        """Size of the coarsest grid step: inputs should be multiples of it along each axis.

        Max pooling drops the last plane of an odd-sized axis, so the deepest features of
        the last planes of an input that is not a multiple of this are missing.
        """
        return 2 ** (len(self.encoders) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.insert(0, x)
        for decoder, skip in zip(self.decoders, skips[1:], strict=True):
            x = decoder(skip, x)
        return self.final_conv(x)
