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

Accuracy (``python bench/eval_parsing.py``; derivation 1.2.0): IoU against GP-VTON's released
parsing (``parse-bytedance_512``) on the six shared VITON-HD ids, all of which agree with it on the
garment type (upper + pants; 00034 is sleeveless, so it has no sleeve classes)::

    item      upper    l_pants  r_pants  neck     l_arm    r_arm    l_sleeve r_sleeve mIoU
    00006_00  0.920    0.929    0.878    0.910    0.720    0.838    0.598    0.868    0.833
    00008_00  0.906    0.755    0.946    0.925    0.783    0.913    0.791    0.817    0.854
    00013_00  0.926    0.859    0.851    0.935    0.918    0.826    0.816    0.460    0.824
    00017_00  0.854    0.940    0.962    0.843    0.759    0.363    0.805    0.693    0.777
    00034_00  0.965    0.933    0.936    0.867    0.923    0.835    -        -        0.910
    00035_00  0.893    0.795    0.797    0.930    0.811    0.846    0.864    0.821    0.845
    mean      0.911    0.869    0.895    0.902    0.819    0.770    0.775    0.732    0.834
    pooled    0.912    0.881    0.894    0.902    0.876    0.798    0.791    0.800    0.857
    ceiling   0.964    0.919    0.948    0.902    0.819    0.770    0.913    0.923    0.895

``mean`` is per class over the items where the class occurs, ``mIoU`` its mean (derivation
1.0.0: 0.826, 1.1.0: 0.828; 1.2.0 adds the fly line, 0.832, and the sleeve tube limit, 0.834,
no item lower by more than 0.001); ``pooled`` sums intersections and unions over the items.
``ceiling`` keeps the derived garment and arm outlines but takes GP-VTON's labels inside them,
i.e. a perfect sleeve, pants and left/right arm split: 0.895, so no split rule reaches 0.90 on
LIP's outlines.

The arms and the neck are at their ceiling already: LIP and GP-VTON never disagree on an arm's
side (no pixel is left arm in one and right arm in the other on any item), and both count the
hand as arm. Their errors are LIP's outlines, which the photo shows to be wrong, not a convention:
on 00017 LIP labels 827 px of the T-shirt hanging beside the right forearm as arm (r_arm 0.363);
LIP's hands bleed into the pants (00008: 506 px of left "arm" that are pants; 00006: 284 px) or
sit a few pixels off the photo's hand (00006 l_arm 0.720); sleeve hems and the armholes of
sleeveless tops differ by a few pixels in either direction. LIP and GP-VTON are not shifted
against each other (best global offset 0 on five items, 1 px on one). What keeps the split
itself from the ceiling is visible only in the photo: GP-VTON puts the sleeve seam on the
garment's own seam and the pants split on the fly, which move with the body's turn (the far
sleeve narrows, the fly leaves the mid-hip by up to 0.16 shoulder widths), while keypoints give
joint centres.

Rules tried and rejected on these items (mIoU): a fixed arm radius around the bone (≤ 0.82), a
shoulder cap outside the torso side line (0.823), vertical torso sides (0.80), DensePose arm parts
under the garment (0.818; eroded by 0.05 S: 0.836; intersected with the pose rule: 0.831;
item-dependent either way), DensePose leg parts for the pants (0.819). Against 1.1.0 (0.828):
moving arm pixels within r px of the pants to the pants (LIP's hands bleed there; r = 1, 2, 3:
0.827, 0.823, 0.818, 00006 l_arm 0.720 → 0.646 at r = 1), eroding the arms against the background
(r = 1: 0.821), growing them into it (r = 1: 0.829 but r_arm lower and three items worse; r = 2:
0.825), shifting the pants split by a constant 0.05 hip widths towards the person's right (per
item +0.036 … −0.038; the best shift per item ranges 0 … 0.2, following the turn), the sleeve
tube alone or OR-ed with the nearest-chain rule (≤ 0.774). Against 1.2.0 (0.834): fly line to the
waistband centre of the pants' silhouette (pants mean 0.874 vs 0.882), through the mid-hip
keypoint (0.879), vertical (0.869), towards the neck (0.863); pixels equidistant to arm and torso
as sleeve (0.829); the shoulder cap above the shoulder line as sleeve (≤ 0.822); a torso
quadrilateral widened at the armpits or narrowed at the shoulders (≤ 0.821, ≤ 0.823).
``SHOULDER_T0``, ``SLEEVE_COVER`` and the tube's bin / percentile change the mean by < 0.0005.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw

NUM_LABELS = 29
LABEL_NAMES = ("background", "hat", "hair", "glove", "glasses", "upper", "dresses", "coat",
               "socks", "left_pants", "right_pants", "neck", "scarf", "skirts", "face",
               "left_arm", "right_arm", "left_leg", "right_leg", "left_shoe", "right_shoe",
               "left_sleeve_upper", "right_sleeve_upper", "bag", "left_sleeve_dresses",
               "right_sleeve_dresses", "left_sleeve_coat", "right_sleeve_coat", "belt")
# Classes scored against GP-VTON's own parsing (garment, arm and neck classes).
SCORED_CLASSES = (5, 6, 7, 9, 10, 11, 13, 15, 16, 21, 22, 24, 25, 26, 27)

# Garment classes with their (torso, left sleeve, right sleeve) GP labels.
SLEEVED = {5: (5, 21, 22), 6: (6, 24, 25), 7: (7, 26, 27)}
PANTS_PLACEHOLDER = 9   # pants are written as 9 first and split into 9/10

# Direct label maps (index = source label). Garments that are split later map to their torso
# label / the left-pants label first.
LIP_TO_GP = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
                     dtype=np.uint8)
ATR_TO_GP = np.array([0, 1, 2, 4, 5, 13, 9, 6, 28, 19, 20, 14, 17, 18, 15, 16, 23, 12],
                     dtype=np.uint8)
ATR_HEAD = 11
CHIN_RATIO = 0.42

# Sleeve split parameters (fractions of the shoulder width), tuned on the VITON-HD samples.
HIP_WIDEN = 0.0
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


# --- geometry helpers ---------------------------------------------------------------------------
def _present(k: np.ndarray, i: int) -> bool:
    return bool(k[i, 2] > 0 and (k[i, 0] != 0 or k[i, 1] != 0))


def _seg_dist(px: np.ndarray, py: np.ndarray, a, b) -> tuple[np.ndarray, np.ndarray]:
    """Distance from points to segment a→b and the projection parameter t (unclipped)."""
    ax, ay = float(a[0]), float(a[1])
    bx, by = float(b[0]), float(b[1])
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    if L2 < 1e-9:
        return np.hypot(px - ax, py - ay), np.zeros_like(px)
    t = ((px - ax) * dx + (py - ay) * dy) / L2
    tc = np.clip(t, 0.0, 1.0)
    return np.hypot(px - (ax + tc * dx), py - (ay + tc * dy)), t


def _chain_param(px, py, pts: list) -> tuple[np.ndarray, np.ndarray]:
    """Distance to a polyline and the arc length of the nearest point on it."""
    d = np.full(px.shape, np.inf)
    arc = np.zeros(px.shape)
    start = 0.0
    for a, b in zip(pts[:-1], pts[1:]):
        di, t = _seg_dist(px, py, a, b)
        L = float(np.hypot(b[0] - a[0], b[1] - a[1]))
        better = di < d
        d = np.where(better, di, d)
        arc = np.where(better, start + np.clip(t, 0.0, 1.0) * L, arc)
        start += L
    return d, arc


def _chain_dist(px, py, pts: list) -> np.ndarray:
    if len(pts) == 1:
        return np.hypot(px - pts[0][0], py - pts[0][1])
    d = np.full(px.shape, np.inf)
    for a, b in zip(pts[:-1], pts[1:]):
        d = np.minimum(d, _seg_dist(px, py, a, b)[0])
    return d


def _polygon_mask(poly, height: int, width: int) -> np.ndarray:
    img = Image.new("L", (width, height), 0)
    ImageDraw.Draw(img).polygon([tuple(map(float, p)) for p in poly], fill=1, outline=1)
    return np.asarray(img, bool)


def _poly_dist(px, py, poly) -> np.ndarray:
    d = np.full(px.shape, np.inf)
    n = len(poly)
    for i in range(n):
        d = np.minimum(d, _seg_dist(px, py, poly[i], poly[(i + 1) % n])[0])
    return d


def torso_polygon(kps: np.ndarray, widen: float = HIP_WIDEN) -> list | None:
    """(RShoulder, LShoulder, LHip', RHip') with the hips widened outwards by ``widen``·shoulder width.

    Missing hips are replaced by points below the shoulders (1.5 shoulder widths), which matches
    upper-body crops.
    """
    k = np.asarray(kps, np.float64).reshape(-1, 3)
    if not (_present(k, 2) and _present(k, 5)):
        return None
    rs, ls = k[2, :2], k[5, :2]
    S = float(np.hypot(*(ls - rs)))
    if S < 1:
        return None
    down = np.array([0.0, 1.5 * S])
    rh = k[9, :2] if _present(k, 9) else rs + down
    lh = k[12, :2] if _present(k, 12) else ls + down
    side = (ls - rs) / S                      # unit vector from the person's right to left
    return [rs, ls, lh + widen * S * side, rh - widen * S * side]


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
        d, _ = _seg_dist(px, py, a, b)
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


def split_sleeves(region: np.ndarray, kps: np.ndarray, *, widen: float | None = None,
                  t0: float | None = None, arm_skin: tuple[np.ndarray, np.ndarray] | None = None
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
    widen = HIP_WIDEN if widen is None else widen
    t0 = SHOULDER_T0 if t0 is None else t0
    region = np.asarray(region, bool)
    empty = np.zeros_like(region)
    k = np.asarray(kps, np.float64).reshape(-1, 3)
    poly = torso_polygon(k, widen)
    if poly is None or not region.any():
        return region.copy(), empty, empty.copy()
    ys, xs = np.nonzero(region)
    px, py = xs.astype(np.float64) + 0.5, ys.astype(np.float64) + 0.5
    H, W = region.shape
    inside = _polygon_mask(poly, H, W)[ys, xs]
    d_torso = np.where(inside, 0.0, _poly_dist(px, py, poly))
    S = float(np.hypot(*(k[5, :2] - k[2, :2])))
    centre = np.mean(np.asarray(poly, np.float64), axis=0)
    arms = {}
    for name, (s, e, w) in (("left", (5, 6, 7)), ("right", (2, 3, 4))):
        chain = [k[i, :2] for i in (s, e, w) if _present(k, i)]
        if not _present(k, s) or len(chain) < 2:
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
        d, arc = _chain_param(px, py, chain)
        _, t = _seg_dist(px, py, chain[0], chain[1])
        ok = t > t0
        if skin is not None and skin.any():
            sy, sx = np.nonzero(skin)
            _, sarc = _chain_param(sx + 0.5, sy + 0.5, chain)
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
    if not (_present(k, 9) and _present(k, 12)):
        return None
    rx, lx = float(k[9, 0]), float(k[12, 0])
    mid, band = (rx + lx) / 2, CROTCH_BAND * abs(lx - rx)
    if band < 1:
        return None
    left_is_right_of_gap = lx > rx
    crotch = None
    for y in range(int(np.ceil(max(k[9, 1], k[12, 1]))), region.shape[0]):
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
    wx = (float(k[9, 0]) + float(k[12, 0])) / 2
    ys, xs = np.nonzero(region & (np.arange(region.shape[0])[:, None] + 0.5 < cy))
    line_x = wx + (cx - wx) * (ys + 0.5 - top) / (cy - top)
    is_left = (xs + 0.5 > line_x) if k[12, 0] > k[9, 0] else (xs + 0.5 < line_x)
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
    lc = [k[i, :2] for i in (12, 13, 14) if _present(k, i)]
    rc = [k[i, :2] for i in (9, 10, 11) if _present(k, i)]
    if lc and rc:
        is_left = _chain_dist(px, py, lc) < _chain_dist(px, py, rc)
    else:
        # Fall back to the body midline: mid-hip, neck or the region's own centre.
        if _present(k, 8):
            mx = k[8, 0]
        elif _present(k, 1):
            mx = k[1, 0]
        else:
            mx = float(xs.mean())
        is_left = px > mx
    left[ys[is_left], xs[is_left]] = True
    right[ys[~is_left], xs[~is_left]] = True
    crotch = _split_at_crotch(region, k, left, right)
    if crotch is not None:
        _split_above_crotch(region, k, crotch, left, right)
    return left, right


def _finish(gp: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """Sleeve split for 5/6/7 and the left/right pants split, in place on a GP-label map."""
    for torso_label, (t, l, r) in SLEEVED.items():
        region = gp == torso_label
        if region.any():
            _, L, R = split_sleeves(region, kps, arm_skin=(gp == 15, gp == 16))
            gp[L], gp[R] = l, r
    pants = gp == PANTS_PLACEHOLDER
    if pants.any():
        L, R = split_left_right_legs(pants, kps)
        gp[L], gp[R] = 9, 10
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
    return _finish(_lookup(lip, LIP_TO_GP, "LIP"), kps)


def from_atr(atr: np.ndarray, kps: np.ndarray, chin_ratio: float = CHIN_RATIO) -> np.ndarray:
    """29-label GP parsing from an ATR-style (Dress Code label_maps) parsing plus BODY_25."""
    gp = _lookup(atr, ATR_TO_GP, "ATR")
    k = np.asarray(kps, np.float64).reshape(-1, 3)
    head = np.asarray(atr) == ATR_HEAD
    if head.any() and _present(k, 0) and _present(k, 1) and k[1, 1] > k[0, 1]:
        chin = k[0, 1] + chin_ratio * (k[1, 1] - k[0, 1])
        rows = np.arange(head.shape[0])[:, None] + 0.5
        gp[head & (rows > chin)] = 11
    return _finish(gp, kps)


def validate(gp: np.ndarray) -> None:
    a = np.asarray(gp)
    if a.ndim != 2:
        raise ParsingError(f"parsing must be H×W, got {a.shape}")
    if a.size and int(a.max()) >= NUM_LABELS:
        raise ParsingError(f"parsing has labels ≥ {NUM_LABELS}: {sorted(set(np.unique(a)) - set(range(NUM_LABELS)))}")


def class_iou(pred: np.ndarray, ref: np.ndarray, classes: Iterable[int] = SCORED_CLASSES) -> dict[int, float]:
    """Per-class IoU over the classes present in pred or ref (absent from both → skipped)."""
    p, r = np.asarray(pred), np.asarray(ref)
    if p.shape != r.shape:
        raise ValueError(f"shape mismatch {p.shape} vs {r.shape}")
    out = {}
    for c in classes:
        a, b = p == c, r == c
        union = np.logical_or(a, b).sum()
        if union:
            out[int(c)] = float(np.logical_and(a, b).sum() / union)
    return out


def mean_iou(ious: dict[int, float]) -> float:
    return float(np.mean(list(ious.values()))) if ious else float("nan")


def restrict_to_mask(labels: np.ndarray, person: np.ndarray) -> tuple[np.ndarray, float]:
    """``labels`` (parsing or DensePose index, 0 = background) with everything outside the
    ``person`` mask set to 0, and the fraction of labelled pixels that was cut.

    An estimator that meets a busy background (leaves, logos) labels parts of it as clothes or
    body; the person mask of preprocessing knows better where the person is."""
    lab = np.asarray(labels)
    keep = np.asarray(person, bool)
    if keep.shape != lab.shape:
        raise ValueError(f"person mask {keep.shape} and labels {lab.shape} sizes differ")
    labelled = lab > 0
    n = int(labelled.sum())
    cut = labelled & ~keep
    out = lab.copy()
    out[cut] = 0
    return out, (float(cut.sum()) / n if n else 0.0)
