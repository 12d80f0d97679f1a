"""Dynamic Gradient Truncation (GPVTON.md §9.1).

1. Per sample, the *loss* preserve region is FULL or SHORT, chosen from the person–garment ratio
   ``pc_ratio`` (r) with the dataset's thresholds; Dress Code dresses / lower use fixed lists;
   ``dynamic=False`` (and test runs) always use FULL; a missing r counts as "tucked in" (FULL).
2. ``pm1 = region ∪ palm`` and ``pm2 = region ∪ arms``.
3. After ``mask_epoch`` the warped predictions are multiplied by (1 − T) at every level, with
   T = [pm1 ∪ torso, pm2 ∪ left ∪ right, pm1 ∪ torso] for the parts (Dress Code adds, per part,
   [right pants leg, legs+shoes, left pants leg] as the category asks) and T = pm2 for the full
   garment. Masks are resized bilinearly to each level and binarised (> 0).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from .batch import level_resize

#: (FULL below, 50/50 below, else FULL with p=0.1) thresholds per dataset
THRESHOLDS = {"vitonhd": (0.90, 0.95), "dresscode": (0.95, 1.0)}
P_FULL_HIGH = 0.1


def choose_region(r: float | None, variant: str, category: str, rng: np.random.Generator,
                  dynamic: bool = True) -> str:
    """``"full"`` or ``"short"`` (``"fixed"`` for Dress Code dresses / lower)."""
    if variant == "dresscode" and category != "upper":
        return "fixed"
    if not dynamic or r is None or (isinstance(r, float) and math.isnan(r)):
        return "full"
    lo, hi = THRESHOLDS[variant]
    if r < lo:
        return "full"
    if r < hi:
        return "full" if rng.random() < 0.5 else "short"
    return "full" if rng.random() < P_FULL_HIGH else "short"


def loss_masks(batch: dict[str, Any], choices: Sequence[str], variant: str) -> tuple[Tensor, Tensor]:
    """pm1 = region ∪ palm, pm2 = region ∪ arms (B×1×H×W, {0,1})."""
    short = torch.tensor([c == "short" for c in choices], dtype=torch.bool).view(-1, 1, 1, 1)
    region = torch.where(short, batch["region_short"], batch["region_full"])
    palm = batch["palm"]
    if variant == "dresscode":  # lower: no palm (the arms are in the list already)
        nolower = torch.tensor([c != "lower" for c in batch["category"]], dtype=palm.dtype).view(-1, 1, 1, 1)
        palm = palm * nolower
    pm1 = torch.maximum(region, palm)
    pm2 = torch.maximum(region, batch["arms"])
    return pm1, pm2


def truncation_masks(batch: dict[str, Any], pm1: Tensor, pm2: Tensor, variant: str) -> tuple[Tensor, Tensor]:
    """T for the parts (3B×1×H×W, order [left; middle; right]) and for the full garment (B×1×H×W)."""
    pp = batch["person_parts"]                      # B×3×1×H×W
    left, torso, right = pp[:, 0], pp[:, 1], pp[:, 2]
    t_l = torch.maximum(pm1, torso)
    t_m = torch.maximum(torch.maximum(pm2, left), right)
    t_r = torch.maximum(pm1, torso)
    if variant == "dresscode":
        cats = batch["category"]
        skirt = batch["skirt_dominant"].view(-1, 1, 1, 1)
        is_dress = torch.tensor([c == "dresses" for c in cats], dtype=pm1.dtype).view(-1, 1, 1, 1)
        is_lower = torch.tensor([c == "lower" for c in cats], dtype=pm1.dtype).view(-1, 1, 1, 1)
        legs_on = torch.clamp(is_dress + is_lower * skirt, 0, 1)
        pants_on = is_lower * (1 - skirt)
        t_l = torch.maximum(t_l, batch["pants_right"] * pants_on)
        t_m = torch.maximum(t_m, batch["legs_shoes"] * legs_on)
        t_r = torch.maximum(t_r, batch["pants_left"] * pants_on)
    return torch.cat((t_l, t_m, t_r), 0), pm2


def at_level(t: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize to the level, then binarise (> 0)."""
    return (level_resize(t, size) > 0).to(t.dtype)


def active(epoch: int, mask_epoch: int) -> bool:
    """Truncation is on only when the (1-based) epoch is past ``mask_epoch``."""
    return epoch > mask_epoch
