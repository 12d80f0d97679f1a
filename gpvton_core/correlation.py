"""7×7 cost volume between warped garment features and person features (GPVTON.md §3.4).

``out[b, 7·(dy+3)+(dx+3), y, x] = mean_c F[b,c,y,x] · Gp[b,c,y+3+dy,x+3+dx]`` with ``Gp`` = G
zero-padded by 3. The official layer is a CUDA kernel; this is the same formula in tensor ops.

Implementation: one pass per vertical shift dy (7 in total). Each image row is cut into
blocks of ``block`` pixels; a batched matmul multiplies a block's garment vectors (block × C)
with the person vectors of the same columns widened by 3 on each side (C × (block+6)), and the
7 diagonals of that small product are the 7 horizontal shifts. BLAS does the channel sums
(fp32 accumulation also for bf16), the person band is copied only ≈1.4× per dy instead of
once per displacement, at the price of ≈3× the minimal multiply count. bf16 / fp16 inputs use
49 channels-last multiply-and-sum passes instead (small bf16 matmuls are slow on CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_DISPLACEMENT = 3
KERNEL = 2 * MAX_DISPLACEMENT + 1  # 7
NUM_DISPLACEMENTS = KERNEL * KERNEL  # 49


def correlation(first: Tensor, second: Tensor, block: int = 16) -> Tensor:
    """Cost volume B×49×h×w of ``first`` (garment) against zero-padded ``second`` (person).

    Divides by the actual channel count C, so it stays a channel mean at any network width.
    No activation is applied (the decoder applies LeakyReLU(0.1)).
    """
    if first.shape != second.shape:
        raise ValueError(f"correlation inputs differ in shape: {tuple(first.shape)} vs {tuple(second.shape)}")
    b, c, h, w = first.shape
    d = MAX_DISPLACEMENT
    if first.dtype in (torch.bfloat16, torch.float16):
        return _correlation_elementwise(first, second)
    bw = max(1, min(block, w))
    nb = -(-w // bw)  # blocks per row
    wp = nb * bw  # width rounded up to whole blocks (extra columns are zeros, cropped below)
    # channels-last: each pixel's channel vector is contiguous, rows of pixels are matmul rows
    f = F.pad(first, (0, wp - w)).permute(0, 2, 3, 1).reshape(b * h * nb, bw, c)
    gp = F.pad(second, (d, d + wp - w, d, d)).permute(0, 2, 3, 1).contiguous()  # b×(h+6)×(wp+6)×c
    out = first.new_empty(b, KERNEL, KERNEL, h, wp)
    span = bw + 2 * d
    for i in range(KERNEL):  # dy = i − 3
        # overlapping windows of bw+6 columns, one per block of bw output pixels
        win = gp[:, i:i + h].unfold(2, span, bw)  # b×h×nb×c×span (view)
        prod = torch.bmm(f, win.reshape(b * h * nb, c, span))  # (b·h·nb)×bw×span
        # the 7 diagonals prod[:, j, j+dx] are the 7 horizontal displacements of pixel j
        band = prod.as_strided((b * h * nb, bw, KERNEL), (bw * span, span + 1, 1))
        out[:, i] = band.reshape(b, h, wp, KERNEL).permute(0, 3, 1, 2)
    return out[..., :w].reshape(b, NUM_DISPLACEMENTS, h, w) / c


def _correlation_elementwise(first: Tensor, second: Tensor) -> Tensor:
    """49 channels-last multiply + channel-sum passes: faster than small bf16 matmuls on CPU."""
    b, c, h, w = first.shape
    d = MAX_DISPLACEMENT
    f = first.permute(0, 2, 3, 1)
    gp = F.pad(second, (d, d, d, d)).permute(0, 2, 3, 1)
    if not f.is_contiguous():
        f = f.contiguous()
    if not gp.is_contiguous():
        gp = gp.contiguous()
    out = torch.stack([(f * gp[:, dy:dy + h, dx:dx + w]).sum(-1) for dy in range(KERNEL) for dx in range(KERNEL)], 1)
    return out / c


def correlation_reference(first: Tensor, second: Tensor) -> Tensor:
    """Literal 49-shift implementation of the spec formula (for tests)."""
    b, c, h, w = first.shape
    d = MAX_DISPLACEMENT
    gp = F.pad(second, (d, d, d, d))
    outs = []
    for k in range(NUM_DISPLACEMENTS):
        dy, dx = k // KERNEL - d, k % KERNEL - d
        outs.append((first * gp[:, :, d + dy:d + dy + h, d + dx:d + dx + w]).sum(1) / c)
    return torch.stack(outs, 1)
