"""Warping losses (GPVTON.md §9.2) and generator losses (§9.3).

Per level ``num`` = 0..4 (coarse → fine) with weight w = num + 1:
part L1 (w), part VGG (0.2·w), part mask L1 (2·w), second-order smoothness (6·w; middle part ×40,
summed over parts, /3), full-garment L1 (w), full-mask L1 (2·w), attention L1 (0.5·w) and the
parsing cross-entropy with class weights (0.5·w); once: first-order TV over the 10 Δ maps
(0.1 VITON-HD / 0.01 Dress Code) and the LSGAN term on the parsing (×0.1).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batch import level_resize
from .dgt import at_level

CE_WEIGHTS = {"vitonhd": (1, 40, 5, 40, 30, 30, 40),
              "dresscode": (1, 100, 15, 100, 50, 100, 50, 70, 70, 150)}
FIRST_ORDER_WEIGHT = {"vitonhd": 0.1, "dresscode": 0.01}
MIDDLE_SMOOTH_WEIGHT = 40.0
GAN_WEIGHT = 0.1


# ---- building blocks --------------------------------------------------------------------------
def lsgan(pred: Tensor, real: bool) -> Tensor:
    """Least-squares GAN loss (MSE to 1 for real, 0 for fake)."""
    return F.mse_loss(pred, torch.ones_like(pred) if real else torch.zeros_like(pred))


def second_order(dx: Tensor, dy: Tensor, pmask: Tensor, eps: float = 1e-6, power: float = 0.45) -> Tensor:
    """Σ_parts w_k · [mean((dx²+eps)^p · pmask_k) + mean((dy²+eps)^p · pmask_k)] / 3, middle ×40.

    dx, dy: 3B×4×h×w second differences of the flow (fixed filter bank); pmask 3B×1×1×1.
    """
    b3 = dx.shape[0]
    b = b3 // 3
    total = dx.new_zeros(())
    for k, wk in enumerate((1.0, MIDDLE_SMOOTH_WEIGHT, 1.0)):
        sl = slice(k * b, (k + 1) * b)
        pm = pmask[sl]
        total = total + wk * ((dx[sl] ** 2 + eps) ** power * pm).mean()
        total = total + wk * ((dy[sl] ** 2 + eps) ** power * pm).mean()
    return total / 3


def first_order(deltas: list[Tensor], pmask: Tensor) -> Tensor:
    """Σ over the Δ maps of mean|∂x Δ| + mean|∂y Δ|, each × pmask."""
    total = deltas[0].new_zeros(())
    for d in deltas:
        d = d * pmask
        total = total + (d[..., :, 1:] - d[..., :, :-1]).abs().mean() + (d[..., 1:, :] - d[..., :-1, :]).abs().mean()
    return total


def part_presence(garment_parts: Tensor) -> Tensor:
    """pmask: 3B×1×1×1, 1 where the flat garment has that part at all ([left; middle; right])."""
    p = (garment_parts.flatten(2).sum(-1) > 0).float()       # B×3
    return p.t().reshape(-1, 1, 1, 1)


def stack3(x: Tensor) -> Tensor:
    """B×3×C×H×W → 3B×C×H×W in [left; middle; right] order."""
    return torch.cat([x[:, k] for k in range(3)], 0)


# ---- warping ---------------------------------------------------------------------------------
def warp_losses(out: Any, batch: dict[str, Any], variant: str, *, t_parts: Optional[Tensor] = None,
                t_full: Optional[Tensor] = None, vgg: Optional[nn.Module] = None,
                disc: Optional[nn.Module] = None) -> dict[str, Tensor]:
    """All generator-side warp terms; returns a dict of named terms plus ``"total"``.

    ``out`` is a training-mode :class:`WarpOutputs`; ``t_parts`` / ``t_full`` are the DGT truncation
    masks at full size (None = no truncation); ``vgg`` a :class:`VGGLoss` (None = no perceptual
    term); ``disc`` the parsing discriminator (None = no GAN term).
    """
    img = batch["image"]
    pparts = stack3(batch["person_parts"])                       # 3B×1×H×W
    ppimg = stack3(batch["person_parts"] * img[:, None])          # 3B×3×H×W
    pmask = part_presence(batch["garment_parts"])
    ce_w = torch.tensor(CE_WEIGHTS[variant], dtype=img.dtype, device=img.device)
    terms = {k: img.new_zeros(()) for k in ("l1", "vgg", "mask", "smooth2", "full_l1", "full_mask",
                                             "attention", "parsing", "smooth1", "gan")}
    for num in range(len(out.part_images)):
        w = float(num + 1)
        x, xe = out.part_images[num], out.part_masks[num]
        size = tuple(x.shape[-2:])
        xf, xfe = out.full_images[num], out.full_masks[num]
        if t_parts is not None:
            keep = 1 - at_level(t_parts, size)
            x, xe = x * keep, xe * keep
        if t_full is not None:
            keepf = 1 - at_level(t_full, size)
            xf, xfe = xf * keepf, xfe * keepf
        tgt_img = level_resize(ppimg, size)
        tgt_m = level_resize(pparts, size)
        terms["l1"] = terms["l1"] + w * F.l1_loss(x * pmask, tgt_img * pmask)
        if vgg is not None:
            terms["vgg"] = terms["vgg"] + 0.2 * w * vgg(x * pmask, tgt_img * pmask)
        terms["mask"] = terms["mask"] + 2 * w * F.l1_loss(xe * pmask, tgt_m * pmask)
        terms["smooth2"] = terms["smooth2"] + 6 * w * second_order(out.delta_x[num], out.delta_y[num], pmask)
        terms["full_l1"] = terms["full_l1"] + w * F.l1_loss(xf, level_resize(batch["person_garment"], size))
        terms["full_mask"] = terms["full_mask"] + 2 * w * F.l1_loss(xfe, level_resize(batch["person_garment_mask"], size))
        att = out.attention[num]                                   # B×3×h×w
        att3 = torch.cat([att[:, k:k + 1] for k in range(3)], 0)
        terms["attention"] = terms["attention"] + 0.5 * w * F.l1_loss(att3, level_resize(pparts, tuple(att.shape[-2:])))
        seg = out.segs[num]
        gt = F.interpolate(batch["seg_gt"][:, None].float(), size=tuple(seg.shape[-2:]), mode="nearest")[:, 0].long()
        terms["parsing"] = terms["parsing"] + 0.5 * w * F.cross_entropy(seg, gt, weight=ce_w)
    terms["smooth1"] = FIRST_ORDER_WEIGHT[variant] * first_order(out.deltas, pmask)
    if disc is not None:
        terms["gan"] = GAN_WEIGHT * lsgan(disc(parsing_disc_input(batch, out.segs[-1])), True)
    terms["total"] = sum(v for v in terms.values())
    return terms


def parsing_disc_input(batch: dict[str, Any], seg: Tensor) -> Tensor:
    """cat[cond (51), garment label (1), parsing (C)]: 59 channels VITON-HD, 62 Dress Code."""
    return torch.cat((batch["cond"], batch["garment_input"][:, 3:4], seg), 1)


def parsing_real(batch: dict[str, Any], num_classes: int) -> Tensor:
    onehot = F.one_hot(batch["seg_gt"].long(), num_classes).permute(0, 3, 1, 2).to(batch["cond"].dtype)
    return onehot * 2 - 1


def warp_disc_loss(disc: nn.Module, batch: dict[str, Any], seg_fake: Tensor, num_classes: int) -> Tensor:
    """D loss = 0.5·(fake + real)·0.1 (LSGAN)."""
    fake = lsgan(disc(parsing_disc_input(batch, seg_fake.detach())), False)
    real = lsgan(disc(parsing_disc_input(batch, parsing_real(batch, num_classes))), True)
    return 0.5 * (fake + real) * GAN_WEIGHT


# ---- generator -------------------------------------------------------------------------------
def generator_losses(x: Tensor, rendered: Tensor, tryon: Tensor, mask: Tensor, real: Tensor, *,
                     vgg: Optional[nn.Module] = None, disc: Optional[nn.Module] = None) -> dict[str, Tensor]:
    """5·L1(tryon) + VGG(tryon) + 5·L1(rendered) + VGG(rendered) + 5·mean|1 − mask| + 0.5·LSGAN_G."""
    t = {"l1_tryon": 5 * F.l1_loss(tryon, real), "l1_rendered": 5 * F.l1_loss(rendered, real),
         "mask": 5 * (1 - mask).abs().mean()}
    z = real.new_zeros(())
    t["vgg_tryon"] = vgg(tryon, real) if vgg is not None else z
    t["vgg_rendered"] = vgg(rendered, real) if vgg is not None else z
    t["gan"] = 0.5 * lsgan(disc(torch.cat((x, rendered), 1)), True) if disc is not None else z
    t["total"] = sum(v for v in t.values())
    return t


def generator_disc_loss(disc: nn.Module, x: Tensor, rendered: Tensor, real: Tensor) -> Tensor:
    """D (39 channels) loss = 0.5·(fake + real)."""
    fake = lsgan(disc(torch.cat((x, rendered.detach()), 1)), False)
    r = lsgan(disc(torch.cat((x, real), 1)), True)
    return 0.5 * (fake + r)
