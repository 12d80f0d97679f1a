"""Procedural model photos: a frontal person drawn from jittered BODY_25 keypoints (skin, hair,
face, background) wearing a catalogue garment, with the exact 29-label GP-VTON parsing
(GPVTON.md §8.1) and a DensePose-style part index map (0..24).

Drawing is back to front — hair behind the head, legs, torso and arms, the garments (the worn one
plus a plain companion), shoes, then the head — and every stroke sets the photo and the parsing
together, so a label is exactly what the photo shows. DensePose follows the body, not the clothes.
The random draws happen in a fixed order: the same generator state gives the same person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gpvton_core.conditions.labels import LEFT_ARM_JOINTS, RIGHT_ARM_JOINTS, Joint, Label, Part
from pipelines.synthetic.body import Body, arm_polyline, body_geometry, leg_polyline, make_skeleton
from pipelines.synthetic.dressing import PERSON_LABELS, person_frames, warp_garment
from pipelines.synthetic.garments import Garment, make_garment
from pipelines.synthetic.raster import ellipse_mask, line_mask, poly_mask, unit

SKIN_TONES = [(236, 200, 170), (224, 172, 138), (198, 140, 100), (160, 110, 75), (110, 75, 50),
              (241, 212, 190)]
HAIR_COLOURS = [(30, 22, 18), (70, 45, 25), (120, 80, 40), (200, 170, 110), (40, 40, 40),
                (150, 60, 30)]


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


@dataclass
class _Canvas:
    """The photo being drawn (float RGB) with its parsing and DensePose maps."""

    img: np.ndarray
    parsing: np.ndarray
    dp: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return self.parsing.shape  # type: ignore[return-value]

    def paint(self, region: np.ndarray, label: int, colour: np.ndarray | tuple[int, int, int]) -> None:
        """Colour ``region`` (one colour, or the same pixels of an image) and label it."""
        self.parsing[region] = label
        self.img[region] = colour if not isinstance(colour, np.ndarray) or colour.ndim == 1 else colour[region]


@dataclass
class _Looks:
    skin: np.ndarray
    hair: np.ndarray
    shoes: np.ndarray
    long_hair: bool = False


def _looks_and_backdrop(rng: np.random.Generator, H: int, W: int) -> tuple[_Looks, _Canvas]:
    """Skin, hair and shoe colours, and a canvas with a vertical studio gradient."""
    skin = np.asarray(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], np.float32)
    hair_c = np.asarray(HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))], np.float32)
    shoe_c = rng.integers(10, 90, size=3).astype(np.float32)
    bg_top, bg_bot = rng.integers(185, 250, size=3).astype(np.float32), rng.integers(150, 235, size=3).astype(np.float32)
    yy = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(bg_top * (1 - yy) + bg_bot * yy, (H, W, 3)).copy()
    canvas = _Canvas(img, np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8))
    return _Looks(skin, hair_c, shoe_c), canvas


def _draw_hair_behind(c: _Canvas, body: Body, looks: _Looks) -> None:
    hx, hy, hrx, hry = body.head
    hair_back = ellipse_mask(c.size, hx, hy - hry * 0.15, hrx * 1.25, hry * 1.2)
    if looks.long_hair:
        hair_back |= poly_mask(c.size, [[(hx - hrx * 1.25, hy), (hx + hrx * 1.25, hy),
                                         (hx + hrx * 1.4, hy + hry * 2.4), (hx - hrx * 1.4, hy + hry * 2.4)]])
    c.paint(hair_back, Label.HAIR, looks.hair)


def _draw_legs(c: _Canvas, body: Body, shade: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Both legs with their DensePose parts; returns the (shoe label, foot mask) of left and right
    (the shoes are drawn later, over long trousers)."""
    k, H = body.k, c.size[0]
    shoes = []
    for side, lab, shoe_lab, dpu, dpl, dpf, ank, toe in (
            ("left", Label.LEFT_LEG, Label.LEFT_SHOE, Part.LEFT_UPPER_LEG_FRONT, Part.LEFT_LOWER_LEG_FRONT,
             Part.LEFT_FOOT, Joint.L_ANKLE, Joint.L_BIG_TOE),
            ("right", Label.RIGHT_LEG, Label.RIGHT_SHOE, Part.RIGHT_UPPER_LEG_FRONT, Part.RIGHT_LOWER_LEG_FRONT,
             Part.RIGHT_FOOT, Joint.R_ANKLE, Joint.R_BIG_TOE)):
        pl = leg_polyline(k, side)
        upper = line_mask(c.size, pl[:2], body.leg_w)
        lower = line_mask(c.size, pl[1:], body.leg_w * 0.8)
        c.paint(upper | lower, lab, shade)
        c.dp[lower] = dpl; c.dp[upper] = dpu
        ax, ay = k[ank, :2]; tx, ty = k[toe, :2]
        foot = ellipse_mask(c.size, (ax + tx) / 2, (ay + ty) / 2 + 0.005 * H, body.leg_w * 0.5, 0.03 * H)
        c.dp[foot] = dpf
        shoes.append((shoe_lab, foot))
    return shoes


def _draw_torso_neck_arms(c: _Canvas, body: Body, skin: np.ndarray, shade: np.ndarray) -> None:
    """Torso skin, then the neck, then the arms (hands included) over them."""
    k, H = body.k, c.size[0]
    torso_m = poly_mask(c.size, [body.torso])
    c.paint(torso_m, Label.NECK, skin)
    c.dp[torso_m] = Part.TORSO_FRONT
    arms = {}
    for side, lab, dpu, dpl, dph, (_, elb, wri) in (
            ("left", Label.LEFT_ARM, Part.LEFT_UPPER_ARM_INNER, Part.LEFT_LOWER_ARM_INNER, Part.LEFT_HAND,
             LEFT_ARM_JOINTS),
            ("right", Label.RIGHT_ARM, Part.RIGHT_UPPER_ARM_INNER, Part.RIGHT_LOWER_ARM_INNER, Part.RIGHT_HAND,
             RIGHT_ARM_JOINTS)):
        pl = arm_polyline(k, side)
        ua = line_mask(c.size, pl[:2], body.arm_w)
        la = line_mask(c.size, pl[1:], body.arm_w * 0.85)
        wx, wy = k[wri, :2]
        d = unit(k[wri, :2].astype(np.float64) - k[elb, :2].astype(np.float64))
        hand = ellipse_mask(c.size, wx + d[0] * body.arm_w * 0.6, wy + d[1] * body.arm_w * 0.6,
                            body.arm_w * 0.55, body.arm_w * 0.7)
        arms[side] = (ua | la | hand, lab)
        c.dp[la] = dpl; c.dp[ua] = dpu; c.dp[hand] = dph
    hx, hy, hrx, hry = body.head
    nx, ny = k[Joint.NECK, :2]
    neck = poly_mask(c.size, [[(hx - hrx * 0.45, hy + hry * 0.6), (hx + hrx * 0.45, hy + hry * 0.6),
                               (nx + hrx * 0.55, ny + 0.02 * H), (nx - hrx * 0.55, ny + 0.02 * H)]])
    c.paint(neck, Label.NECK, shade)
    c.dp[neck] = Part.TORSO_FRONT
    for side in ("right", "left"):
        m, lab = arms[side]
        c.paint(m, lab, skin)


def _outfit(rng: np.random.Generator, worn: Garment, H: int, W: int
            ) -> tuple[list[tuple[Garment, dict[int, int]]], list[str], bool]:
    """(garment layers bottom to top with their parsing labels, the photo's categories, tucked):
    the worn garment plus a plain companion garment (a dress comes alone)."""
    if worn.category == "upper":
        tucked = bool(rng.random() < 0.4)
        comp = make_garment(rng, "companion", "lower", str(rng.choice(["trousers", "skirt"])), "solid", H, W)
        layers = [(worn, PERSON_LABELS["upper"]), (comp, PERSON_LABELS["lower"])]
        categories = ["upper", "lower"]
    elif worn.category == "lower":
        tucked = bool(rng.random() < 0.5)
        comp = make_garment(rng, "companion", "upper", str(rng.choice(["short", "long", "none"])), "solid", H, W)
        layers = [(comp, PERSON_LABELS["upper"]), (worn, PERSON_LABELS["lower"])]
        categories = ["lower", "upper"]
    else:
        return [(worn, PERSON_LABELS["dresses"])], ["dresses"], False
    if not tucked:
        layers.reverse()
    return layers, categories, tucked


def _dress(c: _Canvas, body: Body, layers: list[tuple[Garment, dict[int, int]]], tucked: bool) -> None:
    H, W = c.size
    for g, labels in layers:
        frames = person_frames(g, body, H, W, tucked)
        rgb, part = warp_garment(g, frames, H, W)
        for p, lab in labels.items():
            c.paint(part == p, lab, rgb)


def _draw_head(c: _Canvas, body: Body, looks: _Looks) -> None:
    """Face (with eyes and mouth), hair on top, long hair over the shoulders."""
    k = body.k
    H, W = c.size
    hx, hy, hrx, hry = body.head
    face = ellipse_mask(c.size, hx, hy, hrx, hry)
    c.paint(face, Label.FACE, looks.skin)
    c.dp[face] = Part.HEAD_RIGHT
    for ei in (Joint.L_EYE, Joint.R_EYE):
        ex, ey = k[ei, :2]
        if ex > 0:
            c.img[ellipse_mask(c.size, ex, ey, max(1.0, 0.012 * W), max(1.0, 0.006 * H))] = (40, 30, 30)
    c.img[ellipse_mask(c.size, hx, hy + hry * 0.55, hrx * 0.3, max(1.0, hry * 0.07))] = (150, 60, 60)
    fringe = ellipse_mask(c.size, hx, hy - hry * 0.75, hrx * 1.08, hry * 0.45) & ~ellipse_mask(
        c.size, hx, hy + hry * 0.1, hrx * 0.95, hry * 0.8)
    fringe |= ellipse_mask(c.size, hx, hy - hry * 0.95, hrx * 0.9, hry * 0.3)
    c.paint(fringe, Label.HAIR, looks.hair)
    if looks.long_hair:
        for sgn in (-1, 1):
            strand = poly_mask(c.size, [[(hx + sgn * hrx * 0.8, hy - hry * 0.3), (hx + sgn * hrx * 1.3, hy - hry * 0.3),
                                         (hx + sgn * hrx * 1.6, hy + hry * 2.6), (hx + sgn * hrx * 0.95, hy + hry * 2.4)]])
            c.paint(strand, Label.HAIR, looks.hair)


def _photograph(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Soft global lighting + sensor noise, on the photo only (the labels stay exact)."""
    W = img.shape[1]
    xx = np.linspace(-1, 1, W, dtype=np.float32)[None, :, None]
    img = img * (1.0 + 0.05 * xx * float(rng.uniform(-1, 1)))
    img = img + rng.normal(0, 2.0, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_person(rng: np.random.Generator, person_id: str, worn: Garment, height: int, width: int) -> Person:
    """A model photo of a person wearing ``worn``, with its exact labels, drawn from ``rng``."""
    H, W = height, width
    k = make_skeleton(rng, H, W)
    body = body_geometry(k, H, W, rng)
    looks, c = _looks_and_backdrop(rng, H, W)
    looks.long_hair = bool(rng.random() < 0.35)
    _draw_hair_behind(c, body, looks)
    shade = looks.skin * 0.93
    shoes = _draw_legs(c, body, shade)
    _draw_torso_neck_arms(c, body, looks.skin, shade)
    layers, categories, tucked = _outfit(rng, worn, H, W)
    _dress(c, body, layers, tucked)
    for lab, foot in shoes:   # feet and shoes on top of long trousers
        c.paint(foot, lab, looks.shoes)
    _draw_head(c, body, looks)
    image = _photograph(rng, c.img)
    return Person(person_id, image, c.parsing, c.dp, k, worn, categories,
                  {"tucked": tucked, "long_hair": looks.long_hair})
