"""Fit any input to the working resolution (512×384 or 1024×768, aspect 3:4), as VITON-HD does.

``mode="crop"`` scales by ``max(H/h, W/w)`` (cover) and centre-crops the excess; for 3:4 inputs
(every VITON-HD / Dress Code image) that is a plain resize. ``mode="pad"`` scales by ``min``
(contain) and pads with a fill value instead (white for product photos, 0 for label maps).

RGB images are resampled with bicubic filtering, label maps and masks with nearest, keypoints
are mapped with the same affine transform (missing points stay missing; points that fall
outside the output become missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

RESOLUTIONS: dict[int, tuple[int, int]] = {512: (512, 384), 1024: (1024, 768)}
# Preview sizes: not official GP-VTON resolutions, but the networks are fully convolutional
# (multiples of 32), so tests, demos and quick looks run the same code path at a fraction of the cost.
PREVIEW_RESOLUTIONS: dict[int, tuple[int, int]] = {128: (128, 96), 256: (256, 192)}
ALL_RESOLUTIONS: dict[int, tuple[int, int]] = {**PREVIEW_RESOLUTIONS, **RESOLUTIONS}


def working_size(resolution: int) -> tuple[int, int]:
    """(H, W) for a working resolution (512 → 512×384, 1024 → 1024×768; previews 256, 128)."""
    try:
        return ALL_RESOLUTIONS[int(resolution)]
    except KeyError:
        raise ValueError(f"resolution must be one of {sorted(ALL_RESOLUTIONS)}, got {resolution!r}") from None


@dataclass(frozen=True)
class Fit:
    """Affine map source pixel → destination pixel: ``dst = src * scale + offset``."""

    src_hw: tuple[int, int]
    dst_hw: tuple[int, int]
    scale: float
    offset_x: float
    offset_y: float

    @property
    def identity(self) -> bool:
        return self.src_hw == self.dst_hw and self.scale == 1.0


def compute_fit(src_hw: tuple[int, int], dst_hw: tuple[int, int],
                mode: Literal["crop", "pad"] = "crop") -> Fit:
    h, w = src_hw
    H, W = dst_hw
    if h <= 0 or w <= 0:
        raise ValueError(f"empty image {w}x{h}")
    s = max(H / h, W / w) if mode == "crop" else min(H / h, W / w)
    return Fit(src_hw=(h, w), dst_hw=(H, W), scale=s,
               offset_x=(W - w * s) / 2.0, offset_y=(H - h * s) / 2.0)


def _apply(img: Image.Image, fit: Fit, resample: int, fill) -> Image.Image:
    H, W = fit.dst_hw
    if fit.identity:
        return img
    h, w = fit.src_hw
    if abs(fit.offset_x) < 1e-6 and abs(fit.offset_y) < 1e-6:
        return img.resize((W, H), resample)
    # Source box that maps onto the destination (crop), or scaled image pasted (pad).
    nw, nh = max(1, round(w * fit.scale)), max(1, round(h * fit.scale))
    scaled = img.resize((nw, nh), resample)
    ox, oy = int(round(fit.offset_x)), int(round(fit.offset_y))
    canvas = Image.new(img.mode, (W, H), fill)
    canvas.paste(scaled, (ox, oy))
    return canvas


def resize_rgb(img: np.ndarray | Image.Image, dst_hw: tuple[int, int], *,
               mode: Literal["crop", "pad"] = "crop", fill=(255, 255, 255)) -> np.ndarray:
    """RGB uint8 H×W×3 at ``dst_hw`` (bicubic)."""
    pil = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img, np.uint8))
    pil = pil.convert("RGB")
    fit = compute_fit((pil.height, pil.width), dst_hw, mode)
    return np.asarray(_apply(pil, fit, Image.BICUBIC, tuple(fill)), dtype=np.uint8)


def resize_labels(labels: np.ndarray, dst_hw: tuple[int, int], *,
                  mode: Literal["crop", "pad"] = "crop", fill: int = 0) -> np.ndarray:
    """Label map / mask (uint8 H×W) at ``dst_hw`` with nearest-neighbour sampling."""
    a = np.asarray(labels)
    if a.dtype != np.uint8:
        if a.min() < 0 or a.max() > 255:
            raise ValueError("label values must lie in 0..255")
        a = a.astype(np.uint8)
    pil = Image.fromarray(a, mode="L")
    fit = compute_fit(a.shape[:2], dst_hw, mode)
    return np.asarray(_apply(pil, fit, Image.NEAREST, int(fill)), dtype=np.uint8)


def transform_keypoints(kps: np.ndarray, fit: Fit) -> np.ndarray:
    """Map (N,3) keypoints (x, y, conf) through ``fit``; missing (0,0,0) stay missing."""
    k = np.asarray(kps, dtype=np.float32).reshape(-1, 3).copy()
    present = ~np.all(k == 0, axis=1)
    k[present, 0] = k[present, 0] * fit.scale + fit.offset_x
    k[present, 1] = k[present, 1] * fit.scale + fit.offset_y
    H, W = fit.dst_hw
    outside = present & ((k[:, 0] < 0) | (k[:, 1] < 0) | (k[:, 0] > W) | (k[:, 1] > H))
    k[outside] = 0.0
    return k
