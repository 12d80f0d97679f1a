"""In-shop garment: mask from a plain light background and part parsing from the garment's shape.

Part map values (``parts_png`` in the shards): 0 background, 1 left, 2 middle, 3 right, where
left/right are the *wearer's*: for a front-view product photo the garment's left sleeve / left leg
is on the **image right** (spec §2). The category decides the official labels (see
:func:`gpvton_core.conditions.masks.garment_label_map`).

* upper / dresses: sleeves vs torso. The torso's horizontal extent is estimated per side from
  the run of mask pixels through the garment's centre column, over a band of rows where only the
  torso (and possibly hanging sleeves) is expected: upper 50–90 % of the garment height, dresses
  the bodice band 25–50 % (above the skirt's flare). On a side where at least 30 % of those rows
  show garment beyond the run (a sleeve hanging separately), the run edge is the torso edge.
  Otherwise, for upper garments, when the run reaches more than 10 % of the garment width beyond
  the shoulder line (the central run at 12 % of the height), the sleeve hangs attached to the
  body and the shoulder line gives the torso edge. Mask pixels beyond the torso edges (plus a
  3 % tolerance) are sleeves — for dresses only above the waist. A side whose sleeve holds less
  than 1.5 % of the garment area is empty (sleeveless), and its pixels go to the torso.
* lower: left leg / middle / right leg. The crotch is the highest row, scanning up from the hem,
  at which the mask still splits into two runs around the centre; below it the image-right run is
  the left leg (1), the image-left run the right leg (3); the waist band and hip region above the
  crotch are middle (2). A skirt (no crotch gap) is all middle.
"""

from __future__ import annotations

import numpy as np

from gpvton_core.conditions.labels import CATEGORIES, PART_LEFT, PART_MIDDLE, PART_RIGHT, Category

WHITE_THRESHOLD = 240          # min channel value of "white" background
WHITE_MAX_SPREAD = 18          # max − min channel spread of "white" background (low saturation)
SLEEVE_MIN_FRACTION = 0.015


class GarmentError(ValueError):
    """The garment image cannot be segmented (e.g. no foreground)."""


def _reconstruct_from_border(seed_ok: np.ndarray) -> np.ndarray:
    """Pixels of ``seed_ok`` 4-connected to the image border.

    Alternating horizontal and vertical run propagation: a run of ``ok`` pixels along a row
    (column) that touches a reached pixel becomes reached. Each pass is vectorised; the number of
    passes is the number of turns a path needs, a handful for real images.
    """
    ok = np.asarray(seed_ok, bool)
    H, W = ok.shape
    reached = np.zeros_like(ok)
    reached[0, :], reached[-1, :], reached[:, 0], reached[:, -1] = ok[0, :], ok[-1, :], ok[:, 0], ok[:, -1]

    def runs(o: np.ndarray, r: np.ndarray) -> np.ndarray:
        h, w = o.shape
        ids = np.cumsum(~o, axis=1) + (np.arange(h) * (w + 1))[:, None]
        hit = np.zeros(h * (w + 1) + w + 2, bool)
        hit[ids[r & o]] = True
        return o & hit[ids]

    for _ in range(10000):
        new = runs(ok, reached)
        new = runs(ok.T, new.T).T
        if np.array_equal(new, reached):
            break
        reached = new
    return reached


def mask_from_white_background(rgb: np.ndarray, threshold: int = WHITE_THRESHOLD,
                               max_spread: int = WHITE_MAX_SPREAD) -> np.ndarray:
    """Garment mask (bool H×W): everything except near-white pixels connected to the border.

    White areas inside the garment (prints, lining) are kept because only background connected to
    the image border is removed. Raises :class:`GarmentError` when nothing is left.
    """
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise GarmentError(f"garment image must be H×W×3, got {a.shape}")
    lo, hi = a.min(axis=2).astype(np.int16), a.max(axis=2).astype(np.int16)
    white = (lo >= threshold) & ((hi - lo) <= max_spread)
    mask = ~_reconstruct_from_border(white)
    if mask.sum() < 0.002 * mask.size:
        raise GarmentError("no garment found on the background (image is blank/white)")
    return mask


BORDER = 0.02                  # outer ring (fraction of the short side) that samples the background
PLAIN_MIN_SHARE = 0.6          # share of the ring that must match the background colour
LIGHT_MIN_LUMA = 150           # a "light" background: median luma at least this
BG_TOLERANCE = 26.0            # RGB distance to the background colour still counted as background
SHADOW_MIN_LUMA_RATIO = 0.72   # soft shadows: as grey as the background, down to this share of its luma


def _luma(a: np.ndarray) -> np.ndarray:
    return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114


def border_ring(shape: tuple[int, int], fraction: float = BORDER) -> np.ndarray:
    """Bool mask of the image's outer ring (at least 2 pixels wide)."""
    H, W = shape
    b = max(2, int(round(fraction * min(H, W))))
    ring = np.zeros((H, W), bool)
    ring[:b], ring[-b:], ring[:, :b], ring[:, -b:] = True, True, True, True
    return ring


def mask_from_plain_background(rgb: np.ndarray) -> np.ndarray:
    """Garment mask (bool H×W) for a product shot on a plain light background: white, light grey
    or a light tint, with soft shadows.

    The background colour is the median of the outer ring; the ring must be plain (most of it close
    to that colour) and light, otherwise the garment cannot be separated here and
    :class:`GarmentError` says so (a user matting model, or a given mask, handles such photos).
    Background = pixels close to that colour, or as unsaturated as it and a little darker (soft
    shadows), 4-connected to the border; white prints inside the garment stay garment.
    """
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise GarmentError(f"garment image must be H×W×3, got {a.shape}")
    f = a.astype(np.float32)
    ring = border_ring(a.shape[:2])
    bg = np.median(f[ring], axis=0)
    dist = np.sqrt(((f - bg) ** 2).sum(axis=2))
    share = float((dist[ring] <= BG_TOLERANCE).mean())
    bg_luma = float(_luma(bg))
    if share < PLAIN_MIN_SHARE or bg_luma < LIGHT_MIN_LUMA:
        raise GarmentError(
            f"cannot separate the garment from its background: the background is not plain and light "
            f"(border: {share:.0%} near its median colour, luma {bg_luma:.0f}; needs ≥ {PLAIN_MIN_SHARE:.0%} "
            f"and ≥ {LIGHT_MIN_LUMA}); give a mask or configure a matting model (garment_matting.model)")
    spread = f.max(axis=2) - f.min(axis=2)
    bg_spread = float(bg.max() - bg.min())
    luma = _luma(f)
    shadow = (spread <= bg_spread + 14) & (luma >= SHADOW_MIN_LUMA_RATIO * bg_luma) & (luma <= bg_luma + 12)
    lo, hi = a.min(axis=2).astype(np.int16), a.max(axis=2).astype(np.int16)
    white = (lo >= WHITE_THRESHOLD) & ((hi - lo) <= WHITE_MAX_SPREAD)
    mask = ~_reconstruct_from_border((dist <= BG_TOLERANCE) | shadow | white)
    frac = mask.mean()
    if frac < 0.002:
        raise GarmentError("no garment found on the background (image is blank/plain)")
    if frac > 0.97:
        raise GarmentError("cannot separate the garment from its background (no background left)")
    return mask


def binarize_mask(mask: np.ndarray, threshold: int = 127) -> np.ndarray:
    """A given mask image (uint8, possibly JPEG) → bool at ``threshold``."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    return m > threshold


def _central_runs(mask: np.ndarray, rows: np.ndarray, cx: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the [start, end] of the mask run containing column cx (−1 when cx is empty)."""
    starts, ends = [], []
    W = mask.shape[1]
    for y in rows:
        row = mask[y]
        if not row[cx]:
            starts.append(-1)
            ends.append(-1)
            continue
        left = row[:cx][::-1]
        l = cx - (int(np.argmin(left)) if (~left).any() else cx)
        right = row[cx:]
        r = cx + (int(np.argmin(right)) - 1 if (~right).any() else W - 1 - cx)
        starts.append(l)
        ends.append(r)
    return np.array(starts), np.array(ends)


def _torso_parts(mask: np.ndarray, category: Category) -> np.ndarray:
    H, W = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1 = int(ys.min()), int(ys.max())
    h = max(1, y1 - y0 + 1)
    cx = int(round(np.median(xs)))
    band = (0.5, 0.9) if category == "upper" else (0.25, 0.5)
    rows = np.arange(y0 + int(band[0] * h), y0 + max(int(band[1] * h), int(band[0] * h) + 1))
    s, e = _central_runs(mask, rows, cx)
    ok = s >= 0
    parts = np.where(mask, PART_MIDDLE, 0).astype(np.uint8)
    if not ok.any():
        return parts
    rows, s, e = rows[ok], s[ok], e[ok]
    full_w = xs.max() - xs.min() + 1
    # Shoulder line: the central run at 12 % of the height (None when it is a strap/neckline).
    ss, se = _central_runs(mask, np.array([y0 + int(0.12 * h)]), cx)
    shoulder = (float(ss[0]), float(se[0])) if ss[0] >= 0 and (se[0] - ss[0] + 1) >= 0.55 * full_w else None
    edges = []
    for side, run_edge in ((0, s), (1, e)):
        beyond = np.array([mask[y, :x].any() if side == 0 else mask[y, x + 1:].any()
                           for y, x in zip(rows, run_edge)])
        if beyond.mean() >= 0.3:
            # a separate sleeve hangs beside the torso in these rows: the run edge is the torso's
            edges.append(float(np.median(run_edge[beyond])))
            continue
        edge = float(np.median(run_edge))
        if category == "upper" and shoulder is not None:
            inward = (shoulder[0] - edge) if side == 0 else (edge - shoulder[1])
            if inward > 0.1 * full_w:
                # the run reaches well beyond the shoulders: sleeves hang attached to the body
                edge = shoulder[side]
        edges.append(edge)
    xl, xr = edges
    tol = 0.03 * (xs.max() - xs.min() + 1)
    cols = np.arange(W)[None, :]
    row_ok = np.ones((H, 1), bool)
    if category == "dresses":
        row_ok[y0 + int(0.5 * h):] = False
    left = mask & (cols > xr + tol) & row_ok     # image right → wearer's left
    right = mask & (cols < xl - tol) & row_ok
    area = mask.sum()
    if left.sum() >= SLEEVE_MIN_FRACTION * area:
        parts[left] = PART_LEFT
    if right.sum() >= SLEEVE_MIN_FRACTION * area:
        parts[right] = PART_RIGHT
    return parts


def _leg_parts(mask: np.ndarray) -> np.ndarray:
    H, W = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1 = int(ys.min()), int(ys.max())
    h = y1 - y0 + 1
    cx = int(round(np.median(xs)))
    parts = np.where(mask, PART_MIDDLE, 0).astype(np.uint8)
    left_any = np.cumsum(mask, axis=1) > 0
    right_any = np.cumsum(mask[:, ::-1], axis=1)[:, ::-1] > 0
    gap = ~mask & left_any & right_any
    win = np.zeros(W, bool)
    win[max(0, cx - W // 6): cx + W // 6 + 1] = True
    gap &= win[None, :]
    row_gap = gap.any(axis=1)
    # The leg gap must start near the hem (bottom 30 %) and run upwards without interruption.
    start = None
    for y in range(y1, y0 + int(0.7 * h) - 1, -1):
        if row_gap[y]:
            start = y
            break
    if start is None:
        return parts                       # skirt: no gap between legs
    crotch = start
    while crotch - 1 > y0 and row_gap[crotch - 1]:
        crotch -= 1
    if start - crotch < 0.15 * h:
        return parts
    cols = np.arange(W)
    split_prev = float(cx)
    for y in range(crotch, y1 + 1):
        if row_gap[y]:
            g = cols[gap[y]]
            split_prev = float(g[np.argmin(np.abs(g - split_prev))])
        row = mask[y]
        parts[y, row & (cols > split_prev)] = PART_LEFT   # image right → wearer's left leg
        parts[y, row & (cols < split_prev)] = PART_RIGHT
    return parts


def garment_parts(mask: np.ndarray, category: Category) -> np.ndarray:
    """Part map (uint8 H×W: 0 bg, 1 left, 2 middle, 3 right) of a garment mask."""
    m = np.asarray(mask) > 0
    if category not in CATEGORIES:
        raise GarmentError(f"unknown garment category {category!r}")
    if not m.any():
        raise GarmentError("empty garment mask")
    if category == "lower":
        return _leg_parts(m)
    return _torso_parts(m, category)
