"""Preserve masks, palm rule, garment part masks / labels, person-side targets, skin colour.

Everything follows spec §8.5–§8.8. ``dataset`` is the model variant, ``"vitonhd"`` or
``"dresscode"`` (which checkpoint consumes the inputs, not where the photo came from), and
``category`` is ``"upper"``, ``"lower"`` or ``"dresses"``. The VITON-HD variant was only
trained on upper garments; asked for another category it applies its single rule set (FULL ∪
palm, part classes 1/2/3, arms/neck 4/5/6) with that category's person-side part labels, rather
than failing. ``stage`` is ``"warp"`` or ``"gen"``.

Parsing maps are the 29-label GP-VTON parsing (uint8 H×W); keypoints are BODY_25 (25, 3).

Fractional label channels (garment part label / 3 or / 6, arms/neck label / 3, type map / 3) are
computed as the official loaders compute them, in float32 (:func:`label_fraction`); a float64
verification run widens those float32 values instead of taking exact fractions. The difference
is ~2e-8 at the input but grows to ~2e-5 in the warp's parsing logits, enough to break an exact
float64 comparison with the official pipeline.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from gpvton_core.conditions.geometry import polygon_mask
from gpvton_core.conditions.labels import (CATEGORIES, GARMENT_PARTS, LEFT_ARM_JOINTS, RIGHT_ARM_JOINTS, VARIANTS,
                                           WORN_PART_LABELS, Category, Label)
from gpvton_core.conditions.labels import Variant as Dataset

Stage = Literal["warp", "gen"]

# Everything but the upper garment, the arms and the neck (and the body under them).
_L = Label
FULL = frozenset({_L.HAT, _L.HAIR, _L.GLOVE, _L.GLASSES, _L.COAT, _L.SOCKS, _L.LEFT_PANTS, _L.RIGHT_PANTS,
                  _L.SCARF, _L.SKIRTS, _L.FACE, _L.LEFT_LEG, _L.RIGHT_LEG, _L.LEFT_SHOE, _L.RIGHT_SHOE, _L.BAG,
                  _L.LEFT_SLEEVE_COAT, _L.RIGHT_SLEEVE_COAT, _L.BELT})
SHORT = frozenset({_L.HAT, _L.HAIR, _L.GLOVE, _L.GLASSES, _L.COAT, _L.SCARF, _L.FACE, _L.BAG,
                   _L.LEFT_SLEEVE_COAT, _L.RIGHT_SLEEVE_COAT})
_DRESSES_WARP = frozenset({_L.HAT, _L.HAIR, _L.GLOVE, _L.GLASSES, _L.SCARF, _L.FACE, _L.BAG})
_DRESSES_GEN = _DRESSES_WARP | {_L.SOCKS, _L.LEFT_SHOE, _L.RIGHT_SHOE}
_LOWER_WARP = frozenset({_L.HAT, _L.HAIR, _L.GLOVE, _L.GLASSES, _L.UPPER, _L.DRESSES, _L.COAT, _L.NECK,
                         _L.SCARF, _L.FACE, _L.LEFT_ARM, _L.RIGHT_ARM, _L.LEFT_SLEEVE_UPPER,
                         _L.RIGHT_SLEEVE_UPPER, _L.BAG, _L.LEFT_SLEEVE_DRESSES, _L.RIGHT_SLEEVE_DRESSES,
                         _L.LEFT_SLEEVE_COAT, _L.RIGHT_SLEEVE_COAT, _L.BELT})
_LOWER_GEN = _LOWER_WARP | {_L.SOCKS, _L.LEFT_SHOE, _L.RIGHT_SHOE}


def _check(dataset: str, category: str, stage: str | None = None) -> None:
    if dataset not in VARIANTS:
        raise ValueError(f"dataset must be 'vitonhd' or 'dresscode', got {dataset!r}")
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES}, got {category!r}")
    if stage is not None and stage not in ("warp", "gen"):
        raise ValueError(f"stage must be 'warp' or 'gen', got {stage!r}")


def preserve_labels(dataset: Dataset, category: Category, stage: Stage) -> frozenset[int]:
    """The parsing labels kept in the preserve mask (spec §8.5 table)."""
    _check(dataset, category, stage)
    if dataset == "vitonhd" or category == "upper":
        return FULL
    if category == "dresses":
        return _DRESSES_WARP if stage == "warp" else _DRESSES_GEN
    return _LOWER_WARP if stage == "warp" else _LOWER_GEN


def uses_palm(dataset: Dataset, category: Category) -> bool:
    """Dress Code lower keeps the whole arms, so it has no palm term."""
    _check(dataset, category)
    return not (dataset == "dresscode" and category == "lower")


def label_mask(parsing: np.ndarray, labels) -> np.ndarray:
    """Boolean mask of the pixels whose label is in ``labels``."""
    return np.isin(np.asarray(parsing), np.fromiter(labels, dtype=np.int64))


def dilate(mask: np.ndarray, k: int) -> np.ndarray:
    """Binary dilation with a k×k square of ones, anchor at k//2 (OpenCV's default anchor).

    dst(y, x) = max src(y + i − a, x + j − a) for i, j in 0..k−1, a = k//2: a box sum over rows
    y−a..y+k−1−a (and the same for columns) is positive.
    """
    m = np.asarray(mask, bool).astype(np.int32)
    H, W = m.shape
    a = k // 2
    p = np.pad(m, ((a + 1, k - 1 - a), (a + 1, k - 1 - a)))
    c = p.cumsum(0)
    c = c[k:] - c[:-k]
    c = c.cumsum(1)
    c = c[:, k:] - c[:, :-k]
    return c > 0


def segment_rectangle(p0, p1, height: int, width: int) -> np.ndarray:
    """Filled rectangle around p0→p1 with half-width ¼ of the segment length (spec §8.5)."""
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    length = math.hypot(dx, dy)
    if length <= 0:
        return np.zeros((height, width), bool)
    nx, ny = -dy / length * length / 4.0, dx / length * length / 4.0
    return polygon_mask([[(x0 + nx, y0 + ny), (x1 + nx, y1 + ny), (x1 - nx, y1 - ny), (x0 - nx, y0 - ny)]],
                        height, width)


def palm_kernels(height: int) -> tuple[int, int]:
    """Dilation kernels (upper arm, forearm): 50/30 at 512, 100/60 at 1024 (∝ H)."""
    return max(1, int(round(50 * height / 512))), max(1, int(round(30 * height / 512)))


def palm_mask(parsing: np.ndarray, keypoints: np.ndarray, conf: float = 0.1) -> np.ndarray:
    """The hands: arm label minus the dilated shoulder→elbow and elbow→wrist rectangles."""
    p = np.asarray(parsing)
    H, W = p.shape
    k = np.asarray(keypoints, np.float32).reshape(-1, 3)
    ku, kl = palm_kernels(H)
    out = np.zeros((H, W), bool)
    for label, (s, e, w) in ((Label.LEFT_ARM, LEFT_ARM_JOINTS), (Label.RIGHT_ARM, RIGHT_ARM_JOINTS)):
        arm = p == label
        if not arm.any():
            continue
        if k[s, 2] > conf and k[e, 2] > conf:
            upper = dilate(segment_rectangle(k[s, :2], k[e, :2], H, W), ku)
        else:
            upper = np.ones((H, W), bool)
        if k[e, 2] > conf and k[w, 2] > conf:
            lower = dilate(segment_rectangle(k[e, :2], k[w, :2], H, W), kl)
        else:
            lower = np.ones((H, W), bool)
        out |= arm & ~upper & ~lower
    return out


def preserve_mask(parsing: np.ndarray, keypoints: np.ndarray, dataset: Dataset, category: Category,
                  stage: Stage = "warp", warped_garment_mask: np.ndarray | None = None) -> np.ndarray:
    """Preserve mask (float32 H×W in {0,1}) for a dataset / category / stage (spec §8.5).

    For the Dress Code generator stage pass ``warped_garment_mask`` (labels 1..6 of the warp PNG
    → 1); the mask is then multiplied by ``1 − warped_garment_mask``.
    """
    m = label_mask(parsing, preserve_labels(dataset, category, stage))
    if uses_palm(dataset, category):
        m |= palm_mask(parsing, keypoints)
    out = m.astype(np.float32)
    if stage == "gen" and dataset == "dresscode" and warped_garment_mask is not None:
        out *= 1.0 - (np.asarray(warped_garment_mask) > 0).astype(np.float32)
    return out


# --- garment part masks and labels (§8.6) ------------------------------------------------------
def garment_part_labels(dataset: Dataset, category: Category) -> tuple[int, int, int]:
    """Label values of the (left, middle, right) garment parts in the network's part label input."""
    _check(dataset, category)
    return (4, 5, 6) if (dataset == "dresscode" and category == "lower") else (1, 2, 3)


def garment_label_divisor(dataset: Dataset) -> int:
    return 3 if dataset == "vitonhd" else 6


def label_fraction(labels: np.ndarray, divisor: float, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """``labels / divisor`` as the official loaders compute it: in float32, then widened to ``dtype``.

    The official data code reads label maps as float32 tensors and divides them there, so the
    network sees float32(1/3) = 0.3333333433…, not 1/3; a float64 run must widen that value to
    reproduce the official pipeline (module docstring).
    """
    return (np.asarray(labels, np.float32) / np.float32(divisor)).astype(dtype)


def garment_type_value(category: Category) -> float:
    """Dress Code type map constant: 1/3 upper, 2/3 lower, 1 dresses (float32 values, as official)."""
    return float(label_fraction(np.float32({"upper": 1, "lower": 2, "dresses": 3}[category]), 3))


def garment_part_masks(parts: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(3, H, W) float32 {0,1}: left / middle / right from a 0/1/2/3 part map (within ``mask``)."""
    p = np.asarray(parts)
    inside = np.ones_like(p, bool) if mask is None else np.asarray(mask) > 0
    return np.stack([(p == v) & inside for v in GARMENT_PARTS]).astype(np.float32)


def garment_label_map(parts: np.ndarray, dataset: Dataset, category: Category) -> np.ndarray:
    """uint8 H×W official part label values (1/2/3, or 4/5/6 for Dress Code lower), 0 elsewhere."""
    lv = garment_part_labels(dataset, category)
    p = np.asarray(parts)
    out = np.zeros(p.shape, np.uint8)
    for v, lab in zip(GARMENT_PARTS, lv):
        out[p == v] = lab
    return out


def garment_label_input(parts: np.ndarray, dataset: Dataset, category: Category,
                        dtype: np.dtype | type = np.float32) -> np.ndarray:
    """The garment part label channel as the network sees it: label / divisor in float32
    (official ``flat_clothes_label``), widened to ``dtype`` for float64 runs."""
    return label_fraction(garment_label_map(parts, dataset, category), garment_label_divisor(dataset), dtype)


# --- person-side targets (§8.7) ---------------------------------------------------------------
def person_part_labels(category: Category) -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
    """The person's parsing labels of the worn garment's left / middle / right parts: upper and
    dresses share them (a person may wear either; §8.7 targets both)."""
    if category == "lower":
        return tuple(frozenset({v}) for v in WORN_PART_LABELS["lower"])  # type: ignore[return-value]
    pairs = zip(WORN_PART_LABELS["upper"], WORN_PART_LABELS["dresses"])
    return tuple(frozenset(pair) for pair in pairs)  # type: ignore[return-value]


def person_part_masks(parsing: np.ndarray, category: Category) -> np.ndarray:
    """(3, H, W) float32: the person's worn-garment parts left / middle / right."""
    return np.stack([label_mask(parsing, s) for s in person_part_labels(category)]).astype(np.float32)


def seg_target(parsing: np.ndarray, dataset: Dataset, category: Category) -> np.ndarray:
    """Global-parsing target (int64 H×W) in the warp network's class order (§3.6, §3.7, §8.7).

    VITON-HD: 1..3 parts, 4/5 arms, 6 neck. Dress Code upper/dresses: 1..3 parts, 7/8 arms, 9 neck;
    lower: 4..6 parts, arms and neck unlabelled.
    """
    _check(dataset, category)
    p = np.asarray(parsing)
    out = np.zeros(p.shape, np.int64)
    base = 4 if (dataset == "dresscode" and category == "lower") else 1
    for i, s in enumerate(person_part_labels(category)):
        out[label_mask(p, s)] = base + i
    if dataset == "vitonhd":
        out[p == Label.LEFT_ARM], out[p == Label.RIGHT_ARM], out[p == Label.NECK] = 4, 5, 6
    elif category != "lower":
        out[p == Label.LEFT_ARM], out[p == Label.RIGHT_ARM], out[p == Label.NECK] = 7, 8, 9
    return out


def arms_neck_label(parsing: np.ndarray, dataset: Dataset, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Generator channel 7 from a parsing: left arm / right arm / neck → 1, 2, 3, then / 3 in
    float32 as the official code does (values 0, float32(1/3), float32(2/3), 1), widened to ``dtype``.

    Both variants use the same values (Dress Code's classes 7/8/9 also map to 1/2/3).
    """
    _check(dataset, "upper")
    p = np.asarray(parsing)
    idx = np.zeros(p.shape, np.uint8)
    idx[p == Label.LEFT_ARM], idx[p == Label.RIGHT_ARM], idx[p == Label.NECK] = 1, 2, 3
    return label_fraction(idx, 3, dtype)


def person_garment_image(image: np.ndarray, parsing: np.ndarray, category: Category) -> np.ndarray:
    """Person RGB (uint8) × union of the part masks."""
    m = person_part_masks(parsing, category).max(axis=0) > 0
    return np.asarray(image) * m[..., None].astype(np.uint8)


# --- skin colour (§8.8) -------------------------------------------------------------------------
def skin_labels(dataset: Dataset) -> frozenset[int]:
    base = {Label.FACE, Label.LEFT_ARM, Label.RIGHT_ARM, Label.NECK}
    return frozenset(base | {Label.LEFT_LEG, Label.RIGHT_LEG}) if dataset == "dresscode" else frozenset(base)


def skin_colour(image: np.ndarray, parsing: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Per-channel median skin colour (float32 (3,), in [−1, 1]); NaN where undefined.

    Per channel c, the median over skin pixels whose value **in channel c** is > 0 (spec §8.8).
    A channel without such pixels is NaN, as in the official code; callers check
    :func:`skin_colour_ok` and decide (e.g. error row or fallback).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError("image must be uint8 H×W×3")
    region = label_mask(parsing, skin_labels(dataset))
    out = np.full(3, np.nan, np.float32)
    for c in range(3):
        v = img[..., c][region]
        v = v[v > 0]
        if v.size:
            # torch.median semantics (lower median for even counts) as the official torch code.
            out[c] = float(torch.from_numpy(v.astype(np.float32)).median())
    return (out / 127.5 - 1.0).astype(np.float32)


def skin_colour_ok(colour: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(colour)))


def skin_colour_map(colour: np.ndarray, height: int, width: int) -> np.ndarray:
    """Broadcast (3,) → (3, H, W) float32."""
    return np.broadcast_to(np.asarray(colour, np.float32)[:, None, None], (3, height, width)).copy()
