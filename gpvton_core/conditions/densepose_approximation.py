"""DensePose part index approximated from a person mask and the BODY_25 skeleton (bare photos).

A bare photo has no DensePose, and the generator needs one: each pixel of the person mask takes the
part of the nearest body segment of the skeleton (torso quadrilateral, head, upper/lower arms,
hands, upper/lower legs, feet); front or back parts follow :func:`facing`, inner/outer arm parts
the side of the bone, head right/left the side of the neck→nose axis. A 29-label parsing, when
given, confines face, arms, legs and shoes to their own (sided) segments (:func:`_constrain`).

Part numbering: :class:`gpvton_core.conditions.labels.Part`. Its agreement with the Dress Code
grey maps is in ``bench/notes/parsing_densepose.md`` (rerun ``python bench/eval_densepose.py``).
Back views are untested: every sample faces the camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from gpvton_core.conditions.geometry import joint_scored, polygon_distance, segment_offset
from gpvton_core.conditions.labels import LEFT_FOOT_JOINTS, RIGHT_FOOT_JOINTS, Joint, Label, Part

Facing = Literal["front", "back", "side"]

_SIDE_MIN = 0.2   # |shoulder dx| below this × torso length: the person is seen from the side
_ARM_SPLIT = {"upper_arm": 0.05, "lower_arm": 0.0}   # inner/outer split, × shoulder width outwards
# Missing limbs hang straight down the torso axis: bone lengths in torso heights (shoulders→hips).
_ARM_HANG, _LEG_HANG = 0.6, 0.9
# Hands extend the forearm, feet the shin, by these fractions of the bone beyond the wrist / ankle
# (the extents of the Dress Code hands and feet, measured against the skeleton).
_HAND_SPAN, _FOOT_SPAN = (0.25, 0.6), (0.1, 0.3)
_HEAD_FROM_NECK = 0.35   # without face keypoints the head sits this × the torso axis above the neck


class DensePoseError(ValueError):
    """The skeleton lacks what a DensePose approximation needs (shoulders, hips)."""


def _hips(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right hip, left hip); one missing hip is mirrored through MidHip."""
    r, l, mid = joint_scored(k, Joint.R_HIP), joint_scored(k, Joint.L_HIP), joint_scored(k, Joint.MID_HIP)
    if r and l:
        return k[Joint.R_HIP, :2], k[Joint.L_HIP, :2]
    if r and mid:
        return k[Joint.R_HIP, :2], 2 * k[Joint.MID_HIP, :2] - k[Joint.R_HIP, :2]
    if l and mid:
        return 2 * k[Joint.MID_HIP, :2] - k[Joint.L_HIP, :2], k[Joint.L_HIP, :2]
    raise DensePoseError("DensePose approximation needs the hips (both, or one and MidHip)")


def _shoulders(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not (joint_scored(k, Joint.R_SHOULDER) and joint_scored(k, Joint.L_SHOULDER)):
        raise DensePoseError("DensePose approximation needs both shoulders")
    return k[Joint.R_SHOULDER, :2], k[Joint.L_SHOULDER, :2]


def facing(keypoints: np.ndarray) -> Facing:
    """Which way the person faces the camera, from the shoulders (the hips when those are missing).

    OpenPose's R joints lie at smaller x than the L joints for a person facing the camera: "front";
    the reverse is "back"; shoulders closer in x than ``_SIDE_MIN`` × the torso length (shoulder
    centre → hip centre; without it no "side" is told) means the person is seen from the "side".
    """
    k = np.asarray(keypoints, np.float32).reshape(-1, 3)
    if joint_scored(k, Joint.R_SHOULDER) and joint_scored(k, Joint.L_SHOULDER):
        r, l = k[Joint.R_SHOULDER, :2], k[Joint.L_SHOULDER, :2]
    elif joint_scored(k, Joint.R_HIP) and joint_scored(k, Joint.L_HIP):
        r, l = k[Joint.R_HIP, :2], k[Joint.L_HIP, :2]
    else:
        raise DensePoseError("facing needs both shoulders or both hips")
    dx = float(l[0] - r[0])
    try:
        rsh, lsh = _shoulders(k)
        rhip, lhip = _hips(k)
        torso = float(np.linalg.norm((rhip + lhip) / 2 - (rsh + lsh) / 2))
    except DensePoseError:
        torso = 0.0
    if abs(dx) < _SIDE_MIN * torso:
        return "side"
    return "front" if dx > 0 else "back"


def _limb(k: np.ndarray, root: np.ndarray, mid: int, end: int, ratio: float,
          hang: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Middle and end joint of a limb, filling missing ones: a missing middle joint is halfway to
    the end joint; a missing end joint continues the first bone (``ratio`` × its length); with
    both missing (the limb is cropped off or hidden) the limb hangs straight: root + ``hang``, + 2×."""
    m = k[mid, :2] if joint_scored(k, mid) else None
    e = k[end, :2] if joint_scored(k, end) else None
    if m is None and e is not None:
        m = (root + e) / 2
    if m is not None and e is None:
        e = m + ratio * (m - root)
    if m is None or e is None:
        m, e = root + hang, root + 2 * hang
    return m, e


@dataclass(frozen=True)
class _Torso:
    """The skeleton's torso: the quadrilateral the limbs hang from, the neck and the head centre."""

    rsh: np.ndarray
    lsh: np.ndarray
    rhip: np.ndarray
    lhip: np.ndarray
    neck: np.ndarray
    head: np.ndarray

    @property
    def down(self) -> np.ndarray:
        """Shoulder centre → hip centre."""
        return (self.rhip + self.lhip) / 2 - (self.rsh + self.lsh) / 2

    @property
    def polygon(self) -> np.ndarray:
        return np.stack([self.rsh, self.lsh, self.lhip, self.rhip])

    @property
    def width(self) -> float:
        return float(np.linalg.norm(self.lsh - self.rsh))

    @property
    def right_dir(self) -> np.ndarray:
        """Towards the person's right, in the image."""
        return self.rsh - self.lsh


def _torso(k: np.ndarray) -> _Torso:
    """The torso of BODY_25 keypoints; :class:`DensePoseError` without shoulders or hips."""
    rsh, lsh = _shoulders(k)
    rhip, lhip = _hips(k)
    neck = k[Joint.NECK, :2] if joint_scored(k, Joint.NECK) else (rsh + lsh) / 2
    face_pts = [k[i, :2] for i in (Joint.NOSE, Joint.R_EYE, Joint.L_EYE, Joint.R_EAR, Joint.L_EAR)
                if joint_scored(k, i)]
    down = (rhip + lhip) / 2 - (rsh + lsh) / 2
    head = np.mean(face_pts, 0) if face_pts else neck - _HEAD_FROM_NECK * down
    return _Torso(rsh, lsh, rhip, lhip, neck, head)


Segment = tuple[str, np.ndarray, np.ndarray]   # (kind + side R/L, a, b): the name decides the part


def _segments(k: np.ndarray, body: _Torso) -> list[Segment]:
    """The head and every limb's bones, hands and feet as segments; missing limbs hang straight."""
    down = body.down
    segs: list[Segment] = [("head", body.neck + 0.3 * (body.head - body.neck), body.head)]
    for side, sh, el, wr, hip, kn, an, foot in (
            ("R", body.rsh, Joint.R_ELBOW, Joint.R_WRIST, body.rhip, Joint.R_KNEE, Joint.R_ANKLE, RIGHT_FOOT_JOINTS),
            ("L", body.lsh, Joint.L_ELBOW, Joint.L_WRIST, body.lhip, Joint.L_KNEE, Joint.L_ANKLE, LEFT_FOOT_JOINTS)):
        e, w = _limb(k, sh, el, wr, 0.9, _ARM_HANG * down)
        segs += [("upper_arm" + side, sh, e), ("lower_arm" + side, e, w),
                 ("hand" + side, w + _HAND_SPAN[0] * (w - e), w + _HAND_SPAN[1] * (w - e))]
        kn_, an_ = _limb(k, hip, kn, an, 1.0, _LEG_HANG * down)
        toes = [k[i, :2] for i in foot if joint_scored(k, i)]
        f0, f1 = (an_ + _FOOT_SPAN[0] * (an_ - kn_), an_ + _FOOT_SPAN[1] * (an_ - kn_)) if not toes else \
            (an_ + 0.3 * (np.mean(toes, 0) - an_), np.mean(toes, 0))
        segs += [("upper_leg" + side, hip, kn_), ("lower_leg" + side, kn_, an_), ("foot" + side, f0, f1)]
    return segs


def _distances(px: np.ndarray, py: np.ndarray, body: _Torso, segs: list[Segment]
               ) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Distance of every pixel to the torso and each segment (rows in that order), and the offset
    vectors from each segment (None for the torso)."""
    dists = [polygon_distance(px, py, body.polygon)]
    offs: list[np.ndarray | None] = [None]
    for _name, a, b in segs:
        d, o = segment_offset(px, py, a, b)
        dists.append(d)
        offs.append(o)
    return np.stack(dists, 0), offs


_ARM_PARTS = {   # (kind, person's right) → (inner part, outer part), facing the camera
    ("upper_arm", True): (Part.RIGHT_UPPER_ARM_INNER, Part.RIGHT_UPPER_ARM_OUTER),
    ("upper_arm", False): (Part.LEFT_UPPER_ARM_INNER, Part.LEFT_UPPER_ARM_OUTER),
    ("lower_arm", True): (Part.RIGHT_LOWER_ARM_INNER, Part.RIGHT_LOWER_ARM_OUTER),
    ("lower_arm", False): (Part.LEFT_LOWER_ARM_INNER, Part.LEFT_LOWER_ARM_OUTER)}
_LIMB_PARTS = {   # (kind, person's right) → (front part, back part)
    ("hand", True): (Part.RIGHT_HAND, Part.RIGHT_HAND), ("hand", False): (Part.LEFT_HAND, Part.LEFT_HAND),
    ("foot", True): (Part.RIGHT_FOOT, Part.RIGHT_FOOT), ("foot", False): (Part.LEFT_FOOT, Part.LEFT_FOOT),
    ("upper_leg", True): (Part.RIGHT_UPPER_LEG_FRONT, Part.RIGHT_UPPER_LEG_BACK),
    ("upper_leg", False): (Part.LEFT_UPPER_LEG_FRONT, Part.LEFT_UPPER_LEG_BACK),
    ("lower_leg", True): (Part.RIGHT_LOWER_LEG_FRONT, Part.RIGHT_LOWER_LEG_BACK),
    ("lower_leg", False): (Part.LEFT_LOWER_LEG_FRONT, Part.LEFT_LOWER_LEG_BACK)}


def _arm_parts(seg: Segment, offsets: np.ndarray, body: _Torso, back: bool) -> np.ndarray:
    """Inner or outer arm part per pixel, from the side of the bone its offset points to."""
    name, a, b = seg
    kind, right = name[:-1], name[-1] == "R"
    away = (a + b) / 2 - body.polygon.mean(0)
    split = _ARM_SPLIT[kind] * body.width
    outer = (offsets @ (away / max(float(np.linalg.norm(away)), 1e-6))) > split
    inner_part, outer_part = _ARM_PARTS[(kind, right)]
    if back:        # seen from behind, the surface on the outer side is the other one
        inner_part, outer_part = outer_part, inner_part
    return np.where(outer, outer_part, inner_part)


def _parts(win: np.ndarray, segs: list[Segment], offs: list[np.ndarray | None], px: np.ndarray,
           py: np.ndarray, body: _Torso, back: bool) -> np.ndarray:
    """The part of every pixel from its nearest segment ``win`` (0 the torso, i + 1 ``segs[i]``)."""
    part = np.zeros(px.shape, np.uint8)
    for si, name in enumerate(["torso"] + [s[0] for s in segs]):
        sel = win == si
        if not sel.any():
            continue
        if name == "torso":
            part[sel] = Part.TORSO_BACK if back else Part.TORSO_FRONT
        elif name == "head":
            neck, right_dir = body.neck, body.right_dir
            to_right = (px[sel] - neck[0]) * right_dir[0] + (py[sel] - neck[1]) * right_dir[1]
            part[sel] = np.where(to_right > 0, Part.HEAD_RIGHT, Part.HEAD_LEFT)
        elif name[:-1] in _ARM_SPLIT:
            part[sel] = _arm_parts(segs[si - 1], offs[si][sel], body, back)
        else:
            front_part, back_part = _LIMB_PARTS[(name[:-1], name[-1] == "R")]
            part[sel] = back_part if back else front_part
    return part


def approximate_from_mask(person_mask: np.ndarray, keypoints: np.ndarray, *,
                          parsing: np.ndarray | None = None) -> np.ndarray:
    """Approximate DensePose part index (uint8 H×W, 0..24; 0 outside ``person_mask``).

    ``keypoints``: BODY_25 (25, 3) in the pixels of the mask's image. Each mask pixel gets the
    part of its nearest body segment (module docstring): the torso is the shoulder–hip
    quadrilateral, hands extend the forearm by 0.25–0.6 of its length beyond the wrist and feet
    the shin by 0.1–0.3 beyond the ankle; a limb whose joints are missing (cropped photo) hangs
    straight down. ``parsing`` (29-label GP parsing, optional) confines labelled pixels to their
    segments (:func:`_constrain`). A "side" view gets the front parts. Raises
    :class:`DensePoseError` without both shoulders, or without the hips (both, or one + MidHip).
    """
    m = np.asarray(person_mask, bool)
    if m.ndim != 2:
        raise ValueError(f"person mask must be H×W, got shape {m.shape}")
    k = np.asarray(keypoints, np.float32).reshape(-1, 3)
    if k.shape[0] <= Joint.L_ANKLE:
        raise ValueError(f"expected BODY_25 keypoints, got {k.shape[0]} points")
    body = _torso(k)
    back = facing(k) == "back"
    out = np.zeros(m.shape, np.uint8)
    if parsing is not None and np.shape(parsing) != m.shape:
        raise ValueError(f"parsing {np.shape(parsing)} and mask {m.shape} sizes differ")
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return out
    px, py = xs.astype(np.float32), ys.astype(np.float32)
    segs = _segments(k, body)
    D, offs = _distances(px, py, body, segs)
    if parsing is not None:
        D = _constrain(D, ["torso"] + [s[0] for s in segs], np.asarray(parsing)[ys, xs])
    out[ys, xs] = _parts(D.argmin(0), segs, offs, px, py, body, back)
    return out


# Sided parsing labels (29-label GP parsing) → the segment groups they may belong to.
_P_ARM = {Label.LEFT_ARM: "L", Label.RIGHT_ARM: "R", Label.LEFT_SLEEVE_UPPER: "L", Label.RIGHT_SLEEVE_UPPER: "R",
          Label.LEFT_SLEEVE_DRESSES: "L", Label.RIGHT_SLEEVE_DRESSES: "R", Label.LEFT_SLEEVE_COAT: "L",
          Label.RIGHT_SLEEVE_COAT: "R"}
_P_LEG = {Label.LEFT_LEG: "L", Label.RIGHT_LEG: "R"}
_P_PANTS = {Label.LEFT_PANTS: "L", Label.RIGHT_PANTS: "R"}
_P_SHOE = {Label.LEFT_SHOE: "L", Label.RIGHT_SHOE: "R"}


def _constrain(D: np.ndarray, names: list[str], lab: np.ndarray) -> np.ndarray:
    """Parsing-labelled pixels may only join segments of their kind and side: face → head; arm
    skin and sleeves → that side's arm and hand; leg skin → that side's leg and foot; pants → the
    same or the torso (a waistband covers the pelvis, which DensePose counts as torso); shoes →
    that side's foot or lower leg (boots and high-tops cover the ankle). Where the allowed segments
    are all missing the pixel keeps every segment."""
    rules: list[tuple[np.ndarray, set[str]]] = [(lab == Label.FACE, {"head"})]
    rules += [(lab == c, {"upper_arm" + s, "lower_arm" + s, "hand" + s}) for c, s in _P_ARM.items()]
    rules += [(lab == c, {"upper_leg" + s, "lower_leg" + s, "foot" + s}) for c, s in _P_LEG.items()]
    rules += [(lab == c, {"torso", "upper_leg" + s, "lower_leg" + s, "foot" + s})
              for c, s in _P_PANTS.items()]
    rules += [(lab == c, {"foot" + s, "lower_leg" + s}) for c, s in _P_SHOE.items()]
    D = D.copy()
    for sel, ok in rules:
        keep = np.array([n in ok for n in names])
        if sel.any() and keep.any():
            D[np.ix_(~keep, sel)] = np.inf
    return D
