"""Test-time assembly between the warp and the generator (GPVTON.md §4, §5.2–5.3, §8.5).

* :func:`assemble_warp`: warp each garment part with its own flow (bilinear image, nearest
  mask, zero padding), keep the part the global parsing chose per pixel, drop the preserve
  region, add the arm / neck labels.
* :func:`quantize_uint8`: the official two-stage pipeline hands the garment over as a uint8
  PNG; reproduce that when bit parity with the official pipeline matters.
* :func:`generator_input` / :func:`compose`: the 36-channel generator input and the final
  mask composition.
* 1024×768: the 512 warp model runs on inputs halved by :func:`half_nearest` /
  :func:`half_bilinear`; :func:`upsample_flow` and :func:`upsample_labels` bring its outputs
  back, and assembly + generator run at full resolution.

Class conventions (person's left = image right):
VITON-HD parts (1,2,3), extras (4,5,6) = left arm, right arm, neck;
Dress Code upper/dresses parts (1,2,3), lower (4,5,6), extras (7,8,9).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import flow as fl
from .conditions.labels import CATEGORIES, VARIANTS, variant_categories
#: DressCode type map value per category (GPVTON.md §3.7)
TYPE_VALUE = {"upper": 1.0 / 3.0, "lower": 2.0 / 3.0, "dresses": 1.0}


def part_classes(variant: str, category: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(part classes, extra classes) of the parsing for a dataset variant and garment category."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown garment category {category!r}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    if category not in variant_categories(variant):
        raise ValueError(f"the VITON-HD model only takes upper garments, got {category!r}")
    if variant == "vitonhd":
        return (1, 2, 3), (4, 5, 6)
    return ((4, 5, 6) if category == "lower" else (1, 2, 3)), (7, 8, 9)


def garment_label_divisor(variant: str) -> float:
    """Part label input is label/3 (VITON-HD) or label/6 (Dress Code)."""
    return 3.0 if variant == "vitonhd" else 6.0


def garment_label(parts: Tensor, variant: str, categories: Sequence[str]) -> Tensor:
    """B×1 warp input label from B×3 part masks: Σ_k cls_k·mask_k / divisor."""
    # As the official loader: the fraction is formed in float32, then widened (an fp64 run
    # reproduces the official inputs bit for bit instead of exact float64 fractions).
    cls = class_table(variant, categories, parts.device)[0].float()
    label = (parts.float() * cls.view(-1, 3, 1, 1)).sum(1, keepdim=True)
    return (label / garment_label_divisor(variant)).to(parts.dtype)


def type_map(categories: Sequence[str], size: tuple[int, int], dtype: torch.dtype = torch.float32,
             device: torch.device | str = "cpu") -> Tensor:
    """Constant Dress Code type map B×1×H×W (1/3 upper, 2/3 lower, 1 dresses)."""
    v = torch.tensor([TYPE_VALUE[c] for c in categories], dtype=torch.float32).to(dtype)   # official: float32
    return v.to(device).view(-1, 1, 1, 1).expand(len(categories), 1, *size).contiguous()


def class_table(variant: str, categories: Sequence[str], device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """(B×3 part classes, B×3 extra classes) as long tensors."""
    pc = [part_classes(variant, c) for c in categories]
    return (torch.tensor([p for p, _ in pc], dtype=torch.long, device=device),
            torch.tensor([e for _, e in pc], dtype=torch.long, device=device))


def seg_argmax(seg_logits: Tensor) -> Tensor:
    """B×1 class map; argmax of the logits = argmax of the softmax, first index on ties."""
    return seg_logits.argmax(1, keepdim=True)


def assemble_warp(part_images: Tensor, part_masks: Tensor, last_flow: Tensor, seg: Tensor, preserve: Tensor,
                  part_cls: Tensor, extra_cls: Tensor, return_part_masks: bool = False):
    """Warped garment B×3 and label map B×1 (float, integer-valued) from per-part flows.

    part_images 3B×3 (garment·part mask), part_masks 3B×1, last_flow 3B×2, all [left; middle;
    right]; seg B×1 argmax map; preserve B×1 (warp stage); part_cls / extra_cls B×3 long.
    The arm / neck labels are added after the preserve step and are not masked (§4).
    ``return_part_masks``: also return the warped part masks E_k as B×3×H×W (left, middle,
    right; before the parsing selection and the preserve step), the masks the scores use.
    """
    b = seg.shape[0]
    dt = part_images.dtype
    flow = last_flow.to(dt)
    warped = fl.warp(part_images, flow, mode="bilinear", padding="zeros").chunk(3)
    edges = fl.warp(part_masks.to(dt), flow, mode="nearest", padding="zeros").chunk(3)
    keep = 1 - preserve.to(dt)
    cloth = torch.zeros_like(warped[0])
    label = torch.zeros_like(edges[0])
    for k in range(3):
        c = part_cls[:, k].view(b, 1, 1, 1)
        sel = (seg == c).to(dt)
        cloth = cloth + warped[k] * sel
        label = label + edges[k] * sel * c.to(dt)
    cloth = cloth * keep
    label = label * keep
    for k in range(3):
        e = extra_cls[:, k].view(b, 1, 1, 1)
        label = label + (seg == e).to(dt) * e.to(dt)
    if return_part_masks:
        return cloth, label, torch.cat(edges, 1)
    return cloth, label


def quantize_uint8(x: Tensor) -> Tensor:
    """Official stage hand-over: u8 = trunc((x+1)/2·255), read back as (u8/255 − 0.5)/0.5."""
    q = torch.clamp(torch.trunc((x.float() + 1) / 2 * 255), 0, 255)
    return ((q / 255 - 0.5) / 0.5).to(x.dtype)


def to_uint8(x: Tensor) -> Tensor:
    """[−1,1] image → uint8 with the official truncation (no rounding)."""
    return torch.clamp(torch.trunc((x.float() + 1) / 2 * 255), 0, 255).to(torch.uint8)


def generator_input(image: Tensor, preserve_gen: Tensor, warped_cloth: Tensor, warped_label: Tensor,
                    skin: Tensor, pose: Tensor, variant: str) -> tuple[Tensor, Tensor]:
    """(36-channel generator input, warped garment mask B×1).

    image B×3 person RGB in [−1,1]; preserve_gen B×1 generator-stage preserve mask (Dress Code:
    multiplied here by 1 − warped mask, §8.5); warped_cloth B×3; warped_label B×1 integer
    labels; skin B×3 (broadcast) or B×3×H×W, in [−1,1]; pose B×25 in {−1,+1}.
    """
    dt = warped_cloth.dtype
    lab = warped_label
    if variant == "vitonhd":
        garment_max, extras = 3, (4, 5, 6)
    elif variant == "dresscode":
        garment_max, extras = 6, (7, 8, 9)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    edge = ((lab >= 1) & (lab <= garment_max)).to(dt)
    arms = (((lab == extras[0]).float() * 1 + (lab == extras[1]).float() * 2 + (lab == extras[2]).float() * 3)
            / 3).to(dt)   # formed in float32 as the official loader does, then widened
    pres = generator_preserve(preserve_gen.to(dt), edge, variant)
    h, w = image.shape[-2:]
    if skin.dim() == 2:
        skin = skin.view(-1, 3, 1, 1).expand(-1, 3, h, w)
    x = torch.cat((image.to(dt) * pres, warped_cloth, edge, arms, skin.to(dt), pose.to(dt)), 1)
    return x, edge


def generator_preserve(preserve_gen: Tensor, warped_edge: Tensor, variant: str) -> Tensor:
    """Generator-stage preserve mask as applied: Dress Code × (1 − warped garment mask) (§8.5)."""
    return preserve_gen * (1 - warped_edge) if variant == "dresscode" else preserve_gen


def compose(raw: Tensor, warped_cloth: Tensor, warped_edge: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(try-on, rendered, composition mask): mask = sigmoid(raw[3])·edge; no photo paste-back."""
    rendered = torch.tanh(raw[:, 0:3])
    mask = torch.sigmoid(raw[:, 3:4]) * warped_edge
    return warped_cloth * mask + rendered * (1 - mask), rendered, mask


# ---- 1024×768 path -------------------------------------------------------------------------

def half_res_warp(height: int) -> bool:
    """Whether the warp runs at half resolution: from 1024 rows up (the 512 warp model, §4)."""
    return height >= 1024


def warp_resolution(x: Tensor, half: bool, bilinear: bool) -> Tensor:
    """A warp input at the warp's resolution: as is, or halved on the 1024 path (``bilinear`` for
    RGB images and the type map; nearest for masks, labels, one-hots and pose)."""
    if not half:
        return x
    return half_bilinear(x) if bilinear else half_nearest(x)


def full_resolution(last_flow: Tensor, seg: Tensor, half: bool) -> tuple[Tensor, Tensor]:
    """The warp's flow and parsing argmax at full resolution: upsampled on the 1024 path."""
    return (upsample_flow(last_flow), upsample_labels(seg)) if half else (last_flow, seg)


def half_nearest(x: Tensor) -> Tensor:
    """×0.5 nearest (picks even rows / columns): one-hots, pose, masks, labels."""
    return F.interpolate(x, scale_factor=0.5, mode="nearest")


def half_bilinear(x: Tensor) -> Tensor:
    """×0.5 bilinear without antialiasing (exact 2×2 mean): RGB images and the type map."""
    return F.interpolate(x, scale_factor=0.5, mode="bilinear")


def upsample_flow(last_flow: Tensor) -> Tensor:
    """Half-resolution flow → full resolution (bilinear ×2; normalised values unchanged)."""
    return F.interpolate(last_flow, scale_factor=2, mode="bilinear")


def upsample_labels(labels: Tensor) -> Tensor:
    """Half-resolution argmax map → full resolution (nearest ×2)."""
    return F.interpolate(labels.float(), scale_factor=2, mode="nearest").to(labels.dtype)
