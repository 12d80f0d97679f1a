"""Condition-shard rows → arrays: the one decoder of the shards' PNG columns.

Render, training, eval and the report all read persons and garments rows; decoding them here
with one rule per column keeps them from drifting apart (a label map read as luminance in one
place and as palette indices in another would silently change every class id).

* photos (``image_png``) decode to ``H×W×3`` uint8 RGB (alpha dropped, grey expanded);
* label maps (``parsing_png``, ``densepose_png``, ``mask_png``, ``parts_png``) decode to ``H×W``
  uint8 *values*: an ``L`` image as stored, a palette (``P``) image by its indices, never by
  the palette's colours.

Pure: bytes in, NumPy out (Pillow only); no files, no network.
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np
from PIL import Image

PERSON_LABEL_COLUMNS = ("parsing_png", "densepose_png")
GARMENT_LABEL_COLUMNS = ("mask_png", "parts_png")


def decode_rgb(data: bytes) -> np.ndarray:
    """A PNG/JPEG photo → ``H×W×3`` uint8 RGB."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def decode_labels(data: bytes) -> np.ndarray:
    """A single-channel label PNG → ``H×W`` uint8 values (palette images by index)."""
    with Image.open(io.BytesIO(data)) as im:
        if im.mode not in ("L", "P"):
            if im.mode in ("I", "I;16", "1"):
                im = im.convert("L")
            else:
                raise ValueError(f"a label map must be single-channel (L or P), not {im.mode}")
        return np.asarray(im, dtype=np.uint8)


def decode_person_row(row: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A persons row → ``image`` (RGB), ``parsing`` (GP-29), ``densepose`` (part index),
    ``keypoints`` (25×3 float32, zeros when the row has none)."""
    kp = row.get("keypoints")
    return {
        "image": decode_rgb(row["image_png"]),
        "parsing": decode_labels(row["parsing_png"]),
        "densepose": decode_labels(row["densepose_png"]),
        "keypoints": (np.asarray(kp, np.float32).reshape(-1, 3) if kp is not None
                      else np.zeros((25, 3), np.float32)),
    }


def decode_garment_row(row: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A garments row → ``image`` (RGB), ``mask`` ({0,255}), ``parts`` (0 bg, 1 left, 2 middle, 3 right)."""
    return {
        "image": decode_rgb(row["image_png"]),
        "mask": decode_labels(row["mask_png"]),
        "parts": decode_labels(row["parts_png"]),
    }
