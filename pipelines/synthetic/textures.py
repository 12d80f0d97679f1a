"""Fabric textures of the procedural garments, scaled to the image size so that a pattern looks
the same at every resolution."""

from __future__ import annotations

import math

import numpy as np

TEXTURES = ("solid", "stripes", "checks", "dots", "gradient")


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(15, 241, size=3).astype(np.float32)


def _pattern(rng: np.random.Generator, kind: str, xx: np.ndarray, yy: np.ndarray, s: float,
             c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """The two-colour pattern of ``kind`` (H×W×3 float) before shading."""
    h, w = xx.shape
    if kind == "solid":
        return np.broadcast_to(c1, (h, w, 3)).copy()
    if kind == "stripes":
        period = float(rng.uniform(10, 36)) * s
        angle = float(rng.choice([0.0, 90.0, 45.0, -45.0]))
        t = xx * math.cos(math.radians(angle)) + yy * math.sin(math.radians(angle))
        duty = float(rng.uniform(0.3, 0.7))
        m = ((t / period) % 1.0) < duty
        return np.where(m[..., None], c1, c2)
    if kind == "checks":
        p = float(rng.uniform(12, 40)) * s
        m = ((np.floor(xx / p) + np.floor(yy / p)) % 2) == 0
        return np.where(m[..., None], c1, c2)
    if kind == "dots":
        p = float(rng.uniform(14, 34)) * s
        r = p * float(rng.uniform(0.18, 0.33))
        off = (yy // p) % 2 * (p / 2)
        dx = ((xx + off) % p) - p / 2
        dy = (yy % p) - p / 2
        m = dx * dx + dy * dy < r * r
        return np.where(m[..., None], c1, c2)
    if kind == "gradient":
        a = float(rng.uniform(0, 2 * math.pi))
        t = (xx * math.cos(a) + yy * math.sin(a))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        return c1 * (1 - t[..., None]) + c2 * t[..., None]
    raise ValueError(f"unknown texture {kind!r}")


def make_texture(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """An H×W×3 float32 texture (0..255) of the given kind, scaled to the image size."""
    s = max(h, w) / 512.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c1, c2 = _colour(rng), _colour(rng)
    if np.abs(c1 - c2).sum() < 120:  # keep patterns visible
        c2 = 255.0 - c1
    tex = _pattern(rng, kind, xx, yy, s, c1, c2)
    # mild fabric shading: soft vertical folds
    folds = 1.0 - 0.06 * (0.5 + 0.5 * np.sin(xx / (23.0 * s) + float(rng.uniform(0, 6.28))))
    return (tex * folds[..., None]).astype(np.float32)
