"""``SpectralDiscriminator`` PatchGAN (GPVTON.md §9.2): spectral-norm 4×4 convs, padding 1."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils import spectral_norm

from ..blocks import scaled


class SpectralDiscriminator(nn.Module):
    """in→64 s2, 64→128 s2, 128→256 s2, 256→512 s1, 512→1 s1; LeakyReLU(0.2) except after the last.

    ``width`` scales the hidden channels like the networks' ``width`` knob (1.0 = official).
    """

    def __init__(self, in_channels: int, width: float = 1.0) -> None:
        super().__init__()
        ch = [scaled(c, width) for c in (64, 128, 256, 512)]
        layers: list[nn.Module] = []
        cin = in_channels
        for c, s in zip(ch, (2, 2, 2, 1)):
            layers += [spectral_norm(nn.Conv2d(cin, c, 4, stride=s, padding=1)), nn.LeakyReLU(0.2)]
            cin = c
        layers.append(spectral_norm(nn.Conv2d(cin, 1, 4, stride=1, padding=1)))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
