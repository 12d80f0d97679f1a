"""Framing: put a bare photo into the working 3:4 frame around its subject.

A catalogue photo can be any size and aspect, with the model anywhere in it. GP-VTON was trained
on 3:4 photos where the person fills the frame (VITON-HD, Dress Code), so a raw photo is cropped
(and padded where the frame would leave the photo) to a 3:4 box around the person with a margin.
The box is kept in the original photo's pixels (:class:`CropBox`), so a render can be placed back
into the original photo later.

Rules, in order:

* the subject's box grows by ``margin`` × its height on every side, except on a side where the
  subject is cut off by the photo's edge (nothing to show beyond it: no padding there);
* the box then grows in its short dimension to the 3:4 aspect, centred on the subject;
* where it leaves the photo on one side only, it shifts back inside; where the photo is too small
  in that dimension, it is centred and the rest is padded;
* a photo that is already 3:4 and framed (the subject spans at least ``framed_fraction`` of its
  height: every dataset photo) stays whole (:func:`frame_person` returns the whole-image box).

Product shots get the same treatment around the garment mask, padded on white.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

ASPECT = 3 / 4                  # working frame width / height (512×384, 1024×768)
PERSON_MARGIN = 0.06            # of the subject's height, on each side
GARMENT_MARGIN = 0.08
FRAMED_FRACTION = 0.6           # a 3:4 photo whose subject spans this much of its height is framed
ASPECT_TOLERANCE = 0.02
EDGE_TOUCH = 0.01               # a subject within 1 % of an edge is cut off there


@dataclass(frozen=True)
class CropBox:
    """``[x0, x1) × [y0, y1)`` in original pixels; may reach outside the photo (padding)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]

    def is_whole(self, image_hw: tuple[int, int]) -> bool:
        return (self.x0, self.y0, self.x1, self.y1) == (0, 0, image_hw[1], image_hw[0])

    def scaled(self, sy: float, sx: float) -> "CropBox":
        """The same region in an annotation stored at another size (``sy``, ``sx`` = its size / the photo's)."""
        return CropBox(round(self.x0 * sx), round(self.y0 * sy), round(self.x1 * sx), round(self.y1 * sy))


def whole(image_hw: tuple[int, int]) -> CropBox:
    return CropBox(0, 0, image_hw[1], image_hw[0])


def is_three_four(image_hw: tuple[int, int], tol: float = ASPECT_TOLERANCE) -> bool:
    h, w = image_hw
    return abs(w / h - ASPECT) <= tol * ASPECT


def mask_bbox(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """``(x0, y0, x1, y1)`` of the True pixels (exclusive end), or None when empty."""
    m = np.asarray(mask, bool)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def _fit_axis(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Shift ``[lo, hi)`` inside ``[0, size)`` when it fits; centre it (padding both sides) when not."""
    length = hi - lo
    if length <= size:
        if lo < 0:
            lo, hi = 0.0, length
        elif hi > size:
            lo, hi = size - length, float(size)
    else:
        lo = (size - length) / 2.0
        hi = lo + length
    lo_i = int(np.floor(lo + 1e-6))
    return lo_i, lo_i + int(round(length))


def frame_box(subject: Sequence[float], image_hw: tuple[int, int], *, margin: float,
              aspect: float = ASPECT) -> CropBox:
    """The 3:4 box around ``subject`` = (x0, y0, x1, y1) in a photo of ``image_hw`` (rules above)."""
    h, w = image_hw
    x0, y0, x1, y1 = (float(v) for v in subject)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty subject box {subject}")
    pad = margin * (y1 - y0)
    tx, ty = EDGE_TOUCH * w, EDGE_TOUCH * h
    x0 = x0 if x0 <= tx else x0 - pad
    x1 = x1 if x1 >= w - tx else x1 + pad
    y0 = y0 if y0 <= ty else y0 - pad
    y1 = y1 if y1 >= h - ty else y1 + pad
    bw, bh = x1 - x0, y1 - y0
    if bw / bh < aspect:              # too tall: widen around the centre
        cx, bw = (x0 + x1) / 2.0, bh * aspect
        x0, x1 = cx - bw / 2.0, cx + bw / 2.0
    else:                             # too wide: heighten around the centre
        cy, bh = (y0 + y1) / 2.0, bw / aspect
        y0, y1 = cy - bh / 2.0, cy + bh / 2.0
    # Integer box with the exact aspect: height rounded, width derived from it.
    bh_i = max(4, int(round(bh)))
    bw_i = max(3, int(round(bh_i * aspect)))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    X0, X1 = _fit_axis(cx - bw_i / 2.0, cx + bw_i / 2.0, w)
    Y0, Y1 = _fit_axis(cy - bh_i / 2.0, cy + bh_i / 2.0, h)
    return CropBox(X0, Y0, X1, Y1)


def frame_person(subject: Sequence[float], image_hw: tuple[int, int], *, margin: float = PERSON_MARGIN,
                 framed_fraction: float = FRAMED_FRACTION) -> CropBox:
    """Working-frame box for a model photo: the whole photo when it is already 3:4 and framed."""
    if is_three_four(image_hw) and (subject[3] - subject[1]) >= framed_fraction * image_hw[0]:
        return whole(image_hw)
    return frame_box(subject, image_hw, margin=margin)


def crop_rgb(img: np.ndarray | Image.Image, box: CropBox, *, fill: str | tuple[int, int, int] = "edge") -> np.ndarray:
    """The box's pixels (H×W×3 uint8); outside the photo: replicated edge pixels (model photos:
    the studio background continues) or a fill colour (product shots: white)."""
    a = np.asarray(img.convert("RGB") if isinstance(img, Image.Image) else img, dtype=np.uint8)
    return _crop(a, box, fill)


def crop_labels(labels: np.ndarray, box: CropBox, *, fill: int = 0) -> np.ndarray:
    """The box's labels (H×W uint8), ``fill`` outside the photo."""
    return _crop(np.asarray(labels, dtype=np.uint8), box, fill)


def _crop(a: np.ndarray, box: CropBox, fill) -> np.ndarray:
    h, w = a.shape[:2]
    if box.is_whole((h, w)):
        return a
    pads = [(max(0, -box.y0), max(0, box.y1 - h)), (max(0, -box.x0), max(0, box.x1 - w))]
    inner = a[max(0, box.y0):min(h, box.y1), max(0, box.x0):min(w, box.x1)]
    if not any(p for pair in pads for p in pair):
        return np.ascontiguousarray(inner)
    pads += [(0, 0)] * (a.ndim - 2)
    if isinstance(fill, str):
        return np.pad(inner, pads, mode=fill)
    out = np.empty((box.height, box.width) + a.shape[2:], a.dtype)
    out[...] = np.asarray(fill, a.dtype)
    y, x = pads[0][0], pads[1][0]
    out[y:y + inner.shape[0], x:x + inner.shape[1]] = inner
    return out


def box_keypoints(kps: np.ndarray, box: CropBox) -> np.ndarray:
    """(N,3) keypoints of the photo → keypoints of the box's pixels; missing stay missing."""
    k = np.asarray(kps, np.float32).reshape(-1, 3).copy()
    present = ~np.all(k == 0, axis=1)
    k[present, 0] -= box.x0
    k[present, 1] -= box.y0
    return k


def keypoints_bbox(kps: np.ndarray, min_conf: float = 0.05) -> tuple[float, float, float, float] | None:
    k = np.asarray(kps, np.float32).reshape(-1, 3)
    ok = k[:, 2] > min_conf
    if not ok.any():
        return None
    return float(k[ok, 0].min()), float(k[ok, 1].min()), float(k[ok, 0].max()), float(k[ok, 1].max())
