"""DensePose part-index maps (spec §8.4): one-hot encoding, and the index read back from a colour
rendering.

Part numbering: :class:`gpvton_core.conditions.labels.Part` (official DensePose, checked on the
Dress Code grey maps against the COCO skeleton; "left"/"right" are the person's).

**The colour rendering** (VITON-HD ships DensePose only this way; the Dress Code samples ship it
beside the grey map) is DensePose's fine-segmentation visualiser: ``applyColorMap(uint8(I·255/24),
COLORMAP_PARULA)`` on black, saved as JPEG quality 95 with 4:2:0 chroma subsampling.
:data:`RENDER_PALETTE` is that colormap at the 25 indices; every flat colour of the sample
renderings is one of its entries, so all 24 parts have distinct colours.
Parula's luma rises strictly with the index, so the full-resolution Y channel separates the parts
and the half-resolution chroma only breaks ties. The inversion (:func:`index_from_rendering`):

1. flat pixels (luma within 4 of their 4-neighbours, colour within 6 of a palette entry) take
   that entry;
2. every other pixel — an edge blended by JPEG and resizing, possibly close to the colour of an
   unrelated third part (torso 2 blended with upper leg 10 looks like foot 5/6) — is unmixed: it
   takes the label that dominates the best two-label mixture ``α·A + (1−α)·B`` over the flat labels
   found within ``reach`` pixels in 8 directions (background included, so dark fringes resolve);
3. with ``keypoints``, a hand or foot region whose opposite-side wrist/ankle is more than twice
   nearer than its own gets the mirror label (the rendering's model swaps them when limbs cross).

The inversion is exact up to the 1-pixel boundary ring on a rendering of a known map; on the
Dress Code samples it agrees less with the shipped grey maps, because the rendering is another
DensePose prediction than the grey map (measurements in ``bench/notes/parsing_densepose.md``;
rerun ``python bench/eval_densepose.py``).

Bare photos have neither: :mod:`gpvton_core.conditions.densepose_approximation` approximates the
part index from a person mask and the skeleton.
"""

from __future__ import annotations

import numpy as np

from gpvton_core.conditions.labels import LEFT_FOOT_JOINTS, NUM_PARTS, RIGHT_FOOT_JOINTS, Joint, Part

# OpenCV COLORMAP_PARULA at uint8(i·255/24), RGB; index 0 = background, black.
RENDER_PALETTE = np.array([
    [0, 0, 0], [37, 60, 163], [20, 80, 194], [4, 97, 223], [8, 110, 221], [14, 122, 216],
    [20, 132, 212], [15, 144, 208], [11, 156, 203], [6, 166, 198], [22, 173, 185], [38, 179, 172],
    [55, 185, 159], [86, 187, 144], [114, 189, 130], [145, 191, 116], [170, 189, 105],
    [192, 188, 96], [216, 186, 86], [228, 192, 74], [240, 199, 60], [252, 206, 46],
    [251, 220, 36], [250, 235, 25], [249, 251, 14]], dtype=np.float32)

# Left ↔ right counterpart of every part (torso and background map to themselves).
MIRROR = np.array([0, 1, 2, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 18, 17, 20, 19, 22,
                   21, 24, 23], dtype=np.uint8)

def densepose_onehot(index_map: np.ndarray) -> np.ndarray:
    """25-channel one-hot ×2−1 (float32, 25×H×W): +1 in exactly one channel per pixel."""
    idx = np.asarray(index_map)
    if idx.ndim != 2:
        raise ValueError(f"part-index map must be H×W, got shape {idx.shape}")
    if idx.size and int(idx.max()) >= NUM_PARTS:
        raise ValueError(f"part index {int(idx.max())} out of range 0..24")
    out = np.full((NUM_PARTS,) + idx.shape, -1.0, np.float32)
    np.put_along_axis(out, idx[None].astype(np.int64), 1.0, axis=0)
    return out


# --- colour rendering → part index ---------------------------------------------------------------

# JPEG's RGB → YCbCr (without the +128 offset: only differences matter); chroma down-weighted
# because 4:2:0 stores it at half resolution, so at edges it is the less trustworthy signal.
_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                np.float32)
_CHROMA_WEIGHT = 0.3
_DIRS = ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))
_ROWS = 128    # rows per chunk of the nearest-colour search (bounds memory at 1024×768)


def _ycc(rgb: np.ndarray) -> np.ndarray:
    c = np.asarray(rgb, np.float32) @ _YCC.T
    c[..., 1:] *= np.float32(np.sqrt(_CHROMA_WEIGHT))
    return c


def _shift(a: np.ndarray, dy: int, dx: int, fill) -> np.ndarray:
    """``out[y, x] = a[y + dy, x + dx]`` with ``fill`` outside."""
    H, W = a.shape[:2]
    out = np.full_like(a, fill)
    ys, yd = (slice(dy, H), slice(0, H - dy)) if dy >= 0 else (slice(0, H + dy), slice(-dy, H))
    xs, xd = (slice(dx, W), slice(0, W - dx)) if dx >= 0 else (slice(0, W + dx), slice(-dx, W))
    out[yd, xd] = a[ys, xs]
    return out


def _nearest(c: np.ndarray, pal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest palette entry (uint8) and its distance, for colours ``c`` (H×W×3, palette space)."""
    H, W = c.shape[:2]
    lab = np.empty((H, W), np.uint8)
    dist = np.empty((H, W), np.float32)
    p2 = (pal * pal).sum(-1)
    for y in range(0, H, _ROWS):
        blk = c[y:y + _ROWS]
        d = (blk * blk).sum(-1, keepdims=True) - 2.0 * (blk @ pal.T) + p2
        lab[y:y + _ROWS] = d.argmin(-1)
        dist[y:y + _ROWS] = np.sqrt(np.maximum(d.min(-1), 0.0))
    return lab, dist


def _unmix(c: np.ndarray, cand: np.ndarray, pal: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """For colours ``c`` (N×3) with candidate labels ``cand`` (N×K, 255 = none): the label that
    dominates the best single label or two-label mixture; ``fallback`` where no candidate."""
    n, k = cand.shape
    best = np.full(n, np.inf, np.float32)
    out = fallback.copy()
    for i in range(k):
        a = cand[:, i]
        va = a != 255
        pa = pal[np.where(va, a, 0)]
        e = ((c - pa) ** 2).sum(-1)
        e[~va] = np.inf
        better = e < best
        best[better], out[better] = e[better], a[better]
        for j in range(i + 1, k):
            b = cand[:, j]
            vb = va & (b != 255) & (b != a)
            if not vb.any():
                continue
            pb = pal[np.where(vb, b, 0)]
            ab = pb - pa
            t = np.clip(((c - pa) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-6), 0.0, 1.0)
            e = ((c - pa - t[:, None] * ab) ** 2).sum(-1)
            e[~vb] = np.inf
            better = e < best
            best[better] = e[better]
            out[better] = np.where(t[better] > 0.5, b[better], a[better])
    return out


def index_from_rendering(rgb: np.ndarray, *, keypoints: np.ndarray | None = None, smooth: int = 0,
                         palette: np.ndarray = RENDER_PALETTE, reach: int = 3,
                         flat_tol: float = 4.0, colour_tol: float = 6.0) -> np.ndarray:
    """Part-index map (uint8 H×W, 0..24) from a DensePose colour rendering (uint8 H×W×3).

    Flat pixels take the nearest palette colour; blended edge pixels the dominant label of the
    best two-label mixture among the flat labels within ``reach`` pixels (module docstring).
    ``keypoints`` (BODY_25 (25, 3) in the rendering's pixels, optional) let hand and foot regions
    be swapped to the side whose wrist/ankle they sit at. ``smooth`` > 1 adds a ``smooth``×``smooth``
    majority vote (off by default: the unmixing already resolves the JPEG fringe).
    """
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"rendering must be H×W×3, got shape {a.shape}")
    pal = _ycc(palette)
    c = _ycc(a)
    lab, dist = _nearest(c, pal)
    y = c[..., 0]
    grad = np.zeros_like(y)
    for dy, dx in _DIRS[:4]:
        grad = np.maximum(grad, np.abs(_shift(y, dy, dx, 0.0) - y))
    flat = (grad <= flat_tol) & (dist <= colour_tol)
    edge = ~flat
    if edge.any() and flat.any():
        known = np.where(flat, lab, 255).astype(np.uint8)
        cands = []
        for dy, dx in _DIRS:          # first flat label along each direction, up to `reach` px
            first = np.full(lab.shape, 255, np.uint8)
            for r in range(1, reach + 1):
                s = _shift(known, dy * r, dx * r, 255)
                unset = first == 255
                first[unset] = s[unset]
            cands.append(first[edge])
        lab[edge] = _unmix(c[edge], np.stack(cands, -1), pal, lab[edge])
    if smooth and smooth > 1:
        lab = majority_filter(lab, smooth)
    if keypoints is not None:
        lab = _fix_end_sides(lab, np.asarray(keypoints, np.float32).reshape(-1, 3))
    return lab.astype(np.uint8)


# Hands and feet with the keypoints of their own side (BODY_25), for the side check.
_END_POINTS = {Part.RIGHT_HAND: (Joint.R_WRIST,), Part.LEFT_HAND: (Joint.L_WRIST,),
               Part.RIGHT_FOOT: (Joint.R_ANKLE,) + RIGHT_FOOT_JOINTS,
               Part.LEFT_FOOT: (Joint.L_ANKLE,) + LEFT_FOOT_JOINTS}
_SIDE_RATIO = 0.5


def _fix_end_sides(lab: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """Swap a hand/foot region to the mirror label when the mirror side's wrist/ankle is more than
    twice nearer (closest pixel of the region) than its own: a hand or foot is attached to its own
    wrist or ankle, and a 2:1 margin keeps feet that merely point towards the other leg."""
    out = lab.copy()
    for part, own in _END_POINTS.items():
        mirror = _END_POINTS[int(MIRROR[part])]
        own_pts = [kps[i, :2] for i in own if i < len(kps) and kps[i, 2] > 0]
        mir_pts = [kps[i, :2] for i in mirror if i < len(kps) and kps[i, 2] > 0]
        if not own_pts or not mir_pts:
            continue
        comp, n = connected_components(lab == part)
        for i in range(1, n + 1):
            ys, xs = np.nonzero(comp == i)
            xy = np.stack([xs, ys], 1).astype(np.float32)
            d_own = min(float(np.sqrt(((xy - p) ** 2).sum(1)).min()) for p in own_pts)
            d_mir = min(float(np.sqrt(((xy - p) ** 2).sum(1)).min()) for p in mir_pts)
            if d_mir < _SIDE_RATIO * d_own:
                out[ys, xs] = MIRROR[part]
    return out


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean mask: (int32 labels 1..n, 0 outside; n).

    Run-length union-find: rows are split into runs of True and a run joins every run of the row
    above that it overlaps, so the cost follows the number of runs, not of pixels.
    """
    m = np.asarray(mask, bool)
    H, W = m.shape
    out = np.zeros((H, W), np.int32)
    parent: list[int] = [0]

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    runs: list[tuple[int, int, int, int]] = []        # (row, start, end, id)
    prev: list[tuple[int, int, int]] = []
    for y in range(H):
        row = m[y]
        if not row.any():
            prev = []
            continue
        d = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
        starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
        cur = []
        j = 0
        for s, e in zip(starts.tolist(), ends.tolist()):
            rid = len(parent)
            parent.append(rid)
            while j < len(prev) and prev[j][1] <= s:
                j += 1
            k = j
            while k < len(prev) and prev[k][0] < e:
                ra, rb = find(prev[k][2]), find(rid)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
                k += 1
            cur.append((s, e, rid))
            runs.append((y, s, e, rid))
        prev = cur
    roots: dict[int, int] = {}
    for y, s, e, rid in runs:
        out[y, s:e] = roots.setdefault(find(rid), len(roots) + 1)
    return out, len(roots)


def majority_filter(labels: np.ndarray, k: int) -> np.ndarray:
    """k×k majority vote over a label map (zero padding; the centre label wins ties)."""
    present = np.unique(labels)
    oh = (labels[..., None] == present).astype(np.int16)      # H×W×L
    a = k // 2
    p = np.pad(oh, ((a + 1, k - 1 - a), (a + 1, k - 1 - a), (0, 0)))
    c = p.cumsum(0, dtype=np.int16)
    c = c[k:] - c[:-k]
    c = c.cumsum(1, dtype=np.int16)
    c = c[:, k:] - c[:, :-k]
    return present[(c * 2 + oh).argmax(-1)]


def agreement(pred: np.ndarray, ref: np.ndarray, *, foreground_only: bool = False) -> float:
    """Fraction of pixels whose part index agrees (optionally over ref-foreground pixels only)."""
    p, r = np.asarray(pred), np.asarray(ref)
    if p.shape != r.shape:
        raise ValueError(f"shape mismatch {p.shape} vs {r.shape}")
    if foreground_only:
        m = r > 0
        return float((p[m] == r[m]).mean()) if m.any() else float("nan")
    return float((p == r).mean())
