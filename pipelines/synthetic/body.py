"""The body of a procedural model photo: a jittered frontal BODY_25 skeleton and the geometry
(limb widths, torso quad, head ellipse) that the person drawing and the dressing share."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gpvton_core.conditions.labels import (LEFT_ARM_JOINTS, LEFT_FOOT_JOINTS, LEFT_LEG_JOINTS, RIGHT_ARM_JOINTS,
                                           RIGHT_FOOT_JOINTS, RIGHT_LEG_JOINTS, Joint)
from pipelines.synthetic.raster import Point


def _place_arms(rng: np.random.Generator, k: np.ndarray, H: int, W: int, s: float, arm_a: float,
                arm_b: float) -> None:
    """Elbows and wrists: arms hang down and out (image coords: y down), elbows slightly bent."""
    ua, la = 0.19, 0.17                   # upper / lower arm lengths (fraction of H)
    for (shi, eli, wri), sign, a in ((RIGHT_ARM_JOINTS, -1, arm_a), (LEFT_ARM_JOINTS, 1, arm_b)):
        sx, sy = k[shi, :2]
        ex = sx + sign * math.sin(a) * ua * H * s * (H / W) * (W / H)
        ey = sy + math.cos(a) * ua * H * s
        b = a + math.radians(float(rng.uniform(-5, 5)))
        wx = ex + sign * math.sin(b) * la * H * s
        wy = ey + math.cos(b) * la * H * s
        k[eli, :2] = (ex, ey); k[wri, :2] = (wx, wy)


def _place_feet(k: np.ndarray, H: int, W: int, s: float) -> None:
    for ank, (big, small, heel), sign in ((Joint.L_ANKLE, LEFT_FOOT_JOINTS, 1), (Joint.R_ANKLE, RIGHT_FOOT_JOINTS, -1)):
        ax, ay = k[ank, :2]
        k[big, :2] = (ax + sign * 0.01 * W, ay + 0.045 * H * s)
        k[small, :2] = (ax + sign * 0.035 * W, ay + 0.04 * H * s)
        k[heel, :2] = (ax, ay + 0.02 * H * s)


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
    k = np.zeros((25, 3), np.float64)
    k[Joint.NOSE, :2] = P(0, 0.115); k[Joint.NECK, :2] = P(0, 0.195)
    k[Joint.R_SHOULDER, :2] = P(-sh, 0.215); k[Joint.L_SHOULDER, :2] = P(sh, 0.215)
    _place_arms(rng, k, H, W, s, arm_a, arm_b)
    k[Joint.MID_HIP, :2] = P(0, 0.52); k[Joint.R_HIP, :2] = P(-hp, 0.52); k[Joint.L_HIP, :2] = P(hp, 0.52)
    lg = float(rng.uniform(-0.01, 0.02))
    k[Joint.R_KNEE, :2] = P(-hp - lg, 0.72); k[Joint.L_KNEE, :2] = P(hp + lg, 0.72)
    k[Joint.R_ANKLE, :2] = P(-hp - 1.5 * lg, 0.91); k[Joint.L_ANKLE, :2] = P(hp + 1.5 * lg, 0.91)
    k[Joint.R_EYE, :2] = P(-0.025, 0.10); k[Joint.L_EYE, :2] = P(0.025, 0.10)
    k[Joint.R_EAR, :2] = P(-0.055, 0.11); k[Joint.L_EAR, :2] = P(0.055, 0.11)
    _place_feet(k, H, W, s)
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


def body_geometry(k: np.ndarray, H: int, W: int, rng: np.random.Generator) -> Body:
    """Limb widths, torso quad and head ellipse of skeleton ``k``, scaled by its shoulder width."""
    sc = float(np.linalg.norm(k[Joint.L_SHOULDER, :2] - k[Joint.R_SHOULDER, :2]))
    arm_w = sc * float(rng.uniform(0.17, 0.21))
    leg_w = sc * float(rng.uniform(0.26, 0.32))
    rs, ls, rh, lh = k[Joint.R_SHOULDER, :2], k[Joint.L_SHOULDER, :2], k[Joint.R_HIP, :2], k[Joint.L_HIP, :2]
    torso = [tuple(rs + [0, -0.01 * H]), tuple(ls + [0, -0.01 * H]),
             tuple(lh + [leg_w * 0.45, 0.02 * H]), tuple(rh + [-leg_w * 0.45, 0.02 * H])]
    nx, ny = k[Joint.NOSE, :2]
    head = (float(nx), float(ny) - 0.01 * H, 0.075 * sc / 0.34 * 1.0 + 0.0, 0.10 * sc / 0.34)
    return Body(k, arm_w, leg_w, torso, head)  # type: ignore[arg-type]


def arm_polyline(k: np.ndarray, side: str) -> list[Point]:
    """Shoulder, elbow, wrist of the ``left`` or ``right`` arm."""
    idx = LEFT_ARM_JOINTS if side == "left" else RIGHT_ARM_JOINTS
    return [tuple(map(float, k[i, :2])) for i in idx]  # type: ignore[misc]


def leg_polyline(k: np.ndarray, side: str) -> list[Point]:
    """Hip, knee, ankle of the ``left`` or ``right`` leg."""
    idx = LEFT_LEG_JOINTS if side == "left" else RIGHT_LEG_JOINTS
    return [tuple(map(float, k[i, :2])) for i in idx]  # type: ignore[misc]
