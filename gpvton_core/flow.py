"""Flow-field helpers: offsets → sampling grids, composition, warping (GPVTON.md §3.5, §10.1–2).

A *flow* is a B×2×h×w normalised sampling grid (channel 0 = x, 1 = y, ±1 = image edges),
consumed by ``grid_sample(..., align_corners=False)``. Offsets are normalised with the
align_corners=True formula ``(x + Δ)/((w−1)/2) − 1``: the mismatch is part of the trained
model (a zero offset is a slight zoom-out, not the identity) and is reproduced on purpose.

Wide feature maps (C = 256) are sampled in inference by :func:`sample_rows` and
:func:`sample_rows_up2`. On CPUs they compute the bilinear, border-padded sampling as one
``embedding_bag`` over channels-last rows (each output pixel = a weighted sum of 4, or 9,
contiguous C-vectors): each garment row is read in place for every part and every pair that
uses it (no repeated copies), the output is channels-last, and the last level's ×2 bilinear
upsampling and part-mask weighting are folded into the same gather (measured ≈10× faster than
``grid_sample`` on NCHW copies). On GPUs, where ``grid_sample`` is fast and CUDA's
``embedding_bag`` is not (it took 40 % of the decoder on an H200), they use ``grid_sample``.
Sampling weights are computed in the flow's dtype (float32 or float64).
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


# ---- gathered sampling of wide feature maps (inference) ------------------------------------------

#: device types on which wide maps are sampled by gathering (elsewhere: ``grid_sample``)
GATHER_DEVICES = {"cpu"}
#: taps per gather call of :func:`sample_rows_up2` (int64 index + weight ≈ 12 bytes each, plus temporaries):
#: one pair at 512×384 on CPU, where memory is shared; several on GPUs, where launches cost more
TAP_BUDGET = {"cpu": 1 << 23, "cuda": 1 << 26}

def _unnormalise(g: Tensor, size: int) -> Tensor:
    """grid_sample's source coordinate (align_corners=False), clipped for border padding."""
    return ((g + 1) * (size / 2) - 0.5).clamp(0, size - 1)


def _taps2(x: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Bilinear taps along one axis: (indices …×2, weights …×2) of clipped coordinates ``x``."""
    x0 = x.floor()
    w1 = x - x0
    i0 = x0.long()
    return torch.stack((i0, (i0 + 1).clamp(max=size - 1)), -1), torch.stack((1 - w1, w1), -1)


def _taps_up2(x: Tensor, size_lo: int) -> tuple[Tensor, Tensor]:
    """Taps on the half-resolution axis of bilinear ×2 upsampling followed by bilinear sampling.

    ``x``: clipped full-resolution coordinates. Each of the 2 full-resolution corners reads 2
    half-resolution pixels (``interpolate(scale_factor=2, mode="bilinear")``: source
    ``max(0, X/2 − 1/4)``, upper neighbour clamped to the edge); together they span 3 pixels.
    """
    x0 = x.floor()
    a = x - x0
    w = x.new_zeros(*x.shape, 3)
    base: Tensor = x0.long()  # replaced by the first corner's lower source index
    for n, (xc, wc) in enumerate(((x0, 1 - a), (x0 + 1, a))):
        src = (xc * 0.5 - 0.25).clamp(min=0)
        s0 = src.floor()
        lam = src - s0
        i0 = s0.long()
        if n == 0:
            base = i0
        i1 = (i0 + 1).clamp(max=size_lo - 1)
        w.scatter_add_(-1, (i0 - base).unsqueeze(-1), (wc * (1 - lam)).unsqueeze(-1))
        w.scatter_add_(-1, (i1 - base).unsqueeze(-1), (wc * lam).unsqueeze(-1))
    idx = (base.unsqueeze(-1) + torch.arange(3, device=x.device)).clamp(max=size_lo - 1)
    return idx, w


def _rows_view(table: Tensor) -> Tensor:
    """R×C×h×w → (R·h·w)×C, a view for channels-last input."""
    t = table.permute(0, 2, 3, 1)
    if not t.is_contiguous():
        t = t.contiguous()
    return t.reshape(-1, table.shape[1])


def sample_rows(table: Tensor, rows: Tensor, flow: Tensor) -> Tensor:
    """``grid_sample(table[rows], flow, bilinear, border, align_corners=False)`` as one gather.

    table: R×C×h×w features (channels-last avoids a copy); rows: N long, the table row each
    flow reads; flow: N×2×h'×w' sampling grid. Returns N×C×h'×w', channels-last, in table's dtype.
    """
    if table.device.type not in GATHER_DEVICES:
        x = table.index_select(0, rows)
        y = F.grid_sample(x, flow.permute(0, 2, 3, 1).to(x.dtype), mode="bilinear", padding_mode="border",
                          align_corners=False)
        return y.contiguous(memory_format=torch.channels_last)
    r, c, h, w = table.shape
    n, _, ho, wo = flow.shape
    ix, wx = _taps2(_unnormalise(flow[:, 0], w), w)  # n×ho×wo×2
    iy, wy = _taps2(_unnormalise(flow[:, 1], h), h)
    base = (rows.view(n, 1, 1, 1) * h + iy) * w  # n×ho×wo×2 (y taps)
    idx = (base.unsqueeze(-1) + ix.unsqueeze(-2)).view(-1, 4)
    wts = (wy.unsqueeze(-1) * wx.unsqueeze(-2)).view(-1, 4).to(table.dtype)
    out = F.embedding_bag(idx, _rows_view(table), per_sample_weights=wts, mode="sum")
    return out.view(n, ho, wo, c).permute(0, 3, 1, 2)


def sample_rows_up2(table: Tensor, rows: Tensor, flow: Tensor, scale: Tensor) -> Tensor:
    """Σ_k scale_k · grid_sample(up2(part k of table[rows]), flow_k, bilinear, border) as one gather per pair.

    table: R×(K·C)×h×w, channel block k = part k (channels-last: one pixel's K blocks are
    consecutive rows of the gather); rows: B long; flow: K·B×2×2h×2w, part-major ([part 0 of
    every pair; part 1 …]); scale: K·B×1×2h×2w, the per-pixel weight of each part's sample.
    Returns B×C×2h×2w channels-last. With ``table`` = the per-part slices of the last level's
    1×1 fusion conv applied to the garment features, this equals the official up2 → warp →
    × mask → concat → 1×1 conv (without bias): all of them are linear per pixel.
    """
    r, kc, h, w = table.shape
    b = rows.shape[0]
    k = flow.shape[0] // b
    c = kc // k
    ho, wo = flow.shape[-2:]
    if table.device.type not in GATHER_DEVICES:
        acc = None
        for part in range(k):
            x = up2(table[:, part * c:(part + 1) * c].index_select(0, rows))
            y = F.grid_sample(x, flow[part * b:(part + 1) * b].permute(0, 2, 3, 1).to(x.dtype), mode="bilinear",
                              padding_mode="border", align_corners=False)
            y = y * scale[part * b:(part + 1) * b].to(y.dtype)
            acc = y if acc is None else (acc + y if torch.is_grad_enabled() else acc.add_(y))
        assert acc is not None
        return acc.contiguous(memory_format=torch.channels_last)
    rows_ = _rows_view(table).view(-1, c)  # ((r·h + y)·w + x)·k + part
    out = torch.empty(b, ho, wo, c, dtype=table.dtype, device=table.device)
    fl = flow.view(k, b, 2, ho, wo)
    sc = scale.view(k, b, ho, wo)
    part = torch.arange(k, device=table.device).view(k, 1, 1, 1, 1, 1)
    budget = TAP_BUDGET.get(table.device.type, TAP_BUDGET["cpu"])
    step = max(1, budget // (ho * wo * 9 * k))  # pairs per gather: bounds the index tensors
    for j in range(0, b, step):
        js = slice(j, j + step)
        n = fl[:, js].shape[1]
        ix, wx = _taps_up2(_unnormalise(fl[:, js, 0], wo), w)  # k×n×ho×wo×3
        iy, wy = _taps_up2(_unnormalise(fl[:, js, 1], ho), h)
        pix = (rows[js].view(1, n, 1, 1, 1) * h + iy).unsqueeze(-1) * w + ix.unsqueeze(-2)  # k×n×ho×wo×3×3
        idx = (pix * k + part).permute(1, 2, 3, 0, 4, 5).reshape(-1, 9 * k)
        wts = (wy.unsqueeze(-1) * wx.unsqueeze(-2) * sc[:, js].unsqueeze(-1).unsqueeze(-1))
        wts = wts.permute(1, 2, 3, 0, 4, 5).reshape(-1, 9 * k).to(table.dtype)
        out[js] = F.embedding_bag(idx, rows_, per_sample_weights=wts, mode="sum").view(n, ho, wo, c)
    return out.permute(0, 3, 1, 2)
