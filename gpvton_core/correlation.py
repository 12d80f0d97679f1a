"""7×7 cost volume between warped garment features and person features (GPVTON.md §3.4).

``out[n, 7·(dy+3)+(dx+3), y, x] = mean_c F[n,c,y,x] · Gp[n mod B,c,y+3+dy,x+3+dx]`` with ``Gp``
= G zero-padded by 3. The official layer is a CUDA kernel; this is the same formula in tensor ops.

The second input may have fewer rows than the first: row n of ``first`` is compared with row
``n mod B`` of ``second``. The decoder stacks its three garment parts part-major
([left; middle; right], each B rows) against the B person rows, so the person band is padded
and cut once for all parts (and once for a whole batch of pairs that share one person).

Implementation, channels-last throughout: one pass per vertical shift dy (7 in total). Each
image row is cut into blocks of ``bw`` pixels; a batched matmul multiplies the garment vectors
of one block, for every part (k·bw × C), with the person vectors of the same columns widened by
3 on each side (C × (bw+6)); the 7 diagonals of that product are the 7 horizontal shifts. BLAS
does the channel sums with float32 accumulation, the person band is copied ≈1.4× per dy instead
of once per displacement. The result is float32 for reduced-precision inputs (the normalisation
by C happens in float32) and is returned channels-last (N×49×h×w, stride 1 on the 49).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_DISPLACEMENT = 3
KERNEL = 2 * MAX_DISPLACEMENT + 1  # 7
NUM_DISPLACEMENTS = KERNEL * KERNEL  # 49


def _block_width(w: int, block: int) -> int:
    """Largest divisor of ``w`` not above ``block`` (no padded columns), or ``block`` if that is tiny."""
    for d in range(min(block, w), 0, -1):
        if w % d == 0:
            return d if d >= min(4, w) else min(block, w)
    return 1


def _nhwc(x: Tensor) -> Tensor:
    y = x.permute(0, 2, 3, 1)
    return y if y.is_contiguous() else y.contiguous()


def correlation(first: Tensor, second: Tensor, block: int = 16) -> Tensor:
    """Cost volume N×49×h×w of ``first`` (N = k·B garment rows) against zero-padded ``second`` (B rows).

    Divides by the actual channel count C, so it stays a channel mean at any network width.
    No activation is applied (the decoder applies LeakyReLU(0.1)).
    """
    n, c, h, w = first.shape
    b = second.shape[0]
    if second.shape[1:] != first.shape[1:] or n % b:
        raise ValueError(f"correlation inputs do not match: {tuple(first.shape)} vs {tuple(second.shape)}")
    k = n // b
    d = MAX_DISPLACEMENT
    out_dtype = torch.float32 if first.dtype in (torch.bfloat16, torch.float16) else first.dtype
    if second.dtype != first.dtype:
        second = second.to(first.dtype)
    bw = _block_width(w, block)
    nb = -(-w // bw)  # blocks per row
    wp = nb * bw  # width rounded up to whole blocks (extra columns are zeros, cropped below)
    f = _nhwc(first)  # n×h×w×c
    if wp != w:
        f = F.pad(f, (0, 0, 0, wp - w))
    # rows of one matmul: the k parts × bw pixels of one block that share a person window
    f = f.view(k, b, h, nb, bw, c).permute(1, 2, 3, 0, 4, 5).reshape(b * h * nb, k * bw, c)
    gp = F.pad(_nhwc(second), (0, 0, d, d + wp - w, d, d))  # b×(h+6)×(wp+6)×c
    out = torch.empty(k, b, h, nb, bw, KERNEL, KERNEL, dtype=out_dtype, device=first.device)
    span = bw + 2 * d
    for i in range(KERNEL):  # dy = i − 3
        # overlapping windows of bw+6 columns, one per block of bw output pixels
        win = gp[:, i:i + h].unfold(2, span, bw)  # b×h×nb×c×span (view)
        prod = torch.bmm(f, win.reshape(b * h * nb, c, span))  # (b·h·nb)×(k·bw)×span
        # the 7 diagonals prod[:, j, j+dx] are the 7 horizontal displacements of pixel j
        band = prod.as_strided((b * h * nb, k, bw, KERNEL), (k * bw * span, bw * span, span + 1, 1))
        out[:, :, :, :, :, i] = band.view(b, h, nb, k, bw, KERNEL).permute(3, 0, 1, 2, 4, 5)
    res = out.view(n, h, wp, NUM_DISPLACEMENTS)
    if wp != w:
        res = res[:, :, :w].contiguous()
    res.div_(c)
    return res.permute(0, 3, 1, 2)


def correlation_reference(first: Tensor, second: Tensor) -> Tensor:
    """Literal 49-shift implementation of the spec formula (for tests)."""
    n, c, h, w = first.shape
    second = second.repeat(n // second.shape[0], 1, 1, 1)
    d = MAX_DISPLACEMENT
    gp = F.pad(second, (d, d, d, d))
    outs = []
    for k in range(NUM_DISPLACEMENTS):
        dy, dx = k // KERNEL - d, k % KERNEL - d
        outs.append((first * gp[:, :, d + dy:d + dy + h, d + dx:d + dx + w]).sum(1) / c)
    return torch.stack(outs, 1)
