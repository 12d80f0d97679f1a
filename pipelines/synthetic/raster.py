"""Raster primitives of the procedural catalogue: filled shapes as boolean masks, and the
perspective map that carries a flat garment piece onto the body."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from gpvton_core.conditions.geometry import polygon_mask

Point = tuple[float, float]


def homography(dst: list[Point], src: list[Point]) -> tuple[float, ...]:
    """Coefficients (a..h) of the perspective map dst → src, as PIL's PERSPECTIVE transform wants."""
    A, b = [], []
    for (x, y), (u, v) in zip(dst, src):
        A.append([x, y, 1, 0, 0, 0, -u * x, -u * y]); b.append(u)
        A.append([0, 0, 0, x, y, 1, -v * x, -v * y]); b.append(v)
    return tuple(float(c) for c in np.linalg.solve(np.asarray(A, np.float64), np.asarray(b, np.float64)))


def poly_mask(size: tuple[int, int], polys: list[list[Point]]) -> np.ndarray:
    """Filled polygons (fill only, no outline) on an H×W canvas."""
    return polygon_mask(polys, size[0], size[1], outline=False)


def line_mask(size: tuple[int, int], pts: list[Point], width: float) -> np.ndarray:
    """A thick polyline with round ends (a limb)."""
    h, w = size
    im = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(im)
    wd = max(1, int(round(width)))
    d.line([(float(x), float(y)) for x, y in pts], fill=1, width=wd, joint="curve")
    r = width / 2
    for x, y in (pts[0], pts[-1]):
        d.ellipse([x - r, y - r, x + r, y + r], fill=1)
    return np.asarray(im, dtype=np.uint8).astype(bool)


def ellipse_mask(size: tuple[int, int], cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    h, w = size
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
    return np.asarray(im, dtype=np.uint8).astype(bool)


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` normalised; straight down for a zero vector."""
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.array([0.0, 1.0])
