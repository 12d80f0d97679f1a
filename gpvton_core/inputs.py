"""Shard-row arrays → network-ready tensors for one person / one garment (GPVTON.md §3.1, §5.2, §8).

Pure: NumPy arrays in (decoded PNGs of a shard row), float32 tensors out; no files, no network.
The render actor and the training loop both build their inputs here, so the two cannot drift.

* :func:`person_inputs` — photo ``H×W×3`` uint8, 29-label parsing ``H×W``, DensePose part index
  ``H×W`` and BODY_25 keypoints ``25×3`` → :class:`PersonInputs` for one garment category and
  dataset variant (preserve masks depend on both).
* :func:`garment_inputs` — garment RGB, mask ``{0,255}`` and part map (0 bg, 1 left, 2 middle,
  3 right; shard convention) → :class:`GarmentInputs` (official label values per category).

The condition functions (pose map, DensePose one-hot, preserve masks with palm, skin colour)
are taken from :mod:`gpvton_core.conditions` when that package provides them; the minimal
versions below follow the same spec sections and are used otherwise.

The bottom of the module holds a minimal pair-inference path (test-time assembly §4, generator
input §5.2, composition §5.3) used by the render actor when :mod:`gpvton_core.inference` /
:mod:`gpvton_core.assembly` are not available.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Variant = Literal["vitonhd", "dresscode"]
CATEGORIES = ("upper", "lower", "dresses")

# --- label sets (GPVTON.md §8.5–8.7) -------------------------------------------------------------
FULL = (1, 2, 3, 4, 7, 8, 9, 10, 12, 13, 14, 17, 18, 19, 20, 23, 26, 27, 28)
DC_DRESSES_WARP = (1, 2, 3, 4, 12, 14, 23)
DC_DRESSES_GEN = DC_DRESSES_WARP + (8, 19, 20)
DC_LOWER_WARP = (1, 2, 3, 4, 5, 6, 7, 11, 12, 14, 15, 16) + tuple(range(21, 29))
DC_LOWER_GEN = DC_LOWER_WARP + (8, 19, 20)

#: person-side part masks (left, middle, right) per (variant, category)
PERSON_PARTS = {
    "upper": ((21, 24), (5, 6), (22, 25)),
    "dresses": ((21, 24), (5, 6), (22, 25)),
    "lower": ((9,), (13,), (10,)),
}
ARMS_NECK = ((15,), (16,), (11,))


def part_classes(variant: str, category: str) -> tuple[int, int, int]:
    """Parsing classes of the three garment parts (assembly, §4)."""
    if variant == "dresscode" and category == "lower":
        return (4, 5, 6)
    return (1, 2, 3)


def extra_classes(variant: str, category: str) -> tuple[int, ...]:
    """Arm/neck classes added to the label map after the preserve step (§4)."""
    return (4, 5, 6) if variant == "vitonhd" else (7, 8, 9)


def label_divisor(variant: str) -> float:
    return 3.0 if variant == "vitonhd" else 6.0


def type_value(category: str) -> float:
    """Dress Code type-map constant (§3.7)."""
    return {"upper": 1 / 3, "lower": 2 / 3, "dresses": 1.0}[category]


def pose_radius(height: int) -> int:
    """Pose square half-size: 8 at 512, 16 at 1024 (scaled for smaller test resolutions)."""
    return max(1, int(round(8 * height / 512)))


# --- conditions (minimal versions; gpvton_core.conditions takes over when present) ---------------

def _isin(labels: np.ndarray, values: Sequence[int]) -> np.ndarray:
    return np.isin(labels, np.asarray(values, dtype=labels.dtype))


def pose_map(keypoints: np.ndarray, height: int, width: int, radius: Optional[int] = None) -> Tensor:
    """25-channel pose map in {−1,+1}: a filled square per keypoint with x > 1 and y > 1 (§8.3)."""
    r = pose_radius(height) if radius is None else radius
    kp = np.asarray(keypoints, dtype=np.float32).reshape(-1, 3)
    out = torch.full((kp.shape[0], height, width), -1.0)
    for j, (x, y, _c) in enumerate(kp):
        if x > 1 and y > 1:
            x0, x1 = max(int(math.floor(x - r)), 0), min(int(math.floor(x + r)), width - 1)
            y0, y1 = max(int(math.floor(y - r)), 0), min(int(math.floor(y + r)), height - 1)
            if x0 <= x1 and y0 <= y1:
                out[j, y0:y1 + 1, x0:x1 + 1] = 1.0
    return out


def densepose_onehot(parts: np.ndarray) -> Tensor:
    """DensePose part index 0..24 → 25 channels, +1 in the pixel's part, −1 elsewhere (§8.4)."""
    idx = torch.from_numpy(np.clip(np.asarray(parts, dtype=np.int64), 0, 24))
    return F.one_hot(idx, 25).permute(2, 0, 1).float() * 2 - 1


def _dilate(mask: Tensor, k: int) -> Tensor:
    """Binary dilation with a k×k square of ones, OpenCV's default anchor (k//2)."""
    a = k // 2
    x = F.pad(mask[None, None].float(), (a, k - 1 - a, a, k - 1 - a))
    return F.max_pool2d(x, k, stride=1)[0, 0] > 0


def _segment_mask(p1: np.ndarray, p2: np.ndarray, height: int, width: int, kernel: int) -> Tensor:
    """Rectangle around p1→p2 (half-width ¼ of its length), dilated with a k×k square."""
    from PIL import Image, ImageDraw

    d = p2 - p1
    length = float(np.hypot(*d))
    n = np.array([-d[1], d[0]]) / length * (length / 4) if length > 0 else np.zeros(2)
    poly = [tuple(p1 + n), tuple(p2 + n), tuple(p2 - n), tuple(p1 - n)]
    img = Image.new("L", (width, height), 0)
    ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in poly], fill=1)
    return _dilate(torch.from_numpy(np.asarray(img) > 0), kernel)


def palm_mask(parsing: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Hands: arm label minus dilated upper/lower arm rectangles, per arm (§8.5)."""
    h, w = parsing.shape
    kp = np.asarray(keypoints, dtype=np.float32).reshape(-1, 3)
    k_up, k_low = max(1, round(50 * h / 512)), max(1, round(30 * h / 512))
    out = np.zeros((h, w), dtype=bool)
    for label, (s, e, wr) in ((15, (5, 6, 7)), (16, (2, 3, 4))):
        arm = torch.from_numpy(parsing == label)
        ones = torch.ones_like(arm)
        up = (_segment_mask(kp[s, :2], kp[e, :2], h, w, k_up)
              if kp[s, 2] > 0.1 and kp[e, 2] > 0.1 else ones)
        low = (_segment_mask(kp[e, :2], kp[wr, :2], h, w, k_low)
               if kp[e, 2] > 0.1 and kp[wr, 2] > 0.1 else ones)
        out |= (arm & ~up & ~low).numpy()
    return out


def preserve_labels(variant: str, category: str, stage: Literal["warp", "gen"]) -> tuple[tuple[int, ...], bool]:
    """(preserved parsing labels, whether the palm is added) per §8.5."""
    if variant == "vitonhd" or category == "upper":
        return FULL, True
    if category == "dresses":
        return (DC_DRESSES_WARP if stage == "warp" else DC_DRESSES_GEN), True
    return (DC_LOWER_WARP if stage == "warp" else DC_LOWER_GEN), False


def preserve_mask(parsing: np.ndarray, keypoints: np.ndarray, variant: str, category: str,
                  stage: Literal["warp", "gen"], palm: Optional[np.ndarray] = None) -> Tensor:
    """Preserve mask {0,1} H×W (the generator-stage × (1 − warped mask) is applied per pair)."""
    labels, with_palm = preserve_labels(variant, category, stage)
    m = _isin(parsing, labels)
    if with_palm:
        m = m | (palm_mask(parsing, keypoints) if palm is None else palm)
    return torch.from_numpy(m.astype(np.float32))


def skin_colour(image: np.ndarray, parsing: np.ndarray, variant: str) -> Tensor:
    """Per-channel median of the skin pixels with value > 0 in that channel, /127.5 − 1 (§8.8).

    The official code yields NaN for an empty skin region; here an empty channel gives 0 (mid
    grey) so a photo without visible skin still renders.
    """
    labels = (14, 15, 16, 11) + ((17, 18) if variant == "dresscode" else ())
    region = _isin(parsing, labels)
    out = []
    for c in range(3):
        v = image[..., c][region]
        v = v[v > 0]
        out.append(float(np.median(v)) / 127.5 - 1 if v.size else 0.0)
    return torch.tensor(out, dtype=torch.float32)


def _conditions_impl():
    """The conditions package when present (preprocess helper), else None."""
    try:
        from gpvton_core.conditions import densepose, masks, pose  # noqa: F401
        from gpvton_core import conditions
    except Exception:  # noqa: BLE001 - absent or broken: fall back to the minimal versions
        return None
    return conditions


# --- inputs -----------------------------------------------------------------------------------

@dataclass
class PersonInputs:
    """One person photo prepared for one garment category (tensors without batch axis)."""

    person_id: str
    category: str
    image: Tensor           # 3×H×W in [−1,1]
    cond: Tensor            # 51×H×W: densepose ±1 (25), pose ±1 (25), warp-stage preserve (1)
    preserve_warp: Tensor   # 1×H×W
    preserve_gen: Tensor    # 1×H×W (Dress Code: × (1 − warped mask) per pair)
    pose: Tensor            # 25×H×W ±1
    skin: Tensor            # 3 in [−1,1]
    targets: Tensor         # H×W long: person-side classes (§8.7), for the paired parse score
    densepose: Tensor       # 1×H×W long part index 0..24

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.image.shape[-2:])  # type: ignore[return-value]


@dataclass
class GarmentInputs:
    """One in-shop garment (tensors without batch axis)."""

    garment_id: str
    category: str
    garment_input: Tensor   # 4×H×W: RGB·mask, part label / divisor
    image: Tensor           # 3×H×W RGB·mask in [−1,1]
    image_unmasked: Tensor  # 3×H×W RGB in [−1,1] (background as photographed)
    mask: Tensor            # 1×H×W {0,1}
    part_masks: Tensor      # 3×1×H×W (left, middle, right)
    type_value: float       # Dress Code type-map constant (unused for VITON-HD)


def _rgb(image: np.ndarray) -> Tensor:
    return (torch.from_numpy(np.array(image[..., :3], dtype=np.uint8)).permute(2, 0, 1).float() / 255 - 0.5) / 0.5


def person_targets(parsing: np.ndarray, variant: str, category: str) -> Tensor:
    """Person-side class map (§8.7): garment parts and (except Dress Code lower) arms and neck."""
    out = np.zeros(parsing.shape, dtype=np.int64)
    for cls, labels in zip(part_classes(variant, category), PERSON_PARTS[category]):
        out[_isin(parsing, labels)] = cls
    if not (variant == "dresscode" and category == "lower"):
        for cls, labels in zip(extra_classes(variant, category), ARMS_NECK):
            out[_isin(parsing, labels)] = cls
    return torch.from_numpy(out)


def person_inputs(person_id: str, image: np.ndarray, parsing: np.ndarray, densepose: np.ndarray,
                  keypoints: np.ndarray, category: str, variant: str) -> PersonInputs:
    """Build a person's network inputs for ``category`` (raises ValueError on malformed arrays)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    h, w = parsing.shape[:2]
    if image.shape[:2] != (h, w) or densepose.shape[:2] != (h, w):
        raise ValueError(f"person {person_id}: image {image.shape[:2]}, parsing {(h, w)} and "
                         f"densepose {densepose.shape[:2]} sizes differ")
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.size != 75:
        raise ValueError(f"person {person_id}: expected 75 keypoint values, got {kp.size}")
    kp = kp.reshape(25, 3)
    parsing = np.asarray(parsing).astype(np.uint8)
    C = _conditions_impl()
    if C is not None:  # the shared condition functions (preprocess helper), same spec sections
        from gpvton_core.conditions import densepose as cdp, masks as cm, pose as cpose

        pres_w = torch.from_numpy(cm.preserve_mask(parsing, kp, variant, category, "warp"))[None]
        pres_g = torch.from_numpy(cm.preserve_mask(parsing, kp, variant, category, "gen"))[None]
        pose = torch.from_numpy(cpose.pose_map(kp, h, w))
        dp = torch.from_numpy(cdp.densepose_onehot(np.asarray(densepose).astype(np.int64)))
        skin = torch.from_numpy(cm.skin_colour(np.ascontiguousarray(image[..., :3]), parsing, variant))
        skin = torch.nan_to_num(skin, nan=0.0)  # empty skin region: mid grey instead of NaN
        targets = torch.from_numpy(cm.seg_target(parsing, variant, category))
    else:
        palm = palm_mask(parsing, kp)
        pres_w = preserve_mask(parsing, kp, variant, category, "warp", palm)[None]
        pres_g = preserve_mask(parsing, kp, variant, category, "gen", palm)[None]
        pose = pose_map(kp, h, w)
        dp = densepose_onehot(densepose)
        skin = skin_colour(image, parsing, variant)
        targets = person_targets(parsing, variant, category)
    return PersonInputs(
        person_id=person_id, category=category, image=_rgb(image),
        cond=torch.cat((dp, pose, pres_w), 0), preserve_warp=pres_w, preserve_gen=pres_g,
        pose=pose, skin=skin, targets=targets,
        densepose=torch.from_numpy(np.asarray(densepose).astype(np.int64))[None])


def garment_inputs(garment_id: str, image: np.ndarray, mask: np.ndarray, parts: np.ndarray,
                   category: str, variant: str) -> GarmentInputs:
    """Build a garment's network inputs (parts: 0 bg, 1 left, 2 middle, 3 right)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    h, w = mask.shape[:2]
    if image.shape[:2] != (h, w) or parts.shape[:2] != (h, w):
        raise ValueError(f"garment {garment_id}: image, mask and parts sizes differ")
    m = torch.from_numpy((np.asarray(mask) > 127).astype(np.float32))[None]
    unmasked = _rgb(image)
    rgb = unmasked * m
    p = torch.from_numpy(np.asarray(parts).astype(np.int64))
    part_masks = torch.stack([(p == k).float()[None] for k in (1, 2, 3)])
    offset = 3 if (variant == "dresscode" and category == "lower") else 0
    label = torch.where(p > 0, p + offset, torch.zeros_like(p)).float()[None] / label_divisor(variant)
    return GarmentInputs(garment_id=garment_id, category=category,
                         garment_input=torch.cat((rgb, label), 0), image=rgb, image_unmasked=unmasked, mask=m,
                         part_masks=part_masks, type_value=type_value(category))


def core_person_inputs(items: Sequence[PersonInputs]):
    """A batch of :class:`PersonInputs` → :class:`gpvton_core.inference.PersonInputs`."""
    from gpvton_core.inference import PersonInputs as CorePersonInputs

    st = lambda k: torch.stack([getattr(p, k) for p in items])  # noqa: E731
    return CorePersonInputs(image=st("image"), densepose=st("densepose"), pose=st("pose"),
                            preserve_warp=st("preserve_warp"), preserve_gen=st("preserve_gen"), skin=st("skin"),
                            category=[p.category for p in items])


def core_garment_inputs(items: Sequence[GarmentInputs]):
    """A batch of :class:`GarmentInputs` → :class:`gpvton_core.inference.GarmentInputs`."""
    from gpvton_core.inference import GarmentInputs as CoreGarmentInputs

    return CoreGarmentInputs(image=torch.stack([g.image_unmasked for g in items]),
                             mask=torch.stack([g.mask for g in items]),
                             parts=torch.stack([g.part_masks[:, 0] for g in items]),
                             category=[g.category for g in items])


def stack_persons(items: Sequence[PersonInputs], device=None, dtype=None) -> dict[str, Tensor]:
    keys = ("image", "cond", "preserve_warp", "preserve_gen", "pose", "skin", "targets")
    out = {k: torch.stack([getattr(p, k) for p in items]) for k in keys}
    return {k: v.to(device=device, dtype=dtype if (dtype is not None and v.is_floating_point()) else None)
            for k, v in out.items()}


def stack_garments(items: Sequence[GarmentInputs], device=None, dtype=None) -> dict[str, Tensor]:
    keys = ("garment_input", "image", "mask", "part_masks")
    out = {k: torch.stack([getattr(g, k) for g in items]) for k in keys}
    out["type_value"] = torch.tensor([g.type_value for g in items], dtype=torch.float32)
    return {k: v.to(device=device, dtype=dtype if dtype is not None else None) for k, v in out.items()}


# --- minimal pair inference (used when gpvton_core.assembly / inference are absent) -------------

@dataclass
class Assembled:
    """Test-time assembly of a batch of B pairs (§4) and the final try-on (§5.3)."""

    cloth: Tensor        # B×3 warped garment, [−1,1] (zeros outside)
    label: Tensor        # B×H×W long label map
    part_warped: Tensor  # B×3×H×W warped part masks E_k (before the parsing argmax)
    seg: Tensor          # B×H×W argmax of the global parsing
    tryon: Optional[Tensor] = None  # B×3 try-on, [−1,1]


def assemble(last_flow: Tensor, seg_logits: Tensor, garment_image: Tensor, part_masks: Tensor,
             preserve: Tensor, classes: Sequence[tuple[int, int, int]], extras: Sequence[tuple[int, ...]]) -> Assembled:
    """§4: warp each part with its own flow, pick per pixel by the parsing argmax, drop preserve.

    last_flow 3B×2×H×W ([left; middle; right]), seg_logits B×C×h×w (resized to H×W by nearest
    when smaller, the 1024 path), garment_image B×3, part_masks B×3×1×H×W, preserve B×1.
    """
    b = garment_image.shape[0]
    h, w = garment_image.shape[-2:]
    if last_flow.shape[-2:] != (h, w):
        last_flow = F.interpolate(last_flow, size=(h, w), mode="bilinear")
    S = seg_logits.argmax(1, keepdim=True)
    if S.shape[-2:] != (h, w):
        S = F.interpolate(S.float(), size=(h, w), mode="nearest").long()
    flows = last_flow.chunk(3)
    keep = 1 - preserve
    cloth = torch.zeros_like(garment_image)
    label = torch.zeros((b, 1, h, w), dtype=garment_image.dtype, device=garment_image.device)
    cls_t = torch.as_tensor(classes, device=S.device)  # B×3
    warped_masks = []
    for k in range(3):
        grid = flows[k].permute(0, 2, 3, 1).to(garment_image.dtype)
        mk = part_masks[:, k]
        Wk = F.grid_sample(garment_image * mk, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        Ek = F.grid_sample(mk, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        warped_masks.append(Ek)
        sel = (S == cls_t[:, k].view(b, 1, 1, 1)).to(garment_image.dtype)
        cloth = cloth + Wk * sel * keep
        label = label + Ek * sel * cls_t[:, k].view(b, 1, 1, 1).to(label.dtype) * keep
    for e in range(len(extras[0])):
        ev = torch.as_tensor([x[e] for x in extras], device=S.device).view(b, 1, 1, 1)
        label = label + (S == ev).to(label.dtype) * ev.to(label.dtype)
    return Assembled(cloth=cloth, label=label[:, 0].round().long(), part_warped=torch.cat(warped_masks, 1),
                     seg=S[:, 0])


def quantise(x: Tensor) -> Tensor:
    """The official stage-1 PNG round trip: uint8(((x+1)/2)·255)/255·2 − 1 (§4)."""
    q = torch.clamp(((x.float() + 1) / 2 * 255), 0, 255).floor()
    return (q / 255 * 2 - 1).to(x.dtype)


def generator_input(preserve_image: Tensor, cloth: Tensor, label: Tensor, skin: Tensor, pose: Tensor,
                    classes: Sequence[tuple[int, int, int]], extras: Sequence[tuple[int, ...]]) -> tuple[Tensor, Tensor]:
    """§5.2: the 36 channels, and the warped-garment mask (channel 6)."""
    b, _, h, w = cloth.shape
    dt = cloth.dtype
    cls_t = torch.as_tensor(classes, device=label.device)
    gmask = (label[:, None] == cls_t.view(b, 3, 1, 1)).any(1, keepdim=True).to(dt)
    arms = torch.zeros((b, 1, h, w), dtype=dt, device=cloth.device)
    for i in range(3):
        ev = torch.as_tensor([x[i] for x in extras], device=label.device).view(b, 1, 1)
        arms = arms + (label == ev)[:, None].to(dt) * (i + 1) / 3
    skin_map = skin.view(b, 3, 1, 1).to(dt).expand(b, 3, h, w)
    x = torch.cat((preserve_image, cloth, gmask, arms, skin_map, pose.to(dt)), 1)
    return x, gmask


def compose(raw: Tensor, cloth: Tensor, gmask: Tensor) -> Tensor:
    """§5.3: tanh render, sigmoid composition mask × warped garment mask."""
    rendered = torch.tanh(raw[:, 0:3])
    m = torch.sigmoid(raw[:, 3:4]) * gmask
    return cloth * m + rendered * (1 - m)


def _half(x: Tensor, mode: str) -> Tensor:
    return F.interpolate(x, scale_factor=0.5, mode=mode)


def pair_forward(warp, generator, gfeat, pfeat, P: dict[str, Tensor], G: dict[str, Tensor], variant: str,
                 category: str, half_res_warp: bool = False, quantize_cloth: bool = True) -> dict[str, Tensor]:
    """B aligned pairs through decode → assembly (§4) → generator (§5); float32 outputs.

    ``gfeat``/``pfeat``: the pairs' encoded garment / person features (one row per pair);
    ``P``/``G``: :func:`stack_persons` / :func:`stack_garments` rows of the pairs (float32).
    Networks run in their own dtype; flows, assembly and composition in float32. Returns
    ``tryon``, ``cloth`` (quantised warped garment), ``label``, ``part_warped`` (E_k, B×3×H×W),
    ``seg`` (parsing argmax) and ``preserve_gen`` (Dress Code: × (1 − warped mask)).
    """
    dt = next(warp.parameters()).dtype
    b = P["image"].shape[0]
    classes = [part_classes(variant, category)] * b
    extras = [extra_classes(variant, category)] * b
    pm = G["part_masks"].float()                               # B×3×1×H×W
    pm_stacked = torch.cat([pm[:, k] for k in range(3)], 0)   # [left; middle; right]
    pw = P["preserve_warp"].float()
    if half_res_warp:
        pm_stacked, pw_lr = _half(pm_stacked, "nearest"), _half(pw, "nearest")
    else:
        pw_lr = pw
    with torch.inference_mode():
        out = warp.decode(gfeat, pfeat, pm_stacked.to(dt), pw_lr.to(dt), mode="inference")
        asm = assemble(out.last_flow.float(), out.seg_logits.float(), G["image"].float(), pm, pw, classes, extras)
        cloth = quantise(asm.cloth) if quantize_cloth else asm.cloth
        pres_gen = P["preserve_gen"].float()
        if variant == "dresscode":
            cls_t = torch.as_tensor(classes, device=asm.label.device)
            wmask = (asm.label[:, None] == cls_t.view(b, 3, 1, 1)).any(1, keepdim=True).float()
            pres_gen = pres_gen * (1 - wmask)
        x, gmask = generator_input(P["image"].float() * pres_gen, cloth, asm.label, P["skin"].float(),
                                   P["pose"].float(), classes, extras)
        raw = (generator.infer(x.to(dt)) if hasattr(generator, "infer") else generator(x.to(dt))).float()
        tryon = compose(raw, cloth, gmask)
    return {"tryon": tryon, "cloth": cloth, "label": asm.label, "part_warped": asm.part_warped, "seg": asm.seg,
            "preserve_gen": pres_gen}
