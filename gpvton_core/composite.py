"""Delivery composition: keep the photo's own pixels where nothing may change, and put the try-on
back into the original photo.

The official composition regenerates every pixel, so faces, hair, hands and the background come
out of the generator, softened. ``paste-back`` takes the photo's pixels wherever the
generator-stage preserve region (face, hair, hands, the other garments, ...) or the background
says they must not change, except where the warped garment now lies, and blends across a narrow
feathered band inside that region so that no seam shows. Deeper than the band the delivered pixels
*are* the photo's.

All functions take and return float tensors in [0, 1] (B×C×H×W) or NumPy uint8 images, no I/O.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

Composite = Literal["official", "paste-back"]


def _erode(mask: Tensor, k: int = 3) -> Tensor:
    return -F.max_pool2d(-mask, k, stride=1, padding=k // 2)


def _dilate(mask: Tensor, k: int) -> Tensor:
    return F.max_pool2d(mask, k, stride=1, padding=k // 2) if k > 1 else mask


def band_width(height: int) -> int:
    """Feather band in pixels: 4 at 512 rows, scaled with the image, at least 2."""
    return max(2, round(4 * height / 512))


def keep_region(preserve_gen: Tensor, background: Tensor, garment: Tensor, *, clearance: int) -> Tensor:
    """Where the photo's pixels are delivered (B×1×H×W in {0,1}): the generator-stage preserve
    region plus the background, minus the warped garment grown by ``clearance`` pixels (the new
    garment may cover what was background or another part before)."""
    keep = ((preserve_gen > 0.5) | (background > 0.5)).to(preserve_gen.dtype)
    return keep * (1 - _dilate((garment > 0.5).to(keep.dtype), 2 * clearance + 1))


def feather(keep: Tensor, band: int) -> Tensor:
    """Alpha in [0, 1]: a linear ramp over the ``band`` pixels inside ``keep``'s boundary, exactly 1
    deeper inside (the mean of ``band`` successive 3×3 erosions) and 0 outside."""
    alpha = torch.zeros_like(keep)
    m = keep
    for _ in range(band):
        m = _erode(m)
        alpha = alpha + m
    return alpha / band


def paste_back(tryon: Tensor, photo: Tensor, alpha: Tensor) -> Tensor:
    """``alpha · photo + (1 − alpha) · tryon``; where alpha is 1 the result is the photo exactly."""
    return torch.where(alpha >= 1, photo, alpha * photo + (1 - alpha) * tryon)


def seam_energy(image: Tensor, region: Tensor, width: int = 2) -> Tensor:
    """Mean gradient magnitude (per image) along ``region``'s boundary band: a visible seam raises it.

    The band is the pixels within ``width`` of the boundary on either side.
    """
    r = (region > 0.5).to(image.dtype)
    k = 2 * width + 1
    band = _dilate(r, k) * (1 - _erode(r, k))
    gray = image.mean(dim=1, keepdim=True)
    gx = F.pad(gray[..., :, 1:] - gray[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(gray[..., 1:, :] - gray[..., :-1, :], (0, 0, 0, 1))
    mag = torch.sqrt(gx * gx + gy * gy)
    return (mag * band).flatten(1).sum(1) / band.flatten(1).sum(1).clamp_min(1)


def seam_deviation(image: Tensor, photo: Tensor, region: Tensor, width: int = 2) -> Tensor:
    """How far the edge energy along ``region``'s boundary strays from the photo's own there:
    ``|E(image) / E(photo) − 1|`` with E = :func:`seam_energy`. A hard seam pushes it up (energy the
    photo does not have), and so does a smeared, redrawn boundary (energy it lost); 0 is the photo."""
    return (seam_energy(image, region, width) / seam_energy(photo, region, width).clamp_min(1e-6) - 1).abs()


def place_in_photo(tryon: np.ndarray, photo: np.ndarray, box: Sequence[int] | None,
                   alpha: np.ndarray | None = None) -> np.ndarray:
    """The try-on (working size, uint8 H×W×3) put back into the original ``photo`` (uint8 h×w×3).

    ``box`` = [x0, y0, x1, y1] of the working frame in the photo's pixels (None: the whole photo);
    parts of the box outside the photo (padding) are dropped. With ``alpha`` (paste-back weights at
    working size), the photo's own full-resolution pixels are kept where alpha is 1 instead of
    their resampled copies.
    """
    h, w = photo.shape[:2]
    x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
    bw, bh = x1 - x0, y1 - y0
    up = np.asarray(Image.fromarray(tryon).resize((bw, bh), Image.BICUBIC), np.float32)
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    out = photo.copy()
    if cx1 <= cx0 or cy1 <= cy0:
        return out
    region = up[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    if alpha is not None:
        a = np.asarray(Image.fromarray(np.asarray(alpha, np.float32)).resize((bw, bh), Image.BILINEAR))
        a = np.clip(a[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0], 0.0, 1.0)[..., None]
        orig = photo[cy0:cy1, cx0:cx1].astype(np.float32)
        region = np.where(a >= 1.0 - 1e-6, orig, a * orig + (1 - a) * region)
    out[cy0:cy1, cx0:cx1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    return out
