"""The generator stage's forward pass (GPVTON.md §9.3): a frozen warper's test-time warp of the
batch — the same warp and assembly as ``gpvton render`` (:func:`~.paired.assembled_warp`, 1024 path
included), handed over through uint8 as the official two-stage pipeline does — then the generator
and the mask composition."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .. import assembly as asm
from ..warp import LFGPWarp
from .paired import assembled_warp


def generator_forward(net: nn.Module, warp_net: LFGPWarp, b: dict[str, Any],
                      variant: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(generator input, rendered, try-on, composition mask, real person image) of batch ``b``."""
    with torch.no_grad():
        w = assembled_warp(warp_net, b)
        cloth = asm.quantize_uint8(w["cloth"])
        # generator input; Dress Code: generator-stage preserve × (1 − warped garment mask)
        x, gmask = asm.generator_input(b["image"], b["preserve_gen"], cloth, w["label"], b["skin"], b["pose"], variant)
    raw = net(x)
    rendered = torch.tanh(raw[:, 0:3])
    m = torch.sigmoid(raw[:, 3:4]) * gmask
    if variant == "vitonhd":  # training only: × the ground-truth person garment mask (§9.3)
        m = m * b["person_garment_mask"]
    tryon = cloth * m + rendered * (1 - m)
    return x, rendered, tryon, m, b["image"]
