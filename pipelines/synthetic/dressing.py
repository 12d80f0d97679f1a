"""A flat garment put on a procedural body: one perspective transform per garment piece (sleeves,
torso / bodice, skirt, trouser legs), so that the visible garment on the person is the flat
garment warped — every (person, worn garment) pair is a true training pair.

The labels come from ``gpvton_core.conditions.labels``, the vocabulary the derivation reads, so the
catalogue's exact annotations cannot drift from what preprocess and render expect.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from gpvton_core.conditions.labels import CATEGORIES, GARMENT_PARTS, PART_MIDDLE, WORN_PART_LABELS, Joint
from pipelines.synthetic.body import Body
from pipelines.synthetic.garments import Garment
from pipelines.synthetic.raster import Point, homography, poly_mask, unit

#: person parsing label of each garment part, per category (person side of §8.6/§8.7)
PERSON_LABELS = {c: dict(zip(GARMENT_PARTS, WORN_PART_LABELS[c])) for c in CATEGORIES}


class _Landmarks:
    """The skeleton points every piece frame is placed by (float64, image pixels)."""

    def __init__(self, b: Body, H: int) -> None:
        k = b.k
        self.k = k
        self.rs, self.ls = k[Joint.R_SHOULDER, :2].astype(np.float64), k[Joint.L_SHOULDER, :2].astype(np.float64)
        self.rh, self.lh = k[Joint.R_HIP, :2].astype(np.float64), k[Joint.L_HIP, :2].astype(np.float64)
        self.mid = (self.rh + self.lh) / 2
        self.sh_w = float(np.linalg.norm(self.ls - self.rs))
        self.up = np.array([0.0, -0.012 * H])
        self.out = b.arm_w * 0.35
        self.ank_y = float((k[Joint.L_ANKLE, 1] + k[Joint.R_ANKLE, 1]) / 2)


def _sleeve_frame(g: Garment, b: Body, lm: _Landmarks, left: bool, H: int) -> list[Point]:
    S = lm.ls if left else lm.rs
    Wr = (lm.k[Joint.L_WRIST, :2] if left else lm.k[Joint.R_WRIST, :2]).astype(np.float64)
    u = unit(Wr - S)
    m = np.array([u[1], -u[0]]) if left else np.array([-u[1], u[0]])  # outward normal
    if m[0] * (1 if left else -1) < 0:
        m = -m
    arm_len = float(np.linalg.norm(Wr - S)) + b.arm_w * 0.5
    L = g.params.get("sleeve_length", 0.6) / 0.67 * arm_len
    half0 = b.arm_w * 0.85
    half1 = b.arm_w * (0.75 if L > 0.6 * arm_len else 0.8)
    top = S + lm.up - u * 0.02 * H
    return [tuple(top + m * half0), tuple(S + u * L + m * half1),
            tuple(S + u * L - m * half1), tuple(S - m * half0 + u * half0 * 1.4)]


def _torso_frame(g: Garment, b: Body, lm: _Landmarks) -> list[Point]:
    ratio = g.params["length"] / 0.41   # flat length range 0.36–0.46 H ↔ hem around the hips
    y_b = lm.rs[1] + (lm.mid[1] - lm.rs[1]) * (1.08 * ratio)
    hx = (lm.lh[0] - lm.rh[0]) / 2 + b.leg_w * 0.55
    return [tuple(lm.rs + lm.up + [-lm.out, 0]), tuple(lm.ls + lm.up + [lm.out, 0]),
            (float(lm.mid[0] + hx * 1.05), float(y_b)), (float(lm.mid[0] - hx * 1.05), float(y_b))]


def _bodice_frame(lm: _Landmarks) -> list[Point]:
    y_w = lm.rs[1] + (lm.mid[1] - lm.rs[1]) * 0.72
    hx = lm.sh_w / 2 * 0.78
    return [tuple(lm.rs + lm.up + [-lm.out, 0]), tuple(lm.ls + lm.up + [lm.out, 0]),
            (float(lm.mid[0] + hx), float(y_w)), (float(lm.mid[0] - hx), float(y_w))]


def _skirt_frame(g: Garment, b: Body, lm: _Landmarks, H: int) -> list[Point]:
    """A dress skirt from the waist below the bodice, a lower-garment skirt from the hips."""
    if g.category == "dresses":
        y_w = lm.rs[1] + (lm.mid[1] - lm.rs[1]) * 0.72
        hx_w = lm.sh_w / 2 * 0.78
        frac = g.params["length"] * (1 - g.params["waist"])
        y_h = y_w + (lm.ank_y - y_w) * min(1.0, frac / 0.58)
    else:
        y_w = lm.mid[1] - 0.05 * H
        hx_w = (lm.lh[0] - lm.rh[0]) / 2 + b.leg_w * 0.55
        y_h = y_w + (lm.ank_y - y_w) * min(1.0, g.params["length"] / 0.8)
    flare = 1.25 + 0.35 * (y_h - y_w) / max(lm.ank_y - y_w, 1.0)
    mx = lm.mid[0]
    return [(float(mx - hx_w), float(y_w)), (float(mx + hx_w), float(y_w)),
            (float(mx + hx_w * flare), float(y_h)), (float(mx - hx_w * flare), float(y_h))]


def _leg_frame(g: Garment, b: Body, lm: _Landmarks, left: bool, H: int, tucked: bool) -> list[Point]:
    hip = lm.lh if left else lm.rh
    ank = (lm.k[Joint.L_ANKLE, :2] if left else lm.k[Joint.R_ANKLE, :2]).astype(np.float64)
    y_w = float(lm.mid[1] - 0.05 * H - (0.03 * H if tucked else 0.0))
    frac = min(1.0, g.params["length"] / 0.8)
    hem = hip + (ank + [0, 0.015 * H] - hip) * frac
    sgn = 1.0 if left else -1.0
    hw = b.leg_w * 0.62
    return [(float(lm.mid[0]), y_w), (float(hip[0] + sgn * b.leg_w * 0.62), y_w),
            (float(hem[0] + sgn * hw), float(hem[1])), (float(hem[0] - sgn * hw), float(hem[1]))]


def person_frames(g: Garment, b: Body, H: int, W: int, tucked: bool) -> list[list[Point]]:
    """Person-space frame of every garment piece (same corner order as the flat frames)."""
    lm = _Landmarks(b, H)
    frames: list[list[Point]] = []
    for p in g.pieces:
        if p.name in ("sleeve_l", "sleeve_r"):
            frames.append(_sleeve_frame(g, b, lm, p.name == "sleeve_l", H))
        elif p.name == "torso":
            frames.append(_torso_frame(g, b, lm))
        elif p.name == "bodice":
            frames.append(_bodice_frame(lm))
        elif p.name == "skirt":
            frames.append(_skirt_frame(g, b, lm, H))
        elif p.name in ("leg_l", "leg_r"):
            frames.append(_leg_frame(g, b, lm, p.name == "leg_l", H, tucked))
        else:  # pragma: no cover
            raise ValueError(p.name)
    return frames


def warp_garment(g: Garment, frames: list[list[Point]], H: int, W: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Map every piece of ``g`` onto the person canvas: (RGB float H×W×3, part label H×W)."""
    rgb = np.zeros((H, W, 3), np.float32)
    part = np.zeros((H, W), np.uint8)
    tex_im = Image.fromarray(np.clip(g.texture_full, 0, 255).astype(np.uint8))
    # middle pieces first, sleeves / legs on top (a sleeve is sewn over the torso edge)
    order = sorted(range(len(g.pieces)), key=lambda j: g.pieces[j].part != PART_MIDDLE)
    for i in order:
        p, fr = g.pieces[i], frames[i]
        coeffs = homography(fr, p.quad)
        pm = Image.fromarray(((g.piece_map == i + 1) * 255).astype(np.uint8))
        m = np.asarray(pm.transform((W, H), Image.Transform.PERSPECTIVE, coeffs,
                                    resample=Image.Resampling.NEAREST, fillcolor=0)) > 127
        # a perspective map sends points beyond its horizon line into the frame too: clip to the frame
        m &= poly_mask((H, W), [fr])
        t = np.asarray(tex_im.transform((W, H), Image.Transform.PERSPECTIVE, coeffs,
                                        resample=Image.Resampling.BILINEAR), np.float32)
        rgb[m] = t[m]
        part[m] = p.part
    return rgb, part
