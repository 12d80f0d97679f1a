"""Procedural try-on catalogue: garments and model photos with exact labels (pure NumPy/Pillow).

:func:`make_catalogue` writes a small, fully labelled, *paired* catalogue in the plain-manifest
layout that ``gpvton preprocess --input manifest:OUT/...`` reads, deterministically from a seed:

* garments of every category on a white background: ``upper`` (long / short / no sleeves),
  ``lower`` (trousers, shorts, skirts) and ``dresses`` (long / short / no sleeves), with textures
  (stripes, checks, dots, solid, gradients), their exact mask and part label map
  (0 background, 1 left, 2 middle, 3 right; left = the wearer's left = the image right);
* model photos: frontal people drawn from jittered BODY_25 keypoints (skin, hair, face,
  background), with the exact 29-label GP-VTON parsing (GPVTON.md §8.1), a DensePose-style part
  index map (0..24), the keypoints as an OpenPose JSON, and the catalogue garment they wear.

The person wears a real catalogue garment mapped onto the body piece by piece (one perspective
transform per garment piece: sleeves, torso / bodice, skirt, trouser legs), so every
(person, worn garment) pair is a true training pair: the visible garment on the person is the
flat garment warped (and partly hidden: tucked tops, hair over the shoulders).

Layout written under ``out_dir`` (paths in the CSVs are relative to ``out_dir``)::

    garments.csv   garment_id,image,category,mask,parts
    persons.csv    person_id,image,categories,keypoints,parsing,densepose,worn_garment_id
    garments/ID.png  ID_mask.png ({0,255})  ID_parts.png (0..3)
    persons/ID.png   ID_parsing.png (0..28)  ID_densepose.png (0..24)  ID_keypoints.json
    meta.json      generator version, seed, size, per-item attributes (style, tucked, ...)

``categories`` lists the garment categories a photo can take, separated by ``;`` (the worn
garment's category first).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from gpvton_core.conditions.geometry import polygon_mask
from gpvton_core.conditions.labels import (CATEGORIES, GARMENT_PARTS, LEFT_ARM_JOINTS, LEFT_FOOT_JOINTS,
                                           LEFT_LEG_JOINTS, PART_LEFT, PART_MIDDLE, PART_RIGHT, RIGHT_ARM_JOINTS,
                                           RIGHT_FOOT_JOINTS, RIGHT_LEG_JOINTS, WORN_PART_LABELS, Joint, Label,
                                           Part)

VERSION = "synthetic-1"

# The labels come from gpvton_core.conditions.labels, the vocabulary the derivation reads, so the
# catalogue's exact annotations cannot drift from what preprocess and render expect.
#: person parsing label of each garment part, per category (person side of §8.6/§8.7)
PERSON_LABELS = {c: dict(zip(GARMENT_PARTS, WORN_PART_LABELS[c])) for c in CATEGORIES}

STYLES = {
    "upper": ("long", "short", "none"),
    "lower": ("trousers", "shorts", "skirt"),
    "dresses": ("long", "short", "none"),
}
TEXTURES = ("solid", "stripes", "checks", "dots", "gradient")
SKIN_TONES = [(236, 200, 170), (224, 172, 138), (198, 140, 100), (160, 110, 75), (110, 75, 50),
              (241, 212, 190)]
HAIR_COLOURS = [(30, 22, 18), (70, 45, 25), (120, 80, 40), (200, 170, 110), (40, 40, 40),
                (150, 60, 30)]

Point = tuple[float, float]


# ---- small geometry helpers -------------------------------------------------------------------
def _homography(dst: list[Point], src: list[Point]) -> tuple[float, ...]:
    """Coefficients (a..h) of the perspective map dst → src, as PIL's PERSPECTIVE transform wants."""
    A, b = [], []
    for (x, y), (u, v) in zip(dst, src):
        A.append([x, y, 1, 0, 0, 0, -u * x, -u * y]); b.append(u)
        A.append([0, 0, 0, x, y, 1, -v * x, -v * y]); b.append(v)
    return tuple(float(c) for c in np.linalg.solve(np.asarray(A, np.float64), np.asarray(b, np.float64)))


def _poly_mask(size: tuple[int, int], polys: list[list[Point]]) -> np.ndarray:
    return polygon_mask(polys, size[0], size[1], outline=False)


def _line_mask(size: tuple[int, int], pts: list[Point], width: float) -> np.ndarray:
    h, w = size
    im = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(im)
    wd = max(1, int(round(width)))
    d.line([(float(x), float(y)) for x, y in pts], fill=1, width=wd, joint="curve")
    r = width / 2
    for x, y in (pts[0], pts[-1]):
        d.ellipse([x - r, y - r, x + r, y + r], fill=1)
    return np.asarray(im, dtype=np.uint8).astype(bool)


def _ellipse_mask(size: tuple[int, int], cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    h, w = size
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
    return np.asarray(im, dtype=np.uint8).astype(bool)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.array([0.0, 1.0])


# ---- textures -------------------------------------------------------------------------------
def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(15, 241, size=3).astype(np.float32)


def make_texture(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """An H×W×3 float32 texture (0..255) of the given kind, scaled to the image size."""
    s = max(h, w) / 512.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c1, c2 = _colour(rng), _colour(rng)
    if np.abs(c1 - c2).sum() < 120:  # keep patterns visible
        c2 = 255.0 - c1
    if kind == "solid":
        tex = np.broadcast_to(c1, (h, w, 3)).copy()
    elif kind == "stripes":
        period = float(rng.uniform(10, 36)) * s
        angle = float(rng.choice([0.0, 90.0, 45.0, -45.0]))
        t = xx * math.cos(math.radians(angle)) + yy * math.sin(math.radians(angle))
        duty = float(rng.uniform(0.3, 0.7))
        m = ((t / period) % 1.0) < duty
        tex = np.where(m[..., None], c1, c2)
    elif kind == "checks":
        p = float(rng.uniform(12, 40)) * s
        m = ((np.floor(xx / p) + np.floor(yy / p)) % 2) == 0
        tex = np.where(m[..., None], c1, c2)
    elif kind == "dots":
        p = float(rng.uniform(14, 34)) * s
        r = p * float(rng.uniform(0.18, 0.33))
        off = (yy // p) % 2 * (p / 2)
        dx = ((xx + off) % p) - p / 2
        dy = (yy % p) - p / 2
        m = dx * dx + dy * dy < r * r
        tex = np.where(m[..., None], c1, c2)
    elif kind == "gradient":
        a = float(rng.uniform(0, 2 * math.pi))
        t = (xx * math.cos(a) + yy * math.sin(a))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        tex = c1 * (1 - t[..., None]) + c2 * t[..., None]
    else:
        raise ValueError(f"unknown texture {kind!r}")
    # mild fabric shading: soft vertical folds
    folds = 1.0 - 0.06 * (0.5 + 0.5 * np.sin(xx / (23.0 * s) + float(rng.uniform(0, 6.28))))
    return (tex * folds[..., None]).astype(np.float32)


# ---- garments -------------------------------------------------------------------------------
@dataclass
class Piece:
    """One garment piece: its part label, its flat-garment frame quad and its region label."""

    name: str         # sleeve_l, sleeve_r, torso, bodice, skirt, leg_l, leg_r
    part: int         # 1 left / 2 middle / 3 right
    quad: list[Point]  # frame corners in the flat garment image (order matters)


@dataclass
class Garment:
    garment_id: str
    category: str
    style: str
    texture: str
    height: int
    width: int
    image: np.ndarray          # H×W×3 uint8 on white
    parts: np.ndarray          # H×W uint8 0..3
    piece_map: np.ndarray      # H×W uint8: 0 bg, i+1 = pieces[i]
    texture_full: np.ndarray   # H×W×3 float texture (whole canvas; sampled by the person warp)
    pieces: list[Piece] = field(default_factory=list)
    params: dict[str, float] = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        return (self.parts > 0).astype(np.uint8) * 255


def _sleeve_quads(cx: float, hw: float, y_top: float, length: float, cuff: float, armhole: float,
                  angle_deg: float) -> tuple[list[Point], list[Point]]:
    """Flat sleeve frames (left = image right, right = image left): [top, end-top, end-bottom, armpit]."""
    a = math.radians(angle_deg)
    d = np.array([math.sin(a), math.cos(a)])
    n = np.array([-math.cos(a), math.sin(a)])
    S = np.array([cx + hw, y_top])
    A = S + np.array([0.0, armhole])
    E0 = S + d * length
    E1 = E0 + n * cuff
    left = [tuple(S), tuple(E0), tuple(E1), tuple(A)]
    right = [(2 * cx - x, y) for x, y in left]
    return left, right  # type: ignore[return-value]


def make_garment(rng: np.random.Generator, garment_id: str, category: str, style: str,
                 texture: str, height: int, width: int) -> Garment:
    H, W = height, width
    cx = W / 2.0 + float(rng.uniform(-0.02, 0.02)) * W
    pieces: list[Piece] = []
    shapes: list[tuple[int, list[list[Point]], list[tuple[float, float, float, float]]]] = []
    params: dict[str, float] = {}
    # shapes: (piece index, polygons to fill, ellipses to cut (cx, cy, rx, ry))

    if category in ("upper", "dresses"):
        if category == "upper":
            y_t = float(rng.uniform(0.10, 0.15)) * H
            y_b = y_t + float(rng.uniform(0.36, 0.46)) * H   # flat tops are about as tall as wide
        else:
            y_t = float(rng.uniform(0.04, 0.07)) * H
            y_b = float(rng.uniform(0.88, 0.96)) * H
        if category == "upper":
            hw_t = float(rng.uniform(0.20, 0.24)) * W if style != "none" else float(rng.uniform(0.16, 0.20)) * W
        else:
            hw_t = float(rng.uniform(0.15, 0.19)) * W if style != "none" else float(rng.uniform(0.12, 0.15)) * W
        hw_b = hw_t * float(rng.uniform(0.9, 1.15))
        neck_rx = float(rng.uniform(0.05, 0.085)) * W
        neck_ry = float(rng.uniform(0.025, 0.07)) * H
        cuts = [(cx, y_t, neck_rx, neck_ry)]
        if style != "none":
            body_h = (y_b - y_t)
            armhole = float(rng.uniform(0.11, 0.15)) * H
            cuff = float(rng.uniform(0.08, 0.11)) * W
            ref = 0.55 * H if category == "upper" else 0.5 * H
            length = (float(rng.uniform(0.62, 0.72)) if style == "long" else float(rng.uniform(0.18, 0.28))) * ref
            if style == "long":
                angle = float(rng.uniform(15, 22)) if category == "upper" else float(rng.uniform(18, 28))
            else:
                angle = float(rng.uniform(45, 60))
            ql, qr = _sleeve_quads(cx, hw_t, y_t, length, cuff, armhole, angle)
            pieces.append(Piece("sleeve_l", PART_LEFT, ql))
            shapes.append((len(pieces) - 1, [ql], []))
            pieces.append(Piece("sleeve_r", PART_RIGHT, qr))
            shapes.append((len(pieces) - 1, [qr], []))
            params.update(sleeve_length=length / max(ref, 1.0), armhole=armhole / H, cuff=cuff / W, body_h=body_h / H)
        if category == "upper":
            quad = [(cx - hw_t, y_t), (cx + hw_t, y_t), (cx + hw_b, y_b), (cx - hw_b, y_b)]
            pieces.append(Piece("torso", PART_MIDDLE, quad))
            shapes.append((len(pieces) - 1, [quad], cuts))
            params.update(length=(y_b - y_t) / H)
        else:
            y_w = y_t + float(rng.uniform(0.30, 0.36)) * H
            hw_w = hw_t * float(rng.uniform(0.8, 0.95))
            hw_h = hw_t * float(rng.uniform(1.1, 1.6))
            bod = [(cx - hw_t, y_t), (cx + hw_t, y_t), (cx + hw_w, y_w), (cx - hw_w, y_w)]
            sk = [(cx - hw_w, y_w), (cx + hw_w, y_w), (cx + hw_h, y_b), (cx - hw_h, y_b)]
            pieces.append(Piece("bodice", PART_MIDDLE, bod))
            shapes.append((len(pieces) - 1, [bod], cuts))
            pieces.append(Piece("skirt", PART_MIDDLE, sk))
            shapes.append((len(pieces) - 1, [sk], []))
            params.update(length=(y_b - y_t) / H, waist=(y_w - y_t) / max(y_b - y_t, 1.0))
    elif category == "lower":
        y_w = float(rng.uniform(0.06, 0.12)) * H
        hw = float(rng.uniform(0.17, 0.22)) * W
        if style == "skirt":
            y_h = y_w + float(rng.uniform(0.40, 0.75)) * H
            hw_h = hw * float(rng.uniform(1.05, 1.6))
            sk = [(cx - hw, y_w), (cx + hw, y_w), (cx + hw_h, y_h), (cx - hw_h, y_h)]
            pieces.append(Piece("skirt", PART_MIDDLE, sk))
            shapes.append((len(pieces) - 1, [sk], []))
            params.update(length=(y_h - y_w) / H)
        else:
            y_h = (float(rng.uniform(0.86, 0.95)) if style == "trousers" else float(rng.uniform(0.42, 0.52))) * H
            y_c = y_w + float(rng.uniform(0.20, 0.26)) * H
            out = hw * float(rng.uniform(0.95, 1.2))
            leg_w = hw * float(rng.uniform(0.75, 1.0))
            gap = float(rng.uniform(0.02, 0.05)) * W
            # left leg = image right; frame [waist-centre, waist-outer, hem-outer, hem-inner]
            ql = [(cx, y_w), (cx + hw, y_w), (cx + gap + leg_w, y_h), (cx, y_h)]
            qr = [(2 * cx - x, y) for x, y in ql]
            crotch_l = [(cx, y_w), (cx + hw, y_w), (cx + min(out, gap + leg_w), y_h), (cx + gap, y_h), (cx, y_c)]
            crotch_r = [(2 * cx - x, y) for x, y in crotch_l]
            pieces.append(Piece("leg_l", PART_LEFT, ql))
            shapes.append((len(pieces) - 1, [crotch_l], []))
            pieces.append(Piece("leg_r", PART_RIGHT, qr))
            shapes.append((len(pieces) - 1, [crotch_r], []))
            params.update(length=(y_h - y_w) / H)
    else:
        raise ValueError(f"unknown category {category!r}")

    piece_map = np.zeros((H, W), np.uint8)
    for idx, polys, cut in shapes:
        m = _poly_mask((H, W), polys)
        for (ex, ey, rx, ry) in cut:
            m &= ~_ellipse_mask((H, W), ex, ey, rx, ry)
        piece_map[m] = idx + 1
    parts = np.zeros((H, W), np.uint8)
    for i, p in enumerate(pieces):
        parts[piece_map == i + 1] = p.part
    tex = make_texture(rng, texture, H, W)
    img = np.full((H, W, 3), 255.0, np.float32)
    img[parts > 0] = tex[parts > 0]
    # thin seam lines between pieces make the parts visible in the product photo
    edges = np.zeros((H, W), bool)
    edges[:, 1:] |= (piece_map[:, 1:] != piece_map[:, :-1]) & (piece_map[:, 1:] > 0) & (piece_map[:, :-1] > 0)
    edges[1:, :] |= (piece_map[1:, :] != piece_map[:-1, :]) & (piece_map[1:, :] > 0) & (piece_map[:-1, :] > 0)
    img[edges] *= 0.8
    return Garment(garment_id, category, style, texture, H, W, np.clip(img, 0, 255).astype(np.uint8),
                   parts, piece_map, tex, pieces, params)


# ---- people -------------------------------------------------------------------------------
def make_skeleton(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """BODY_25 keypoints (25×3: x, y, confidence) of a frontal standing person, jittered."""
    H, W = height, width
    s = float(rng.uniform(0.9, 1.04))            # body scale
    cx = W / 2 + float(rng.uniform(-0.05, 0.05)) * W
    top = float(rng.uniform(0.0, 0.04)) * H
    def P(u: float, v: float) -> tuple[float, float]:
        return (cx + u * W * s, top + v * H * s)
    sh = float(rng.uniform(0.15, 0.19))   # half shoulder width
    hp = sh * float(rng.uniform(0.55, 0.7))
    arm_a = math.radians(float(rng.uniform(8, 22)))
    arm_b = math.radians(float(rng.uniform(8, 22)))
    ua, la = 0.19, 0.17                   # upper / lower arm lengths (fraction of H)
    k = np.zeros((25, 3), np.float64)
    k[Joint.NOSE, :2] = P(0, 0.115); k[Joint.NECK, :2] = P(0, 0.195)
    k[Joint.R_SHOULDER, :2] = P(-sh, 0.215); k[Joint.L_SHOULDER, :2] = P(sh, 0.215)
    # arms hang down and out (image coords: y down); elbow slightly bent
    for (shi, eli, wri), sign, a in ((RIGHT_ARM_JOINTS, -1, arm_a), (LEFT_ARM_JOINTS, 1, arm_b)):
        sx, sy = k[shi, :2]
        ex = sx + sign * math.sin(a) * ua * H * s * (H / W) * (W / H)
        ey = sy + math.cos(a) * ua * H * s
        b = a + math.radians(float(rng.uniform(-5, 5)))
        wx = ex + sign * math.sin(b) * la * H * s
        wy = ey + math.cos(b) * la * H * s
        k[eli, :2] = (ex, ey); k[wri, :2] = (wx, wy)
    k[Joint.MID_HIP, :2] = P(0, 0.52); k[Joint.R_HIP, :2] = P(-hp, 0.52); k[Joint.L_HIP, :2] = P(hp, 0.52)
    lg = float(rng.uniform(-0.01, 0.02))
    k[Joint.R_KNEE, :2] = P(-hp - lg, 0.72); k[Joint.L_KNEE, :2] = P(hp + lg, 0.72)
    k[Joint.R_ANKLE, :2] = P(-hp - 1.5 * lg, 0.91); k[Joint.L_ANKLE, :2] = P(hp + 1.5 * lg, 0.91)
    k[Joint.R_EYE, :2] = P(-0.025, 0.10); k[Joint.L_EYE, :2] = P(0.025, 0.10)
    k[Joint.R_EAR, :2] = P(-0.055, 0.11); k[Joint.L_EAR, :2] = P(0.055, 0.11)
    for ank, (big, small, heel), sign in ((Joint.L_ANKLE, LEFT_FOOT_JOINTS, 1), (Joint.R_ANKLE, RIGHT_FOOT_JOINTS, -1)):
        ax, ay = k[ank, :2]
        k[big, :2] = (ax + sign * 0.01 * W, ay + 0.045 * H * s)
        k[small, :2] = (ax + sign * 0.035 * W, ay + 0.04 * H * s)
        k[heel, :2] = (ax, ay + 0.02 * H * s)
    k[:, :2] += rng.normal(0, 0.004 * H, size=(25, 2))
    k[:, 2] = rng.uniform(0.6, 0.95, size=25)
    # points outside the image are "missing" (OpenPose writes zeros)
    out = (k[:, 0] < 0) | (k[:, 0] > W - 1) | (k[:, 1] < 0) | (k[:, 1] > H - 1)
    k[out] = 0.0
    return k.astype(np.float32)


@dataclass
class Body:
    """Body geometry derived from the skeleton (all in image pixels)."""

    k: np.ndarray
    arm_w: float
    leg_w: float
    torso: list[Point]
    head: tuple[float, float, float, float]


def _body(k: np.ndarray, H: int, W: int, rng: np.random.Generator) -> Body:
    sc = float(np.linalg.norm(k[Joint.L_SHOULDER, :2] - k[Joint.R_SHOULDER, :2]))
    arm_w = sc * float(rng.uniform(0.17, 0.21))
    leg_w = sc * float(rng.uniform(0.26, 0.32))
    rs, ls, rh, lh = k[Joint.R_SHOULDER, :2], k[Joint.L_SHOULDER, :2], k[Joint.R_HIP, :2], k[Joint.L_HIP, :2]
    torso = [tuple(rs + [0, -0.01 * H]), tuple(ls + [0, -0.01 * H]),
             tuple(lh + [leg_w * 0.45, 0.02 * H]), tuple(rh + [-leg_w * 0.45, 0.02 * H])]
    nx, ny = k[Joint.NOSE, :2]
    head = (float(nx), float(ny) - 0.01 * H, 0.075 * sc / 0.34 * 1.0 + 0.0, 0.10 * sc / 0.34)
    return Body(k, arm_w, leg_w, torso, head)  # type: ignore[arg-type]


def _arm_polyline(k: np.ndarray, side: str) -> list[Point]:
    idx = LEFT_ARM_JOINTS if side == "left" else RIGHT_ARM_JOINTS
    return [tuple(map(float, k[i, :2])) for i in idx]  # type: ignore[misc]


def _leg_polyline(k: np.ndarray, side: str) -> list[Point]:
    idx = LEFT_LEG_JOINTS if side == "left" else RIGHT_LEG_JOINTS
    return [tuple(map(float, k[i, :2])) for i in idx]  # type: ignore[misc]


def _person_frames(g: Garment, b: Body, H: int, W: int, tucked: bool) -> list[list[Point]]:
    """Person-space frame of every garment piece (same corner order as the flat frames)."""
    k = b.k
    frames: list[list[Point]] = []
    rs, ls = k[Joint.R_SHOULDER, :2].astype(np.float64), k[Joint.L_SHOULDER, :2].astype(np.float64)
    rh, lh = k[Joint.R_HIP, :2].astype(np.float64), k[Joint.L_HIP, :2].astype(np.float64)
    mid = (rh + lh) / 2
    sh_w = float(np.linalg.norm(ls - rs))
    up = np.array([0.0, -0.012 * H])
    out = b.arm_w * 0.35
    for p in g.pieces:
        if p.name in ("sleeve_l", "sleeve_r"):
            left = p.name == "sleeve_l"
            S = ls if left else rs
            Wr = (k[Joint.L_WRIST, :2] if left else k[Joint.R_WRIST, :2]).astype(np.float64)
            u = _unit(Wr - S)
            m = np.array([u[1], -u[0]]) if left else np.array([-u[1], u[0]])  # outward normal
            if m[0] * (1 if left else -1) < 0:
                m = -m
            arm_len = float(np.linalg.norm(Wr - S)) + b.arm_w * 0.5
            L = g.params.get("sleeve_length", 0.6) / 0.67 * arm_len
            half0 = b.arm_w * 0.85
            half1 = b.arm_w * (0.75 if L > 0.6 * arm_len else 0.8)
            top = S + up - u * 0.02 * H
            frames.append([tuple(top + m * half0), tuple(S + u * L + m * half1),
                           tuple(S + u * L - m * half1), tuple(S - m * half0 + u * half0 * 1.4)])
        elif p.name == "torso":
            ratio = g.params["length"] / 0.41   # flat length range 0.36–0.46 H ↔ hem around the hips
            y_b = rs[1] + (mid[1] - rs[1]) * (1.08 * ratio)
            hx = (lh[0] - rh[0]) / 2 + b.leg_w * 0.55
            frames.append([tuple(rs + up + [-out, 0]), tuple(ls + up + [out, 0]),
                           (float(mid[0] + hx * 1.05), float(y_b)), (float(mid[0] - hx * 1.05), float(y_b))])
        elif p.name == "bodice":
            y_w = rs[1] + (mid[1] - rs[1]) * 0.72
            hx = sh_w / 2 * 0.78
            frames.append([tuple(rs + up + [-out, 0]), tuple(ls + up + [out, 0]),
                           (float(mid[0] + hx), float(y_w)), (float(mid[0] - hx), float(y_w))])
        elif p.name == "skirt":
            ank_y = float((k[Joint.L_ANKLE, 1] + k[Joint.R_ANKLE, 1]) / 2)
            if g.category == "dresses":
                y_w = rs[1] + (mid[1] - rs[1]) * 0.72
                hx_w = sh_w / 2 * 0.78
                frac = g.params["length"] * (1 - g.params["waist"])
                y_h = y_w + (ank_y - y_w) * min(1.0, frac / 0.58)
            else:
                y_w = mid[1] - 0.05 * H
                hx_w = (lh[0] - rh[0]) / 2 + b.leg_w * 0.55
                y_h = y_w + (ank_y - y_w) * min(1.0, g.params["length"] / 0.8)
            flare = 1.25 + 0.35 * (y_h - y_w) / max(ank_y - y_w, 1.0)
            frames.append([(float(mid[0] - hx_w), float(y_w)), (float(mid[0] + hx_w), float(y_w)),
                           (float(mid[0] + hx_w * flare), float(y_h)), (float(mid[0] - hx_w * flare), float(y_h))])
        elif p.name in ("leg_l", "leg_r"):
            left = p.name == "leg_l"
            hip = lh if left else rh
            ank = (k[Joint.L_ANKLE, :2] if left else k[Joint.R_ANKLE, :2]).astype(np.float64)
            y_w = float(mid[1] - 0.05 * H - (0.03 * H if tucked else 0.0))
            frac = min(1.0, g.params["length"] / 0.8)
            hem = hip + (ank + [0, 0.015 * H] - hip) * frac
            sgn = 1.0 if left else -1.0
            hw = b.leg_w * 0.62
            frames.append([(float(mid[0]), y_w), (float(hip[0] + sgn * b.leg_w * 0.62), y_w),
                           (float(hem[0] + sgn * hw), float(hem[1])), (float(hem[0] - sgn * hw), float(hem[1]))])
        else:  # pragma: no cover
            raise ValueError(p.name)
    return frames


def _warp_garment(g: Garment, frames: list[list[Point]], H: int, W: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Map every piece of ``g`` onto the person canvas: (RGB float H×W×3, part label H×W)."""
    rgb = np.zeros((H, W, 3), np.float32)
    part = np.zeros((H, W), np.uint8)
    tex_im = Image.fromarray(np.clip(g.texture_full, 0, 255).astype(np.uint8))
    # middle pieces first, sleeves / legs on top (a sleeve is sewn over the torso edge)
    order = sorted(range(len(g.pieces)), key=lambda j: g.pieces[j].part != PART_MIDDLE)
    for i in order:
        p, fr = g.pieces[i], frames[i]
        coeffs = _homography(fr, p.quad)
        pm = Image.fromarray(((g.piece_map == i + 1) * 255).astype(np.uint8))
        m = np.asarray(pm.transform((W, H), Image.Transform.PERSPECTIVE, coeffs,
                                    resample=Image.Resampling.NEAREST, fillcolor=0)) > 127
        # a perspective map sends points beyond its horizon line into the frame too: clip to the frame
        m &= _poly_mask((H, W), [fr])
        t = np.asarray(tex_im.transform((W, H), Image.Transform.PERSPECTIVE, coeffs,
                                        resample=Image.Resampling.BILINEAR), np.float32)
        rgb[m] = t[m]
        part[m] = p.part
    return rgb, part


def _paint(img: np.ndarray, parsing: np.ndarray, region: np.ndarray, label: int,
           colour: np.ndarray | tuple[int, int, int]) -> None:
    parsing[region] = label
    img[region] = colour if not isinstance(colour, np.ndarray) or colour.ndim == 1 else colour[region]


@dataclass
class Person:
    person_id: str
    image: np.ndarray       # H×W×3 uint8
    parsing: np.ndarray     # H×W uint8 0..28
    densepose: np.ndarray   # H×W uint8 0..24
    keypoints: np.ndarray   # 25×3 float32
    worn: Garment
    categories: list[str]
    attrs: dict[str, Any]


def _companion(rng: np.random.Generator, category: str, style: str, H: int, W: int) -> Garment:
    return make_garment(rng, "companion", category, style, "solid", H, W)


def make_person(rng: np.random.Generator, person_id: str, worn: Garment, height: int, width: int) -> Person:
    H, W = height, width
    k = make_skeleton(rng, H, W)
    body = _body(k, H, W, rng)
    skin = np.asarray(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], np.float32)
    hair_c = np.asarray(HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))], np.float32)
    shoe_c = rng.integers(10, 90, size=3).astype(np.float32)
    bg_top, bg_bot = rng.integers(185, 250, size=3).astype(np.float32), rng.integers(150, 235, size=3).astype(np.float32)
    yy = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(bg_top * (1 - yy) + bg_bot * yy, (H, W, 3)).copy()
    parsing = np.zeros((H, W), np.uint8)
    dp = np.zeros((H, W), np.uint8)
    size = (H, W)
    hx, hy, hrx, hry = body.head
    long_hair = bool(rng.random() < 0.35)

    # hair behind the head
    hair_back = _ellipse_mask(size, hx, hy - hry * 0.15, hrx * 1.25, hry * 1.2)
    if long_hair:
        hair_back |= _poly_mask(size, [[(hx - hrx * 1.25, hy), (hx + hrx * 1.25, hy),
                                         (hx + hrx * 1.4, hy + hry * 2.4), (hx - hrx * 1.4, hy + hry * 2.4)]])
    _paint(img, parsing, hair_back, Label.HAIR, hair_c)

    # body: legs, feet, torso skin, arms, neck (DensePose follows the body, not the clothes)
    shade = skin * 0.93
    for side, lab, shoe_lab, dpu, dpl, dpf, ank, toe in (
            ("left", Label.LEFT_LEG, Label.LEFT_SHOE, Part.LEFT_UPPER_LEG_FRONT, Part.LEFT_LOWER_LEG_FRONT,
             Part.LEFT_FOOT, Joint.L_ANKLE, Joint.L_BIG_TOE),
            ("right", Label.RIGHT_LEG, Label.RIGHT_SHOE, Part.RIGHT_UPPER_LEG_FRONT, Part.RIGHT_LOWER_LEG_FRONT,
             Part.RIGHT_FOOT, Joint.R_ANKLE, Joint.R_BIG_TOE)):
        pl = _leg_polyline(k, side)
        upper = _line_mask(size, pl[:2], body.leg_w)
        lower = _line_mask(size, pl[1:], body.leg_w * 0.8)
        _paint(img, parsing, upper | lower, lab, shade)
        dp[lower] = dpl; dp[upper] = dpu
        ax, ay = k[ank, :2]; tx, ty = k[toe, :2]
        foot = _ellipse_mask(size, (ax + tx) / 2, (ay + ty) / 2 + 0.005 * H, body.leg_w * 0.5, 0.03 * H)
        dp[foot] = dpf
        body_shoe = (shoe_lab, foot)
        if side == "left":
            lshoe = body_shoe
        else:
            rshoe = body_shoe
    torso_m = _poly_mask(size, [body.torso])
    _paint(img, parsing, torso_m, Label.NECK, skin)
    dp[torso_m] = Part.TORSO_FRONT
    arms = {}
    for side, lab, dpu, dpl, dph, (_, elb, wri) in (
            ("left", Label.LEFT_ARM, Part.LEFT_UPPER_ARM_INNER, Part.LEFT_LOWER_ARM_INNER, Part.LEFT_HAND,
             LEFT_ARM_JOINTS),
            ("right", Label.RIGHT_ARM, Part.RIGHT_UPPER_ARM_INNER, Part.RIGHT_LOWER_ARM_INNER, Part.RIGHT_HAND,
             RIGHT_ARM_JOINTS)):
        pl = _arm_polyline(k, side)
        ua = _line_mask(size, pl[:2], body.arm_w)
        la = _line_mask(size, pl[1:], body.arm_w * 0.85)
        wx, wy = k[wri, :2]
        d = _unit(k[wri, :2].astype(np.float64) - k[elb, :2].astype(np.float64))
        hand = _ellipse_mask(size, wx + d[0] * body.arm_w * 0.6, wy + d[1] * body.arm_w * 0.6,
                             body.arm_w * 0.55, body.arm_w * 0.7)
        arms[side] = (ua | la | hand, lab)
        dp[la] = dpl; dp[ua] = dpu; dp[hand] = dph
    nx, ny = k[Joint.NECK, :2]
    neck = _poly_mask(size, [[(hx - hrx * 0.45, hy + hry * 0.6), (hx + hrx * 0.45, hy + hry * 0.6),
                              (nx + hrx * 0.55, ny + 0.02 * H), (nx - hrx * 0.55, ny + 0.02 * H)]])
    _paint(img, parsing, neck, Label.NECK, shade)
    dp[neck] = Part.TORSO_FRONT
    for side in ("right", "left"):
        m, lab = arms[side]
        _paint(img, parsing, m, lab, skin)

    # garments: the worn catalogue garment plus a plain companion garment
    tucked = False
    layers: list[tuple[Garment, dict[int, int]]] = []
    if worn.category == "upper":
        tucked = bool(rng.random() < 0.4)
        comp = _companion(rng, "lower", str(rng.choice(["trousers", "skirt"])), H, W)
        layers = [(worn, PERSON_LABELS["upper"]), (comp, PERSON_LABELS["lower"])]
        if not tucked:
            layers.reverse()
        categories = ["upper", "lower"]
    elif worn.category == "lower":
        tucked = bool(rng.random() < 0.5)
        comp = _companion(rng, "upper", str(rng.choice(["short", "long", "none"])), H, W)
        layers = [(comp, PERSON_LABELS["upper"]), (worn, PERSON_LABELS["lower"])]
        if not tucked:
            layers.reverse()
        categories = ["lower", "upper"]
    else:
        layers = [(worn, PERSON_LABELS["dresses"])]
        categories = ["dresses"]
    for g, labels in layers:
        frames = _person_frames(g, body, H, W, tucked)
        rgb, part = _warp_garment(g, frames, H, W)
        for p, lab in labels.items():
            m = part == p
            _paint(img, parsing, m, lab, rgb)

    # feet and shoes on top of long trousers
    for lab, foot in (lshoe, rshoe):
        _paint(img, parsing, foot, lab, shoe_c)

    # head: face (with eyes and mouth), hair on top, long hair over the shoulders
    face = _ellipse_mask(size, hx, hy, hrx, hry)
    _paint(img, parsing, face, Label.FACE, skin)
    dp[face] = Part.HEAD_RIGHT
    for ei in (Joint.L_EYE, Joint.R_EYE):
        ex, ey = k[ei, :2]
        if ex > 0:
            img[_ellipse_mask(size, ex, ey, max(1.0, 0.012 * W), max(1.0, 0.006 * H))] = (40, 30, 30)
    img[_ellipse_mask(size, hx, hy + hry * 0.55, hrx * 0.3, max(1.0, hry * 0.07))] = (150, 60, 60)
    fringe = _ellipse_mask(size, hx, hy - hry * 0.75, hrx * 1.08, hry * 0.45) & ~_ellipse_mask(
        size, hx, hy + hry * 0.1, hrx * 0.95, hry * 0.8)
    fringe |= _ellipse_mask(size, hx, hy - hry * 0.95, hrx * 0.9, hry * 0.3)
    _paint(img, parsing, fringe, Label.HAIR, hair_c)
    if long_hair:
        for sgn in (-1, 1):
            strand = _poly_mask(size, [[(hx + sgn * hrx * 0.8, hy - hry * 0.3), (hx + sgn * hrx * 1.3, hy - hry * 0.3),
                                        (hx + sgn * hrx * 1.6, hy + hry * 2.6), (hx + sgn * hrx * 0.95, hy + hry * 2.4)]])
            _paint(img, parsing, strand, Label.HAIR, hair_c)

    # soft global lighting + sensor noise on the photo only
    xx = np.linspace(-1, 1, W, dtype=np.float32)[None, :, None]
    img = img * (1.0 + 0.05 * xx * float(rng.uniform(-1, 1)))
    img = img + rng.normal(0, 2.0, size=img.shape).astype(np.float32)
    image = np.clip(img, 0, 255).astype(np.uint8)
    return Person(person_id, image, parsing, dp, k, worn, categories,
                  {"tucked": tucked, "long_hair": long_hair})


# ---- writer ---------------------------------------------------------------------------------
def _save_png(arr: np.ndarray, path: Path) -> None:
    mode = "L" if arr.ndim == 2 else "RGB"
    Image.fromarray(arr, mode=mode).save(path, format="PNG", optimize=False)


def openpose_json(k: np.ndarray) -> dict[str, Any]:
    return {"version": 1.3, "people": [{"person_id": [-1],
                                        "pose_keypoints_2d": [round(float(v), 3) for v in k.reshape(-1)]}]}


def make_catalogue(out_dir: str | Path, n_garments: int = 12, n_persons: int = 12,
                   height: int = 512, width: int = 384, seed: int = 0) -> dict[str, Any]:
    """Write a synthetic paired catalogue under ``out_dir``; returns the paths written.

    Returns ``{"root", "garments_csv", "persons_csv", "meta", "garments": [...], "persons": [...]}``
    where the lists hold every file written (absolute paths). The same arguments always give
    byte-identical files.
    """
    if height < 32 or width < 24:
        raise ValueError(f"image size {height}x{width} is too small (minimum 32x24)")
    if n_garments < 1 or n_persons < 0:
        raise ValueError("n_garments must be >= 1 and n_persons >= 0")
    out = Path(out_dir)
    (out / "garments").mkdir(parents=True, exist_ok=True)
    (out / "persons").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    H, W = int(height), int(width)

    # categories cycle so that every kind appears: upper long/short/none, lower ×3, dresses ×3
    kinds = [(c, s) for c in CATEGORIES for s in STYLES[c]]
    order = [kinds[i] for i in rng.permutation(len(kinds))]
    garments: list[Garment] = []
    files_g: list[str] = []
    rows_g = []
    meta: dict[str, Any] = {"version": VERSION, "seed": seed, "height": H, "width": W,
                            "garments": {}, "persons": {}}
    for i in range(n_garments):
        cat, style = order[i % len(order)]
        tex = TEXTURES[int(rng.integers(len(TEXTURES)))] if i >= len(TEXTURES) else TEXTURES[i]
        gid = f"g{i:04d}"
        g = make_garment(rng, gid, cat, style, tex, H, W)
        garments.append(g)
        paths = {"image": f"garments/{gid}.png", "mask": f"garments/{gid}_mask.png",
                 "parts": f"garments/{gid}_parts.png"}
        _save_png(g.image, out / paths["image"])
        _save_png(g.mask, out / paths["mask"])
        _save_png(g.parts, out / paths["parts"])
        files_g += [str(out / p) for p in paths.values()]
        rows_g.append({"garment_id": gid, "image": paths["image"], "category": cat,
                       "mask": paths["mask"], "parts": paths["parts"]})
        meta["garments"][gid] = {"category": cat, "style": style, "texture": tex}

    files_p: list[str] = []
    rows_p = []
    for j in range(n_persons):
        g = garments[j % len(garments)]
        pid = f"p{j:04d}"
        p = make_person(rng, pid, g, H, W)
        paths = {"image": f"persons/{pid}.png", "parsing": f"persons/{pid}_parsing.png",
                 "densepose": f"persons/{pid}_densepose.png", "keypoints": f"persons/{pid}_keypoints.json"}
        _save_png(p.image, out / paths["image"])
        _save_png(p.parsing, out / paths["parsing"])
        _save_png(p.densepose, out / paths["densepose"])
        (out / paths["keypoints"]).write_text(json.dumps(openpose_json(p.keypoints)))
        files_p += [str(out / q) for q in paths.values()]
        rows_p.append({"person_id": pid, "image": paths["image"], "categories": ";".join(p.categories),
                       "keypoints": paths["keypoints"], "parsing": paths["parsing"],
                       "densepose": paths["densepose"], "worn_garment_id": g.garment_id})
        meta["persons"][pid] = {"worn_garment_id": g.garment_id, **p.attrs}

    gcsv, pcsv = out / "garments.csv", out / "persons.csv"
    with gcsv.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["garment_id", "image", "category", "mask", "parts"])
        w.writeheader(); w.writerows(rows_g)
    with pcsv.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["person_id", "image", "categories", "keypoints", "parsing",
                                          "densepose", "worn_garment_id"])
        w.writeheader(); w.writerows(rows_p)
    (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return {"root": str(out), "garments_csv": str(gcsv), "persons_csv": str(pcsv),
            "meta": str(out / "meta.json"), "garments": files_g, "persons": files_p}


def make_training_shards(out_dir: str | Path, n_garments: int = 9, n_persons: int = 9, seed: int = 0,
                         resolution: int = 512) -> dict[str, Any]:
    """A synthetic catalogue under ``out_dir/catalogue`` preprocessed into ``out_dir/shards``.

    Convenience for tests, demos and benchmarks (runs the Beam preprocessing in-process).
    Returns ``{"catalogue": ..., "shards": ..., "manifest": {...}}``; reuses finished shards.
    """
    from pipelines.preprocess.beam_pipeline import PipelineSpec, run_pipeline
    from pipelines.preprocess.readers import read_manifest

    out = Path(out_dir)
    cat, shards = out / "catalogue", out / "shards"
    if (shards / "manifest.json").is_file():
        return {"catalogue": str(cat), "shards": str(shards),
                "manifest": json.loads((shards / "manifest.json").read_text())}
    from gpvton_core.conditions.resize import working_size

    h, w = working_size(resolution)
    make_catalogue(cat, n_garments, n_persons, h, w, seed)
    manifest = run_pipeline(PipelineSpec(items=read_manifest(str(cat)), output=str(shards), resolution=resolution))
    return {"catalogue": str(cat), "shards": str(shards), "manifest": manifest}


def upper_training_batch(root: str | Path, variant: str = "vitonhd", n: int = 2,
                         pc_ratio: float = 1.0) -> dict:
    """A collated training batch of the first ``n`` paired upper-garment persons of a catalogue.

    Reads the plain-manifest files directly (no shards): for loss and benchmark checks that need
    real-looking training samples without running the preprocessing stage.
    """
    from gpvton_core.training import batch as B

    root = Path(root)
    with open(root / "garments.csv", newline="") as fh:
        garments = {r["garment_id"]: r for r in csv.DictReader(fh)}
    with open(root / "persons.csv", newline="") as fh:
        persons = list(csv.DictReader(fh))

    def img(path: str) -> np.ndarray:
        return np.asarray(Image.open(root / path))

    out = []
    for r in persons:
        g = garments[r["worn_garment_id"]]
        if g["category"] != "upper":
            continue
        kp = json.loads((root / r["keypoints"]).read_text())["people"][0]["pose_keypoints_2d"]
        person = {"person_id": r["person_id"], "image": img(r["image"]), "parsing": img(r["parsing"]),
                  "densepose": img(r["densepose"]), "keypoints": np.asarray(kp, np.float32), "pc_ratio": pc_ratio}
        garment = {"garment_id": g["garment_id"], "category": "upper", "image": img(g["image"]),
                   "mask": img(g["mask"]), "parts": img(g["parts"])}
        out.append(B.make_sample(person, garment, variant))
        if len(out) == n:
            break
    return B.collate(out)
