"""Per-pair quality scores of a render, batched on the model's device (no reference needed).

Higher is better for every score. The IoU scores lie in [0, 1]; the SSIM scores in [−1, 1]
(1 = identical). A score is NaN (a null in the Parquet) when it is undefined for the pair (e.g.
an empty region); NaN scores never trigger a flag.

``warp_miou`` — *do the local flows agree with the global layout?*
    For each garment part k (left, middle/torso, right) the part mask warped by its own local
    flow, E_k, is compared with the region the global parsing assigns to that part,
    [argmax(seg) == class_k]; both are taken outside the warp-stage preserve region. The score
    is the mean IoU over the parts whose union is non-empty. Low values mean the flows put the
    garment where the parsing does not expect it (torn sleeves, floating parts).

``preserve_ssim`` — *did the generator keep what must not change?*
    SSIM (the definition of torchmetrics' ``structural_similarity_index_measure``: Gaussian 11×11,
    σ 1.5, reflect padding, images in [0, 1], ``return_full_image=True``; computed here with the
    Gaussian split into two 1-D passes, 5× fewer operations, equal to 1e-6) between the try-on and
    the input photo, the per-pixel
    SSIM map averaged over the three channels and over the generator-stage preserve mask (face,
    hair, lower body, hands, …). Low values mean identity or untouched regions drifted.

``ssim`` (paired pairs only: the garment is the one the person wears)
    SSIM between the try-on and the photo over the whole image (same definition).

``parse_miou`` (paired pairs only)
    Mean IoU between the assembled label map (warped garment parts + arms/neck classes) and
    the person's own parsing mapped to the same classes (GPVTON.md §8.7), over the classes
    present in either map (background excluded).

Flags: each score is compared with its ``warn`` and ``fail`` thresholds (a score below
``fail`` fails, below ``warn`` warns); the pair's flag is the worst of its scores (``ok``
when all pass) and ``reason`` lists the offending scores, e.g. ``warp_miou=0.21<0.25``.
Pairs that produced no image are flagged ``error`` by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor
import torch.nn.functional as F

SCORE_NAMES = ("warp_miou", "preserve_ssim", "ssim", "parse_miou")
# A pair's flag, best to worst: judge() gives the first three, a pair without an image is "error".
# infra.schema.FLAGS (the score tables' values) must equal this; a test checks it.
FLAGS = ("ok", "warn", "fail", "error")


@dataclass(frozen=True)
class Threshold:
    warn: float
    fail: float


DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    "warp_miou": Threshold(warn=0.5, fail=0.25),
    "preserve_ssim": Threshold(warn=0.8, fail=0.6),
    "ssim": Threshold(warn=0.7, fail=0.5),
    "parse_miou": Threshold(warn=0.5, fail=0.3),
}


def _nan(n: int, device) -> Tensor:
    return torch.full((n,), float("nan"), device=device)


def warp_miou(part_warped: Tensor, seg: Tensor, classes: Tensor, preserve: Tensor) -> Tensor:
    """B scores. part_warped B×3×H×W (E_k), seg B×H×W argmax, classes B×3, preserve B×1×H×W."""
    keep = preserve[:, 0] < 0.5
    ious = []
    for k in range(3):
        a = (part_warped[:, k] > 0.5) & keep
        b = (seg == classes[:, k].view(-1, 1, 1)) & keep
        inter = (a & b).flatten(1).sum(1).float()
        union = (a | b).flatten(1).sum(1).float()
        ious.append(torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(union, float("nan"))))
    return torch.nanmean(torch.stack(ious, 1), 1)


def _to01(x: Tensor) -> Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


SSIM_SIGMA = 1.5
SSIM_RADIUS = 5          # torchmetrics: kernel int(3.5σ + 0.5)·2 + 1 = 11 taps
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _gauss_taps(dtype: torch.dtype, device) -> Tensor:
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim_map(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(per-image SSIM B, per-pixel SSIM map B×H×W averaged over channels); inputs in [−1,1].

    The five local moments (means, second moments, cross moment) are one grouped convolution
    with the 11-tap Gaussian, applied along rows and then columns on the reflect-padded images.
    """
    x, y = _to01(pred), _to01(target)
    b, c = x.shape[:2]
    r = SSIM_RADIUS
    stack = torch.cat((x, y, x * x, y * y, x * y), 1)                    # B × 5C × H × W
    stack = F.pad(stack, (r, r, r, r), mode="reflect")
    g = _gauss_taps(stack.dtype, stack.device)
    n = stack.shape[1]
    m = F.conv2d(stack, g.view(1, 1, 1, -1).expand(n, 1, 1, -1), groups=n)
    m = F.conv2d(m, g.view(1, 1, -1, 1).expand(n, 1, -1, 1), groups=n)
    mx, my, xx, yy, xy = m.split(c, 1)
    mx2, my2, mxy = mx * mx, my * my, mx * my
    vx = (xx - mx2).clamp(min=0)
    vy = (yy - my2).clamp(min=0)
    cxy = xy - mxy
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2                                  # data range 1
    full = ((2 * mxy + c1) * (2 * cxy + c2)) / ((mx2 + my2 + c1) * (vx + vy + c2))
    return full.reshape(b, -1).mean(-1), full.mean(1)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of B×H×W ``values`` over B×1×H×W (or B×H×W) ``mask``; NaN where the mask is empty."""
    m = (mask.reshape(values.shape) > 0.5).float()
    n = m.flatten(1).sum(1)
    total = (values * m).flatten(1).sum(1)
    return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(n, float("nan")))


def parse_miou(label: Tensor, target: Tensor, num_classes: int = 10) -> Tensor:
    """B mean IoUs over the classes 1..num_classes−1 present in either map."""
    ious = []
    for c in range(1, num_classes):
        a, b = label == c, target == c
        inter = (a & b).flatten(1).sum(1).float()
        union = (a | b).flatten(1).sum(1).float()
        ious.append(torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(union, float("nan"))))
    return torch.nanmean(torch.stack(ious, 1), 1)


@torch.no_grad()
def compute_scores(*, tryon: Tensor, photo: Tensor, preserve_gen: Tensor, part_warped: Tensor, seg: Tensor,
                   classes: Tensor, preserve_warp: Tensor, label: Tensor, targets: Tensor,
                   paired: Tensor, to_cpu: bool = True) -> dict[str, Tensor]:
    """All four scores for a batch of B pairs (float32 tensors of length B, NaN = undefined).

    ``paired`` (B bool) selects the rows for which ``ssim`` and ``parse_miou`` are defined.
    ``to_cpu=False`` leaves them on the device (a caller that copies asynchronously).
    """
    b = tryon.shape[0]
    dev = tryon.device
    out = {"warp_miou": warp_miou(part_warped, seg, classes, preserve_warp)}
    s, smap = ssim_map(tryon, photo)
    out["preserve_ssim"] = masked_mean(smap, preserve_gen)
    paired = paired.to(dev).bool()
    out["ssim"] = torch.where(paired, s.float(), _nan(b, dev))
    out["parse_miou"] = torch.where(paired, parse_miou(label, targets), _nan(b, dev))
    return {k: v.float().cpu() if to_cpu else v.float() for k, v in out.items()}


@dataclass
class Verdict:
    flag: str
    reason: Optional[str] = None
    details: list[str] = field(default_factory=list)


def judge(scores: dict[str, float], thresholds: Optional[dict[str, Threshold]] = None) -> Verdict:
    """ok / warn / fail from one pair's scores (NaN and missing scores are skipped)."""
    th = DEFAULT_THRESHOLDS if thresholds is None else thresholds
    fails, warns = [], []
    for name in SCORE_NAMES:
        v = scores.get(name)
        t = th.get(name)
        if v is None or t is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if v < t.fail:
            fails.append(f"{name}={v:.3f}<{t.fail:g}")
        elif v < t.warn:
            warns.append(f"{name}={v:.3f}<{t.warn:g}")
    if fails:
        return Verdict("fail", "; ".join(fails + warns), fails + warns)
    if warns:
        return Verdict("warn", "; ".join(warns), warns)
    return Verdict("ok")


def judge_batch(scores: dict[str, Tensor], thresholds: Optional[dict[str, Threshold]] = None) -> list[Verdict]:
    n = len(next(iter(scores.values())))
    return [judge({k: float(v[i]) for k, v in scores.items()}, thresholds) for i in range(n)]


def class_table(classes: Sequence[tuple[int, int, int]], device=None) -> Tensor:
    return torch.as_tensor(classes, device=device)
