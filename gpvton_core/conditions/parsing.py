"""The 29-label GP-VTON person parsing (spec §8.1), derived from public parsings plus pose.

GP-VTON's parser is not public. Public datasets carry coarser parsings:

* LIP-style, 20 classes (VITON-HD ``image-parse-v3``): 0 bg, 1 hat, 2 hair, 3 glove,
  4 sunglasses, 5 upper clothes, 6 dress, 7 coat, 8 socks, 9 pants, 10 neck skin (VITON-HD uses
  LIP's jumpsuit slot for it), 11 scarf, 12 skirt, 13 face, 14 left arm, 15 right arm,
  16 left leg, 17 right leg, 18 left shoe, 19 right shoe.
* ATR-style, 18 classes (Dress Code ``label_maps``): 0 bg, 1 hat, 2 hair, 3 sunglasses,
  4 upper clothes, 5 skirt, 6 pants, 7 dress, 8 belt, 9 left shoe, 10 right shoe, 11 head
  (face + neck), 12 left leg, 13 right leg, 14 left arm, 15 right arm, 16 bag, 17 scarf.

In both, "left" is the person's left (image right for a frontal photo), as in GP-VTON; this was
checked on the sample files against BODY_25 keypoint 5 (LShoulder). What the public parsings
lack, the pose supplies:

* **Sleeves vs torso** (upper 5 → 5/21/22, dress 6 → 6/24/25, coat 7 → 7/26/27): a garment pixel
  belongs to a sleeve when it is closer to that arm's bone chain (shoulder→elbow→wrist, extended
  to the hand's centre when the arm's skin continues past the wrist) than to the torso
  quadrilateral (shoulders, hips), lies past the shoulder along the upper arm and not further
  down the arm than the bare skin, and, on the torso side of the arm, within the sleeve's
  half-width seen on its outer side (a sleeve is a tube around the arm; only its outer edge is
  the garment's silhouette); sleeveless sides are detected from the upper-arm bone not being
  covered by the garment (see :func:`split_sleeves`).
* **Left/right pants** (9/10): nearest leg bone chain (hip→knee→ankle); with only the hips
  present that is the vertical line through the mid-hip. Below the hips, a row that a gap
  (pixels that are not pants) near the midline cuts in two, the crotch, is split at the gap;
  above the highest such gap the split is the fly: the straight line from the crotch up to the
  mid-hip's x on the waistband (the pants' top row).
* **Neck** (11) for ATR, whose "head" covers face and neck: head pixels below the chin line
  ``y_nose + 0.42·(y_neck − y_nose)`` (ratio measured on VITON-HD's LIP parsings, where face and
  neck are separate).

The split rules are the best of those measured against GP-VTON's released parsing on the VITON-HD
samples, and close to what a perfect split inside LIP's outlines reaches: what remains is LIP's
outlines and seams that only the photo shows. The scores, that ceiling and the rules tried and
rejected are in ``bench/notes/parsing_densepose.md``; rerun ``python bench/eval_parsing.py``.
"""

from __future__ import annotations

import numpy as np

from gpvton_core.conditions.geometry import (chain_distance, chain_distance_and_arc, joint_scored_off_origin,
                                             polygon_edge_distance, polygon_mask, segment_distance)
from gpvton_core.conditions.labels import (LEFT_ARM_JOINTS, LEFT_LEG_JOINTS, RIGHT_ARM_JOINTS, RIGHT_LEG_JOINTS,
                                           SLEEVED, Joint, Label)

PANTS_PLACEHOLDER = Label.LEFT_PANTS   # pants are written as left pants first and split into left/right

# Direct label maps (index = source label). Garments that are split later map to their torso
# label / the left-pants label first.
LIP_TO_GP = np.array([Label.BACKGROUND, Label.HAT, Label.HAIR, Label.GLOVE, Label.GLASSES, Label.UPPER,
                      Label.DRESSES, Label.COAT, Label.SOCKS, Label.LEFT_PANTS, Label.NECK, Label.SCARF,
                      Label.SKIRTS, Label.FACE, Label.LEFT_ARM, Label.RIGHT_ARM, Label.LEFT_LEG,
                      Label.RIGHT_LEG, Label.LEFT_SHOE, Label.RIGHT_SHOE], dtype=np.uint8)
ATR_TO_GP = np.array([Label.BACKGROUND, Label.HAT, Label.HAIR, Label.GLASSES, Label.UPPER, Label.SKIRTS,
                      Label.LEFT_PANTS, Label.DRESSES, Label.BELT, Label.LEFT_SHOE, Label.RIGHT_SHOE,
                      Label.FACE, Label.LEFT_LEG, Label.RIGHT_LEG, Label.LEFT_ARM, Label.RIGHT_ARM, Label.BAG,
                      Label.SCARF], dtype=np.uint8)
ATR_HEAD = 11   # ATR's "head" (face + neck)
CHIN_RATIO = 0.42

# Sleeve split parameters (fractions of the shoulder width), tuned on the VITON-HD samples.
SHOULDER_T0 = -0.2
# A side has a sleeve only if the garment covers the upper-arm bone (t in 0.15..0.6) this much.
SLEEVE_COVER = 0.3
# A sleeve smaller than this fraction of the garment region is a sliver at the armhole: dropped.
SLEEVE_MIN_FRACTION = 0.02
# A sleeve may reach this far (× shoulder width) along the arm past where the arm's skin begins.
SKIN_MARGIN = 0.05
# Arm skin beyond the wrist (at least this × shoulder width², i.e. a hand, not a fringe) extends
# the arm chain to the hand: a misplaced low-confidence wrist otherwise cuts the sleeve short.
HAND_MIN_AREA = 0.003
# Below the hips, a gap (non-pants pixels) in a pants row counts as the crotch when both of its ends lie
# within this fraction of the hip distance from the mid-hip.
CROTCH_BAND = 0.25
# A sleeve is a tube around the arm bone: on the torso side of the arm chain a sleeve pixel may
# lie no further from the arm chain than this percentile of the distances of the sleeve's pixels on
# the outer side (whose edge is the garment's silhouette), measured per ARM_WIDTH_BIN × shoulder
# width of arc length along the chain; only outer pixels within ARM_WIDTH_MAX × shoulder width count.
ARM_WIDTH_PERCENTILE = 95
ARM_WIDTH_BIN = 0.1
ARM_WIDTH_MAX = 0.5


class ParsingError(ValueError):
    """The parsing cannot be converted (unknown labels, wrong shape)."""


def torso_polygon(kps: np.ndarray) -> list | None:
    """(RShoulder, LShoulder, LHip, RHip), or None without both shoulders.

    Missing hips are replaced by points below the shoulders (1.5 shoulder widths), which matches
    upper-body crops.
    """
    k = np.asarray(kps, np.float64).reshape(-1, 3)
    if not (joint_scored_off_origin(k, Joint.R_SHOULDER) and joint_scored_off_origin(k, Joint.L_SHOULDER)):
        return None
    rs, ls = k[Joint.R_SHOULDER, :2], k[Joint.L_SHOULDER, :2]
    S = float(np.hypot(*(ls - rs)))
    if S < 1:
        return None
    down = np.array([0.0, 1.5 * S])
    rh = k[Joint.R_HIP, :2] if joint_scored_off_origin(k, Joint.R_HIP) else rs + down
    lh = k[Joint.L_HIP, :2] if joint_scored_off_origin(k, Joint.L_HIP) else ls + down
    return [rs, ls, lh, rh]


# --- garment splits -----------------------------------------------------------------------------
def _bone_coverage(region: np.ndarray, a, b, t_from: float = 0.15, t_to: float = 0.6,
                   n: int = 16) -> float:
    """Fraction of points on the bone a→b (t in [t_from, t_to]) that lie inside ``region``."""
    H, W = region.shape
    t = np.linspace(t_from, t_to, n)
    x = np.clip((a[0] + t * (b[0] - a[0])).astype(int), 0, W - 1)
    y = np.clip((a[1] + t * (b[1] - a[1])).astype(int), 0, H - 1)
    return float(region[y, x].mean())


def _hand_point(skin: np.ndarray, chain: list, S: float) -> np.ndarray | None:
    """Centre (median) of the arm skin lying beyond the chain's end, when it is hand-sized."""
    a, b = np.asarray(chain[-2], np.float64), np.asarray(chain[-1], np.float64)
    L = float(np.hypot(*(b - a)))
    if L < 1e-6:
        return None
    sy, sx = np.nonzero(skin)
    beyond = ((sx + 0.5 - b[0]) * (b[0] - a[0]) + (sy + 0.5 - b[1]) * (b[1] - a[1])) / L > 0
    if beyond.sum() < max(HAND_MIN_AREA * S * S, 1.0):
        return None
    return np.array([np.median(sx[beyond]) + 0.5, np.median(sy[beyond]) + 0.5])


def _outer_side(px: np.ndarray, py: np.ndarray, chain: list, torso_centre) -> np.ndarray:
    """True for points on the other side of their nearest chain segment than the torso centre."""
    def cross(a, b, x, y):
        return (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0])
    best = np.full(px.shape, np.inf)
    outer = np.zeros(px.shape, bool)
    cx, cy = float(torso_centre[0]), float(torso_centre[1])
    for a, b in zip(chain[:-1], chain[1:]):
        d, _ = segment_distance(px, py, a, b)
        nearer = d < best
        best = np.where(nearer, d, best)
        side = np.sign(cross(a, b, px, py)) != np.sign(cross(a, b, cx, cy))
        outer = np.where(nearer, side, outer)
    return outer


def _inner_width_limit(d: np.ndarray, arc: np.ndarray, outer: np.ndarray, ok: np.ndarray,
                       S: float) -> np.ndarray:
    """Per point, the largest distance from the arm chain a sleeve pixel on the torso side may have.

    The sleeve's outer edge is the garment silhouette, so its outer half-width (the
    :data:`ARM_WIDTH_PERCENTILE` of the outer candidates' distances in the same arc bin) is observed;
    the tube is mirrored to the torso side, where the silhouette is the torso's and tells nothing.
    Bins with fewer than 3 outer pixels impose no limit (∞).
    """
    bins = np.floor(arc / max(ARM_WIDTH_BIN * S, 1e-6)).astype(np.int64)
    limit = np.full(d.shape, np.inf)
    sample = outer & ok & (d < ARM_WIDTH_MAX * S)
    for b in np.unique(bins[sample]):
        m = sample & (bins == b)
        if m.sum() >= 3:
            limit[bins == b] = np.percentile(d[m], ARM_WIDTH_PERCENTILE)
    return limit


def split_sleeves(region: np.ndarray, kps: np.ndarray, *, t0: float | None = None,
                  arm_skin: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a garment region (bool H×W) into (torso, left sleeve, right sleeve) with the pose.

    A pixel is in the person's left sleeve when (1) it is nearer to the left arm chain
    LShoulder→LElbow→LWrist than to the torso quadrilateral (distance 0 inside it) and nearer to
    it than to the right arm chain, (2) its projection onto the shoulder→elbow segment lies beyond
    ``t0`` (so the shoulder cap stays torso), and (3) when ``arm_skin`` (the person's left and
    right arm masks) is given, it lies no further down the arm than where that arm's skin begins
    (plus ``SKIN_MARGIN``), so a short sleeve stops at the bare arm instead of running down beside
    the torso, and (4) on the torso side of its nearest chain segment, it lies no further from the
    chain than the sleeve reaches on the outer side (:func:`_inner_width_limit`: a sleeve is a
    tube, and only its outer edge is seen against the background). With ``arm_skin``, skin beyond
    the wrist (a hand, :data:`HAND_MIN_AREA`) extends the arm chain to the hand's centre, so a sleeve hanging past a misplaced low-confidence wrist
    keypoint stays a sleeve. A side whose upper-arm bone is not covered by the garment (less than
    ``SLEEVE_COVER`` of its samples) is sleeveless: its sleeve stays empty and the pixels beside
    the arm stay torso; a sleeve under ``SLEEVE_MIN_FRACTION`` of the region (an armhole sliver)
    is dropped. Without a shoulder pair the whole region is torso (no split is possible).
    """
    t0 = SHOULDER_T0 if t0 is None else t0
    region = np.asarray(region, bool)
    empty = np.zeros_like(region)
    k = np.asarray(kps, np.float64).reshape(-1, 3)
    poly = torso_polygon(k)
    if poly is None or not region.any():
        return region.copy(), empty, empty.copy()
    ys, xs = np.nonzero(region)
    px, py = xs.astype(np.float64) + 0.5, ys.astype(np.float64) + 0.5
    H, W = region.shape
    inside = polygon_mask([poly], H, W)[ys, xs]
    d_torso = np.where(inside, 0.0, polygon_edge_distance(px, py, poly))
    S = float(np.hypot(*(k[Joint.L_SHOULDER, :2] - k[Joint.R_SHOULDER, :2])))
    centre = np.mean(np.asarray(poly, np.float64), axis=0)
    arms = {}
    for name, joints in (("left", LEFT_ARM_JOINTS), ("right", RIGHT_ARM_JOINTS)):
        chain = [k[i, :2] for i in joints if joint_scored_off_origin(k, i)]
        if not joint_scored_off_origin(k, joints[0]) or len(chain) < 2:
            arms[name] = (np.full(px.shape, np.inf), np.zeros(px.shape))
            continue
        if _bone_coverage(region, chain[0], chain[1]) < SLEEVE_COVER:   # sleeveless side
            arms[name] = (np.full(px.shape, np.inf), np.zeros(px.shape))
            continue
        skin = None if arm_skin is None else arm_skin[0 if name == "left" else 1]
        if skin is not None and skin.any():
            hand = _hand_point(skin, chain, S)
            if hand is not None:
                chain = chain + [hand]
        d, arc = chain_distance_and_arc(px, py, chain)
        _, t = segment_distance(px, py, chain[0], chain[1])
        ok = t > t0
        if skin is not None and skin.any():
            sy, sx = np.nonzero(skin)
            _, sarc = chain_distance_and_arc(sx + 0.5, sy + 0.5, chain)
            ok &= arc <= np.percentile(sarc, 2) + SKIN_MARGIN * S
        outer = _outer_side(px, py, chain, centre)
        ok &= outer | (d <= _inner_width_limit(d, arc, outer, ok, S))
        arms[name] = (np.where(ok, d, np.inf), t)
    (dl, _), (dr, _) = arms["left"], arms["right"]
    left = (dl < d_torso) & (dl <= dr)
    right = (dr < d_torso) & (dr < dl)
    # slivers at the armhole are not sleeves
    n = region.sum()
    left &= left.sum() >= SLEEVE_MIN_FRACTION * n
    right &= right.sum() >= SLEEVE_MIN_FRACTION * n
    L, R = empty.copy(), empty.copy()
    L[ys[left], xs[left]] = True
    R[ys[right], xs[right]] = True
    return region & ~L & ~R, L, R


def _crotch_gap(row: np.ndarray, mid: float, band: float) -> tuple[int, int] | None:
    """(x0, x1) of the widest run of non-pants pixels x0..x1-1 in a pants row, when it is the crotch.

    The crotch gap has pants on both sides and both of its ends within ``band`` of ``mid``.
    """
    xs = np.nonzero(row)[0]
    if xs.size < 2:
        return None
    steps = np.diff(xs)
    g = int(np.argmax(steps))
    if steps[g] < 2:
        return None
    x0, x1 = int(xs[g] + 1), int(xs[g + 1])
    if abs(x0 - mid) > band or abs(x1 - mid) > band:
        return None
    return x0, x1


def _split_at_crotch(region: np.ndarray, k: np.ndarray, left: np.ndarray, right: np.ndarray
                     ) -> tuple[float, float] | None:
    """Below the hips, rows whose pants are cut by a gap at the body's midline: one leg per side.

    The gap (:func:`_crotch_gap`) must lie within ``CROTCH_BAND`` × hip distance of the mid-hip; the
    run on the left hip's side is the person's left leg. In place; returns the crotch point (x, y):
    the centre of the highest such gap, or None where no row has one.
    """
    if not (joint_scored_off_origin(k, Joint.R_HIP) and joint_scored_off_origin(k, Joint.L_HIP)):
        return None
    rx, lx = float(k[Joint.R_HIP, 0]), float(k[Joint.L_HIP, 0])
    mid, band = (rx + lx) / 2, CROTCH_BAND * abs(lx - rx)
    if band < 1:
        return None
    left_is_right_of_gap = lx > rx
    crotch = None
    for y in range(int(np.ceil(max(k[Joint.R_HIP, 1], k[Joint.L_HIP, 1]))), region.shape[0]):
        gap = _crotch_gap(region[y], mid, band)
        if gap is None:
            continue
        x0, x1 = gap
        if crotch is None:
            crotch = ((x0 + x1) / 2, y + 0.5)
        lo, hi = np.arange(x0), np.arange(x1, region.shape[1])
        lrun, rrun = (hi, lo) if left_is_right_of_gap else (lo, hi)
        left[y, lrun], right[y, lrun] = region[y, lrun], False
        left[y, rrun], right[y, rrun] = False, region[y, rrun]
    return crotch


def _split_above_crotch(region: np.ndarray, k: np.ndarray, crotch: tuple[float, float],
                        left: np.ndarray, right: np.ndarray) -> None:
    """Above the crotch, split the pants on the fly: the straight line from the crotch up to the waist.

    The waist end is the mid-hip's x on the pants' top row (the waistband's centre; joint centres
    give no better estimate of where the fly starts). Nearest leg chains bend this seam towards the
    hip keypoints, whereas the fly runs straight from the waistband to the crotch. In place.
    """
    rows = np.nonzero(region.any(axis=1))[0]
    cx, cy = crotch
    top = float(rows[0]) + 0.5
    if cy - top < 1:
        return
    wx = (float(k[Joint.R_HIP, 0]) + float(k[Joint.L_HIP, 0])) / 2
    ys, xs = np.nonzero(region & (np.arange(region.shape[0])[:, None] + 0.5 < cy))
    line_x = wx + (cx - wx) * (ys + 0.5 - top) / (cy - top)
    is_left = (xs + 0.5 > line_x) if k[Joint.L_HIP, 0] > k[Joint.R_HIP, 0] else (xs + 0.5 < line_x)
    left[ys, xs], right[ys, xs] = is_left, ~is_left


def split_left_right_legs(region: np.ndarray, kps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a pants region into (person's left, person's right) by the nearer leg chain.

    Below the hips, a row that a gap near the midline cuts in two (the crotch) is split at that
    gap instead (:func:`_split_at_crotch`), which needs no knee or ankle keypoints; above the
    highest such gap the split is the fly line from the crotch to the waist
    (:func:`_split_above_crotch`).
    """
    region = np.asarray(region, bool)
    k = np.asarray(kps, np.float64).reshape(-1, 3)
    ys, xs = np.nonzero(region)
    left, right = np.zeros_like(region), np.zeros_like(region)
    if ys.size == 0:
        return left, right
    px, py = xs + 0.5, ys + 0.5
    lc = [k[i, :2] for i in LEFT_LEG_JOINTS if joint_scored_off_origin(k, i)]
    rc = [k[i, :2] for i in RIGHT_LEG_JOINTS if joint_scored_off_origin(k, i)]
    if lc and rc:
        is_left = chain_distance(px, py, lc) < chain_distance(px, py, rc)
    else:
        # Fall back to the body midline: mid-hip, neck or the region's own centre.
        if joint_scored_off_origin(k, Joint.MID_HIP):
            mx = k[Joint.MID_HIP, 0]
        elif joint_scored_off_origin(k, Joint.NECK):
            mx = k[Joint.NECK, 0]
        else:
            mx = float(xs.mean())
        is_left = px > mx
    left[ys[is_left], xs[is_left]] = True
    right[ys[~is_left], xs[~is_left]] = True
    crotch = _split_at_crotch(region, k, left, right)
    if crotch is not None:
        _split_above_crotch(region, k, crotch, left, right)
    return left, right


def split_sleeves_and_pants(gp: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """In place on a GP-label map whose garments carry their torso / left-pants label only: split
    off the sleeves of upper clothes, dresses and coats, and the pants into left and right legs."""
    for torso_label, (_, left_label, right_label) in SLEEVED.items():
        region = gp == torso_label
        if region.any():
            _, left, right = split_sleeves(region, kps, arm_skin=(gp == Label.LEFT_ARM, gp == Label.RIGHT_ARM))
            gp[left], gp[right] = left_label, right_label
    pants = gp == PANTS_PLACEHOLDER
    if pants.any():
        left, right = split_left_right_legs(pants, kps)
        gp[left], gp[right] = Label.LEFT_PANTS, Label.RIGHT_PANTS
    return gp


def _lookup(src: np.ndarray, table: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(src)
    if a.ndim != 2:
        raise ParsingError(f"{what} parsing must be H×W, got shape {a.shape}")
    if a.size and int(a.max()) >= len(table):
        bad = sorted(int(v) for v in np.unique(a) if v >= len(table))
        raise ParsingError(f"{what} parsing has unknown labels {bad}")
    return table[a.astype(np.int64)]


def from_lip(lip: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """29-label GP parsing from a LIP-style (VITON-HD image-parse-v3) parsing plus BODY_25."""
    return split_sleeves_and_pants(_lookup(lip, LIP_TO_GP, "LIP"), kps)


def from_atr(atr: np.ndarray, kps: np.ndarray, chin_ratio: float = CHIN_RATIO) -> np.ndarray:
    """29-label GP parsing from an ATR-style (Dress Code label_maps) parsing plus BODY_25."""
    gp = _lookup(atr, ATR_TO_GP, "ATR")
    k = np.asarray(kps, np.float64).reshape(-1, 3)
    head = np.asarray(atr) == ATR_HEAD
    nose, neck = Joint.NOSE, Joint.NECK
    both = joint_scored_off_origin(k, nose) and joint_scored_off_origin(k, neck)
    if head.any() and both and k[neck, 1] > k[nose, 1]:
        chin = k[nose, 1] + chin_ratio * (k[neck, 1] - k[nose, 1])
        rows = np.arange(head.shape[0])[:, None] + 0.5
        gp[head & (rows > chin)] = Label.NECK
    return split_sleeves_and_pants(gp, kps)
