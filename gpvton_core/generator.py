"""Res-UNet try-on generator (official ``ResUnetGenerator(36, 4, 5, ngf=64, BatchNorm2d)``, GPVTON.md §5).

BatchNorm must run on its running statistics (eval mode, §5.4): :meth:`TryOnGenerator.infer`
switches the module to eval itself, so inference output never depends on the batch.
Keys follow the official nesting (``model.model.4.model.5.model.5.model.5.*``) at any ``width``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .blocks import scaled

GEN_IN = 36
GEN_OUT = 4
NGF = 64


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """ReLU(x + BN(Conv(ReLU(BN(Conv(x)))))); keys ``block.0/1/3/4``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(_conv(channels, channels), nn.BatchNorm2d(channels), nn.ReLU(),
                                   _conv(channels, channels), nn.BatchNorm2d(channels))
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.block(x))


class UnetSkipBlock(nn.Module):
    """One U-Net level; returns ``cat(x, model(x))`` except the outermost level."""

    def __init__(self, outer: int, inner: int, child: Optional["UnetSkipBlock"] = None,
                 in_channels: Optional[int] = None, outermost: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        cin = outer if in_channels is None else in_channels
        up = nn.Upsample(scale_factor=2, mode="nearest")
        if outermost:
            assert child is not None
            layers = [_conv(cin, inner, 2), nn.ReLU(), ResidualBlock(inner), ResidualBlock(inner),
                      child, up, _conv(2 * inner, outer)]
        elif child is None:  # innermost
            layers = [_conv(cin, inner, 2), nn.ReLU(), ResidualBlock(inner), ResidualBlock(inner),
                      up, _conv(inner, outer), nn.BatchNorm2d(outer), nn.ReLU(),
                      ResidualBlock(outer), ResidualBlock(outer)]
        else:
            layers = [_conv(cin, inner, 2), nn.BatchNorm2d(inner), nn.ReLU(),
                      ResidualBlock(inner), ResidualBlock(inner), child,
                      up, _conv(2 * inner, outer), nn.BatchNorm2d(outer), nn.ReLU(),
                      ResidualBlock(outer), ResidualBlock(outer)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        y = self.model(x)
        return y if self.outermost else torch.cat((x, y), 1)


class TryOnGenerator(nn.Module):
    """36-channel input → 4 raw channels (3 RGB pre-tanh, 1 mask pre-sigmoid)."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        self.width = float(width)
        ngf = scaled(NGF, width)
        block = UnetSkipBlock(ngf * 8, ngf * 8)
        block = UnetSkipBlock(ngf * 4, ngf * 8, block)
        block = UnetSkipBlock(ngf * 2, ngf * 4, block)
        block = UnetSkipBlock(ngf, ngf * 2, block)
        self.model = UnetSkipBlock(GEN_OUT, ngf, block, in_channels=GEN_IN, outermost=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def infer(self, x: Tensor) -> Tensor:
        """Eval-mode forward (BatchNorm on running statistics; batch-independent)."""
        if self.training:
            self.eval()
        return self.model(x)
