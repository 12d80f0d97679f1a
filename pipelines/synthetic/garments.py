"""Flat garments of the procedural catalogue: the product photo on white, cut into pieces (sleeves,
torso / bodice, skirt, trouser legs), with its exact mask and part labels (0 background, 1 left,
2 middle, 3 right; left = the wearer's left = the image right).

Each piece keeps its frame quad in the flat image, so :mod:`.dressing` can map it onto a body.
The random draws happen in a fixed order: the same generator state gives the same garment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gpvton_core.conditions.labels import PART_LEFT, PART_MIDDLE, PART_RIGHT
from pipelines.synthetic.raster import Point, ellipse_mask, poly_mask
from pipelines.synthetic.textures import make_texture

STYLES = {
    "upper": ("long", "short", "none"),
    "lower": ("trousers", "shorts", "skirt"),
    "dresses": ("long", "short", "none"),
}

#: an ellipse cut out of a piece (the neckline): (cx, cy, rx, ry)
Ellipse = tuple[float, float, float, float]


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


@dataclass
class _Cutting:
    """The pieces of a garment being cut, with the shapes that fill them and its proportions."""

    pieces: list[Piece] = field(default_factory=list)
    shapes: list[tuple[int, list[list[Point]], list[Ellipse]]] = field(default_factory=list)
    params: dict[str, float] = field(default_factory=dict)

    def add(self, piece: Piece, polys: list[list[Point]], cuts: list[Ellipse] | None = None) -> None:
        self.pieces.append(piece)
        self.shapes.append((len(self.pieces) - 1, polys, cuts or []))


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


def _cut_sleeves(rng: np.random.Generator, cut: _Cutting, category: str, style: str, cx: float,
                 hw_t: float, y_t: float, y_b: float, H: int, W: int) -> None:
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
    cut.add(Piece("sleeve_l", PART_LEFT, ql), [ql])
    cut.add(Piece("sleeve_r", PART_RIGHT, qr), [qr])
    cut.params.update(sleeve_length=length / max(ref, 1.0), armhole=armhole / H, cuff=cuff / W, body_h=body_h / H)


def _cut_dress_body(rng: np.random.Generator, cut: _Cutting, cx: float, hw_t: float, y_t: float, y_b: float,
                    neckline: list[Ellipse], H: int) -> None:
    """A dress below the shoulders: a bodice down to the waist, then a flared skirt."""
    y_w = y_t + float(rng.uniform(0.30, 0.36)) * H
    hw_w = hw_t * float(rng.uniform(0.8, 0.95))
    hw_h = hw_t * float(rng.uniform(1.1, 1.6))
    bod = [(cx - hw_t, y_t), (cx + hw_t, y_t), (cx + hw_w, y_w), (cx - hw_w, y_w)]
    sk = [(cx - hw_w, y_w), (cx + hw_w, y_w), (cx + hw_h, y_b), (cx - hw_h, y_b)]
    cut.add(Piece("bodice", PART_MIDDLE, bod), [bod], neckline)
    cut.add(Piece("skirt", PART_MIDDLE, sk), [sk])
    cut.params.update(length=(y_b - y_t) / H, waist=(y_w - y_t) / max(y_b - y_t, 1.0))


def _cut_top(rng: np.random.Generator, cut: _Cutting, category: str, style: str, cx: float,
             H: int, W: int) -> None:
    """An ``upper`` garment or a dress: sleeves (unless sleeveless), then the torso or bodice + skirt."""
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
    neckline = [(cx, y_t, neck_rx, neck_ry)]
    if style != "none":
        _cut_sleeves(rng, cut, category, style, cx, hw_t, y_t, y_b, H, W)
    if category == "upper":
        quad = [(cx - hw_t, y_t), (cx + hw_t, y_t), (cx + hw_b, y_b), (cx - hw_b, y_b)]
        cut.add(Piece("torso", PART_MIDDLE, quad), [quad], neckline)
        cut.params.update(length=(y_b - y_t) / H)
    else:
        _cut_dress_body(rng, cut, cx, hw_t, y_t, y_b, neckline, H)


def _cut_lower(rng: np.random.Generator, cut: _Cutting, style: str, cx: float, H: int, W: int) -> None:
    """A skirt (one middle piece) or trousers / shorts (two legs joined at the crotch)."""
    y_w = float(rng.uniform(0.06, 0.12)) * H
    hw = float(rng.uniform(0.17, 0.22)) * W
    if style == "skirt":
        y_h = y_w + float(rng.uniform(0.40, 0.75)) * H
        hw_h = hw * float(rng.uniform(1.05, 1.6))
        sk = [(cx - hw, y_w), (cx + hw, y_w), (cx + hw_h, y_h), (cx - hw_h, y_h)]
        cut.add(Piece("skirt", PART_MIDDLE, sk), [sk])
        cut.params.update(length=(y_h - y_w) / H)
        return
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
    cut.add(Piece("leg_l", PART_LEFT, ql), [crotch_l])
    cut.add(Piece("leg_r", PART_RIGHT, qr), [crotch_r])
    cut.params.update(length=(y_h - y_w) / H)


def _rasterise(cut: _Cutting, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """(piece map: 0 background, i+1 = piece i; part labels 0..3) of the cut pieces."""
    piece_map = np.zeros((H, W), np.uint8)
    for idx, polys, cuts in cut.shapes:
        m = poly_mask((H, W), polys)
        for (ex, ey, rx, ry) in cuts:
            m &= ~ellipse_mask((H, W), ex, ey, rx, ry)
        piece_map[m] = idx + 1
    parts = np.zeros((H, W), np.uint8)
    for i, p in enumerate(cut.pieces):
        parts[piece_map == i + 1] = p.part
    return piece_map, parts


def _product_photo(tex: np.ndarray, parts: np.ndarray, piece_map: np.ndarray) -> np.ndarray:
    """The textured garment on white, with thin seams between pieces so the parts show."""
    H, W = parts.shape
    img = np.full((H, W, 3), 255.0, np.float32)
    img[parts > 0] = tex[parts > 0]
    edges = np.zeros((H, W), bool)
    edges[:, 1:] |= (piece_map[:, 1:] != piece_map[:, :-1]) & (piece_map[:, 1:] > 0) & (piece_map[:, :-1] > 0)
    edges[1:, :] |= (piece_map[1:, :] != piece_map[:-1, :]) & (piece_map[1:, :] > 0) & (piece_map[:-1, :] > 0)
    img[edges] *= 0.8
    return np.clip(img, 0, 255).astype(np.uint8)


def make_garment(rng: np.random.Generator, garment_id: str, category: str, style: str,
                 texture: str, height: int, width: int) -> Garment:
    """A flat garment of ``category`` / ``style`` with a ``texture``, drawn from ``rng``."""
    H, W = height, width
    cx = W / 2.0 + float(rng.uniform(-0.02, 0.02)) * W
    cut = _Cutting()
    if category in ("upper", "dresses"):
        _cut_top(rng, cut, category, style, cx, H, W)
    elif category == "lower":
        _cut_lower(rng, cut, style, cx, H, W)
    else:
        raise ValueError(f"unknown category {category!r}")
    piece_map, parts = _rasterise(cut, H, W)
    tex = make_texture(rng, texture, H, W)
    return Garment(garment_id, category, style, texture, H, W, _product_photo(tex, parts, piece_map),
                   parts, piece_map, tex, cut.pieces, cut.params)
