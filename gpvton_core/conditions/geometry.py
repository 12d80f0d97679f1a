"""Small 2-D geometry shared by the conditions and the synthetic catalogue: keypoint presence,
distances of pixels to segments, bone chains and polygons, and rasterised polygons.

Points are (x, y) in pixels; pixel arrays ``px``/``py`` hold the points to measure (any shape).
Where two callers need different arithmetic (the parsing split works in float64 and needs the
unclipped projection; the DensePose approximation works in float32 and needs the offset vector),
both variants live here, named for what they return, so that neither is copied elsewhere.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


# --- keypoint presence ------------------------------------------------------------------------------
def joint_scored(k: np.ndarray, i: int) -> bool:
    """Keypoint ``i`` exists in ``k`` (N×3) and has a positive score (its position is not checked)."""
    return i < len(k) and bool(k[i, 2] > 0)


def joint_scored_off_origin(k: np.ndarray, i: int) -> bool:
    """Keypoint ``i`` has a positive score and is not at (0, 0), OpenPose's "missing" position."""
    return bool(k[i, 2] > 0 and (k[i, 0] != 0 or k[i, 1] != 0))


# --- distances ------------------------------------------------------------------------------------
def segment_distance(px: np.ndarray, py: np.ndarray, a, b) -> tuple[np.ndarray, np.ndarray]:
    """Distance from points to segment a→b and the projection parameter t along it (unclipped:
    t < 0 before a, t > 1 past b). Float64 arithmetic."""
    ax, ay = float(a[0]), float(a[1])
    bx, by = float(b[0]), float(b[1])
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    if L2 < 1e-9:
        return np.hypot(px - ax, py - ay), np.zeros_like(px)
    t = ((px - ax) * dx + (py - ay) * dy) / L2
    tc = np.clip(t, 0.0, 1.0)
    return np.hypot(px - (ax + tc * dx), py - (ay + tc * dy)), t


def segment_offset(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Distance from points to segment a→b and the offset vector (x, y) from the segment's nearest
    point to each point (…×2). Keeps the inputs' dtype (float32 for the DensePose approximation)."""
    d = b - a
    n2 = float(d @ d)
    t = np.zeros_like(px) if n2 < 1e-6 else np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / n2, 0, 1)
    ox, oy = px - (a[0] + t * d[0]), py - (a[1] + t * d[1])
    return np.sqrt(ox * ox + oy * oy), np.stack([ox, oy], -1)


def chain_distance(px, py, pts: list) -> np.ndarray:
    """Distance to a polyline (a bone chain such as shoulder→elbow→wrist); a single point is a point."""
    if len(pts) == 1:
        return np.hypot(px - pts[0][0], py - pts[0][1])
    d = np.full(px.shape, np.inf)
    for a, b in zip(pts[:-1], pts[1:]):
        d = np.minimum(d, segment_distance(px, py, a, b)[0])
    return d


def chain_distance_and_arc(px, py, pts: list) -> tuple[np.ndarray, np.ndarray]:
    """Distance to a polyline and the arc length (from its first point) of the nearest point on it."""
    d = np.full(px.shape, np.inf)
    arc = np.zeros(px.shape)
    start = 0.0
    for a, b in zip(pts[:-1], pts[1:]):
        di, t = segment_distance(px, py, a, b)
        L = float(np.hypot(b[0] - a[0], b[1] - a[1]))
        better = di < d
        d = np.where(better, di, d)
        arc = np.where(better, start + np.clip(t, 0.0, 1.0) * L, arc)
        start += L
    return d, arc


def polygon_edge_distance(px, py, poly) -> np.ndarray:
    """Distance to a closed polygon's outline (inside points too: callers decide what inside means)."""
    d = np.full(px.shape, np.inf)
    n = len(poly)
    for i in range(n):
        d = np.minimum(d, segment_distance(px, py, poly[i], poly[(i + 1) % n])[0])
    return d


def polygon_distance(px: np.ndarray, py: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance to a polygon, 0 inside (even-odd rule), float32."""
    inside = np.zeros(px.shape, bool)
    dist = np.full(px.shape, np.inf, np.float32)
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        dist = np.minimum(dist, segment_offset(px, py, a, b)[0])
        if a[1] != b[1]:
            cross = ((a[1] > py) != (b[1] > py)) & (px < a[0] + (py - a[1]) * (b[0] - a[0]) / (b[1] - a[1]))
            inside ^= cross
    return np.where(inside, 0.0, dist).astype(np.float32)


# --- rasterising ----------------------------------------------------------------------------------
def polygon_mask(polys, height: int, width: int, *, outline: bool = True) -> np.ndarray:
    """Bool H×W mask of filled polygons (PIL's rasteriser); ``outline`` also sets the boundary pixels
    PIL's outline draws (the fill alone leaves some of them out)."""
    img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(img)
    for p in polys:
        draw.polygon([(float(x), float(y)) for x, y in p], fill=1, outline=1 if outline else None)
    return np.asarray(img, bool)
