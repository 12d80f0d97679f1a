"""Source image bytes → Pillow images and label arrays, with the conversions preprocess accepts.

Image modes are converted, not rejected, where the meaning is clear: CMYK → RGB,
RGBA/LA/P-with-transparency → composited on white, 16-bit/32-bit grey → 8-bit (scaled by the
actual bit depth), 1-bit/L/P → RGB. Images larger than ``max_pixels`` are rejected before their
pixels are decoded (decompression-bomb guard): catalogue inputs are untrusted.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 64_000_000


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode image bytes; refuse images above ``max_pixels`` before decoding their pixels."""
    if len(data) == 0:
        raise ValueError("empty file (0 bytes)")

    def too_large(w: int, h: int) -> ValueError:
        return ValueError(f"image too large: {w}x{h} = {w * h} pixels exceeds the limit of "
                          f"{max_pixels} (decompression-bomb guard)")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # we apply our own limit
        try:
            im = Image.open(io.BytesIO(data))       # reads the header only
        except Image.DecompressionBombError as exc:  # Pillow's own hard limit (2× its default)
            raise ValueError(f"image too large ({exc}) (decompression-bomb guard)") from None
    w, h = im.size
    if w * h > max_pixels:
        raise too_large(w, h)
    im.load()
    return ImageOps.exif_transpose(im)     # camera photos: honour the EXIF orientation


def to_rgb(im: Image.Image) -> tuple[Image.Image, str | None]:
    """Convert any mode to RGB; returns the image and a note on what was converted."""
    mode = im.mode
    if mode == "RGB":
        return im, None
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im)
        a = a.astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB"), f"{mode}→RGB (scaled to 8 bit)"
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if mode in ("RGBA", "LA", "PA") or im.mode == "RGBA":
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB"), f"{mode}→RGB (alpha composited on white)"
    return im.convert("RGB"), f"{mode}→RGB"


def to_labels(im: Image.Image, what: str) -> np.ndarray:
    """A label map image → uint8 H×W of the integer labels (P index, L value, or R of R=G=B)."""
    if im.mode in ("P", "L"):
        return np.asarray(im, dtype=np.uint8)
    if im.mode in ("RGB", "RGBA"):
        a = np.asarray(im.convert("RGB"))
        if not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])):
            raise ValueError(f"{what}: an RGB label map must have R=G=B")
        return a[..., 0].copy()
    if im.mode in ("I;16", "I", "I;16B", "I;16L"):
        a = np.asarray(im)
        if a.max() > 255:
            raise ValueError(f"{what}: label values above 255")
        return a.astype(np.uint8)
    raise ValueError(f"{what}: unsupported label-map mode {im.mode}")
