"""Building blocks of the LFGP warping module (GPVTON.md §3.2, §3.3, §3.7).

Attribute names and ``nn.Sequential`` indices follow the official state-dict layout exactly
(GPVTON.md §6), so official checkpoints load by key. Every channel count goes through
:func:`scaled` so a ``width`` < 1 builds a small network with the same keys for tests / demos.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: LeakyReLU slope used everywhere in the warping module (GPVTON.md §2).
LRELU_SLOPE = 0.1
#: Official channel widths of the five encoder stages (fine → coarse).
ENCODER_CHANNELS = (64, 128, 256, 256, 256)
FPN_CHANNELS = 256
HEAD_HIDDEN = (128, 64, 32)
#: Floor for the heads' hidden channels at small ``width`` (never reached at 1.0, where the narrowest is 32).
#: Scaled linearly, width 1/16 leaves the parsing head 2 channels wide before its 10-class output conv —
#: too narrow to separate the classes: trained small models then only ever predicted 4 of the 10.
HEAD_MIN_HIDDEN = 8
SPADE_HIDDEN = 128


def scaled(channels: int, width: float) -> int:
    """Channel count at ``width`` (1.0 = official); never below 1."""
    return max(1, int(round(channels * width)))


def _in(x: Tensor) -> Tensor:
    """InstanceNorm without affine / running stats (eps 1e-5, biased variance).

    Channels-last input stays channels-last (``instance_norm`` would return NCHW). bf16 / fp16
    use GroupNorm with one group per channel (same statistics, float32 accumulation).
    float32 / float64 use :func:`_in_channels_last`: GroupNorm's channels-last kernel sums
    x and x² naively over all pixels and loses ~3 digits at 256×192 (measured 2.5e-3 vs 1e-6),
    enough to break the float32 parity of the Dress Code decoder.
    """
    if _format(x) != torch.channels_last:
        return F.instance_norm(x, eps=1e-5)
    if x.dtype in (torch.bfloat16, torch.float16):
        return F.group_norm(x, x.shape[1], eps=1e-5)
    return _in_channels_last(x)


def _in_channels_last(x: Tensor) -> Tensor:
    """Two-pass instance norm of a channels-last tensor, sums per image row then across rows in float64."""
    b, c, h, w = x.shape
    n = h * w
    v = x.permute(0, 2, 3, 1)  # b×h×w×c view
    mean = v.sum(2).sum(1, keepdim=True, dtype=torch.float64).div_(n)  # b×1×c
    d = v - mean.to(x.dtype).unsqueeze(1)
    var = torch.linalg.vector_norm(d, dim=2).square().sum(1, keepdim=True, dtype=torch.float64) / n
    scale = torch.rsqrt(var + 1e-5).to(x.dtype).unsqueeze(1)
    # in place only without autograd: training differentiates through d (the norm saved it)
    d = d * scale if torch.is_grad_enabled() and x.requires_grad else d.mul_(scale)
    return d.permute(0, 3, 1, 2)


class InstanceNorm(nn.Module):
    """Parameter-free instance norm; a module so that it occupies its official Sequential index."""

    def forward(self, x: Tensor) -> Tensor:
        return _in(x)


def _format(x: Tensor) -> torch.memory_format:
    """channels_last if ``x`` is stored that way (and is not trivially both), else contiguous."""
    cl = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def _spatially_constant(m: Tensor) -> bool:
    flat = m.flatten(2)
    return bool((flat.amax(-1) == flat.amin(-1)).all())


_BORDER: dict[tuple[int, str], Tensor] = {}


def _border_index(n: int, x_device: torch.device) -> Tensor:
    """Index into a 5-wide canvas: 0, 1, then 2 for the interior, then 3, 4.

    Cached per (n, device): built per call it cost five tiny kernels per SPADE layer (≈900 launches
    per Dress Code batch). Built outside inference mode so training may save it for backward.
    """
    key = (n, str(x_device))
    idx = _BORDER.get(key)
    if idx is None:
        with torch.inference_mode(False):
            idx = torch.full((n,), 2, dtype=torch.long)
            idx[0], idx[1], idx[-2], idx[-1] = 0, 1, 3, 4
            idx = _BORDER[key] = idx.to(x_device)
    return idx


def conv3x3(cin: int, cout: int, bias: bool = True, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


class ResBlock(nn.Module):
    """x + Conv(ReLU(IN(Conv(ReLU(IN(x)))))), bias-free convs at ``block.2`` / ``block.5``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            InstanceNorm(), nn.ReLU(), conv3x3(channels, channels, bias=False),
            InstanceNorm(), nn.ReLU(), conv3x3(channels, channels, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class DownSample(nn.Module):
    """Stride-2 conv on ReLU(IN(x)); IN+ReLU therefore also hits the raw input channels (§10.7)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.block = nn.Sequential(InstanceNorm(), nn.ReLU(), conv3x3(cin, cout, bias=False, stride=2))

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class SPADE(nn.Module):
    """IN(x)·(1+γ(T)) + β(T) with T the 1-channel type map resized (nearest) to x (§3.7).

    A B×1×1×1 map is a per-sample constant by construction (the inference pipeline passes the
    Dress Code type map so): the constant path then needs no check. The check of a full map
    (``_spatially_constant``) is a host sync per layer — 93 per Dress Code batch — and a
    data-dependent branch that breaks a compiled graph at every SPADE layer.
    """

    takes_segmap = True

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(conv3x3(1, hidden), nn.ReLU())
        self.mlp_gamma = conv3x3(hidden, channels)
        self.mlp_beta = conv3x3(hidden, channels)

    def forward(self, x: Tensor, segmap: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        segmap = segmap.to(x.dtype)
        point = segmap.shape[-2:] == (1, 1)
        if h >= 5 and w >= 5 and (point or _spatially_constant(segmap)):
            gamma, beta = self._modulation_constant(segmap[:, :, :1, :1], h, w, _format(x))
        else:
            if segmap.shape[-2:] != x.shape[-2:]:
                segmap = F.interpolate(segmap, size=x.shape[-2:], mode="nearest")
            a = self.mlp_shared(segmap)
            gamma, beta = self.mlp_gamma(a), self.mlp_beta(a)
        return _in(x) * (1 + gamma) + beta

    def _modulation_constant(self, value: Tensor, h: int, w: int,
                             fmt: torch.memory_format = torch.contiguous_format) -> tuple[Tensor, Tensor]:
        """γ, β for a per-sample constant map (the Dress Code type map), computed on 5×5.

        With zero padding, two stacked 3×3 convs of a constant map only vary within 2 px of
        the border: rows/cols {0, 1, interior, −2, −1} take 5 distinct values. Computing on a
        5×5 canvas and expanding is the same arithmetic per pixel, at a fraction of the cost.
        """
        a = self.mlp_shared(value.expand(-1, -1, 5, 5))
        g, b = self.mlp_gamma(a), self.mlp_beta(a)
        rows = _border_index(h, x_device=value.device)
        cols = _border_index(w, x_device=value.device)
        return tuple(t.index_select(2, rows).index_select(3, cols).contiguous(memory_format=fmt)  # type: ignore[return-value]
                     for t in (g, b))


class ResBlockSPADE(nn.Module):
    """x + conv_1(LReLU(SPADE_1(conv_0(LReLU(SPADE_0(x)))))), biased convs (DressCode encoder)."""

    takes_segmap = True

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        # registration order = official key order: norm_0, norm_1, conv_0, conv_1
        self.norm_0 = SPADE(channels, hidden)
        self.norm_1 = SPADE(channels, hidden)
        self.conv_0 = conv3x3(channels, channels)
        self.conv_1 = conv3x3(channels, channels)

    def forward(self, x: Tensor, segmap: Tensor) -> Tensor:
        h = self.conv_0(F.leaky_relu(self.norm_0(x, segmap), LRELU_SLOPE))
        h = self.conv_1(F.leaky_relu(self.norm_1(h, segmap), LRELU_SLOPE))
        return x + h


class SegmapSequential(nn.Sequential):
    """``nn.Sequential`` that hands the type map to the children that take one (SPADE)."""

    def forward(self, x: Tensor, segmap: Optional[Tensor] = None) -> Tensor:  # type: ignore[override]
        for m in self:
            x = m(x, segmap) if getattr(m, "takes_segmap", False) else m(x)
        return x


class FeatureEncoder(nn.Module):
    """Five stages DownSample → 2×ResBlock (or ResBlockSPADE), returning all stage outputs."""

    def __init__(self, in_channels: int, width: float = 1.0, spade: bool = False) -> None:
        super().__init__()
        chans = [scaled(c, width) for c in ENCODER_CHANNELS]
        hidden = scaled(SPADE_HIDDEN, width)
        self.encoders = nn.ModuleList()
        prev = in_channels
        for c in chans:
            res = (lambda: ResBlockSPADE(c, hidden)) if spade else (lambda: ResBlock(c))
            self.encoders.append(SegmapSequential(DownSample(prev, c), res(), res()))
            prev = c

    def forward(self, x: Tensor, segmap: Optional[Tensor] = None) -> list[Tensor]:
        feats = []
        for stage in self.encoders:
            x = stage(x, segmap)
            feats.append(x)
        return feats


class RefinePyramid(nn.Module):
    """FPN: ``adaptive[j]``/``smooth[j]`` with j = 0 the deepest feature; returns fine → coarse."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        chans = [scaled(c, width) for c in ENCODER_CHANNELS]
        fpn = scaled(FPN_CHANNELS, width)
        self.adaptive = nn.ModuleList(nn.Conv2d(c, fpn, 1) for c in reversed(chans))
        self.smooth = nn.ModuleList(conv3x3(fpn, fpn) for _ in chans)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        out: list[Tensor] = []
        prev: Optional[Tensor] = None
        for j, x in enumerate(reversed(feats)):
            f = self.adaptive[j](x)
            if prev is not None:
                f = f + F.interpolate(prev, scale_factor=2, mode="nearest")
            prev = self.smooth[j](f)
            out.append(prev)
        return out[::-1]


def head(cin: int, cout: int, width: float, spade: bool, tanh: bool = False) -> SegmapSequential:
    """Conv stack cin→128→64→32→cout with LReLU (VITON-HD) or Conv,SPADE,LReLU triples (DressCode).

    Indices: convs at 0/2/4/6 (+Tanh at 7) or 0/3/6/9 with SPADE at 1/4/7 (+Tanh at 10). At small
    ``width`` the hidden channels stay at least :data:`HEAD_MIN_HIDDEN` wide.
    """
    hid = [max(HEAD_MIN_HIDDEN, scaled(c, width)) for c in HEAD_HIDDEN]
    sh = scaled(SPADE_HIDDEN, width)
    layers: list[nn.Module] = []
    prev = cin
    for c in hid:
        layers.append(conv3x3(prev, c))
        if spade:
            layers.append(SPADE(c, sh))
        layers.append(nn.LeakyReLU(LRELU_SLOPE))
        prev = c
    layers.append(conv3x3(prev, cout))
    if tanh:
        layers.append(nn.Tanh())
    return SegmapSequential(*layers)


class PartFusion(nn.Sequential):
    """1×1 conv 3C→C (index 0) then ResBlock(C) (index 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.Conv2d(3 * channels, channels, 1), ResBlock(channels))
