"""Flow-field helpers: offsets → sampling grids, composition, warping (GPVTON.md §3.5, §10.1–2).

A *flow* is a B×2×h×w normalised sampling grid (channel 0 = x, 1 = y, ±1 = image edges),
consumed by ``grid_sample(..., align_corners=False)``. Offsets are normalised with the
align_corners=True formula ``(x + Δ)/((w−1)/2) − 1``: the mismatch is part of the trained
model (a zero offset is a slight zoom-out, not the identity) and is reproduced on purpose.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def offset_to_grid(delta: Tensor) -> Tensor:
    """Pixel offsets B×2×h×w → normalised sampling grid B×2×h×w (official ``apply_offset``)."""
    h, w = delta.shape[-2:]
    xs = torch.arange(w, device=delta.device, dtype=delta.dtype).view(1, 1, w)
    ys = torch.arange(h, device=delta.device, dtype=delta.dtype).view(1, h, 1)
    gx = (xs + delta[:, 0]) / ((max(w, 2) - 1.0) / 2.0) - 1.0
    gy = (ys + delta[:, 1]) / ((max(h, 2) - 1.0) / 2.0) - 1.0
    return torch.stack((gx, gy), dim=1)


def warp(x: Tensor, flow: Tensor, mode: str = "bilinear", padding: str = "zeros") -> Tensor:
    """Sample ``x`` at ``flow`` (B×2×h×w grid); align_corners=False as everywhere in GP-VTON.

    Reduced-precision inputs on CPU are sampled in float32: torch 2.13's bf16 CPU
    ``grid_sample`` crashes (segfault) on large maps, and a float32 grid keeps sub-pixel accuracy.
    """
    grid = flow.permute(0, 2, 3, 1)
    if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16):
        y = F.grid_sample(x.float(), grid.float(), mode=mode, padding_mode=padding, align_corners=False)
        return y.to(x.dtype)
    if grid.dtype != x.dtype:
        grid = grid.to(x.dtype)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=False)


def compose(flow: Tensor, delta: Tensor) -> Tensor:
    """Resample the previous flow at the grid of the new offsets (border padding)."""
    return warp(flow, offset_to_grid(delta), padding="border")


def up2(x: Tensor) -> Tensor:
    """Bilinear ×2 (no rescaling of flow values: they are normalised coordinates)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear")


def rescale(x: Tensor, scale: float, mode: str = "bilinear") -> Tensor:
    """``interpolate(x, scale_factor=scale)``; scale 1 is skipped (it is an exact identity)."""
    if scale == 1:
        return x
    return F.interpolate(x, scale_factor=scale, mode=mode)


def second_difference_bank(dtype: torch.dtype = torch.float32) -> Tensor:
    """Fixed 4×1×3×3 filter bank: horizontal, vertical and both diagonal second differences."""
    k = torch.zeros(4, 1, 3, 3, dtype=dtype)
    k[0, 0, 1] = torch.tensor([1.0, -2.0, 1.0])
    k[1, 0, :, 1] = torch.tensor([1.0, -2.0, 1.0])
    k[2, 0, 0, 0], k[2, 0, 1, 1], k[2, 0, 2, 2] = 1.0, -2.0, 1.0
    k[3, 0, 0, 2], k[3, 0, 1, 1], k[3, 0, 2, 0] = 1.0, -2.0, 1.0
    return k


def second_differences(flow: Tensor, bank: Tensor) -> tuple[Tensor, Tensor]:
    """Valid conv of each flow channel with the bank: (Δ²x, Δ²y), each B×4×(h−2)×(w−2)."""
    bank = bank.to(flow.dtype)
    return F.conv2d(flow[:, 0:1], bank), F.conv2d(flow[:, 1:2], bank)
