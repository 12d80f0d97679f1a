"""Derived arrays → the persons and garments shard rows (PNG columns plus scalars).

The one encoder of the PNG columns, the counterpart of :mod:`gpvton_core.rows` (their decoder):
photos as RGB, label maps as single-channel ``L`` values, so render and train read back the
labels exactly as they were derived. PNG compress level 1: shards are written nightly and
read often; the smaller files of higher levels do not pay for their encoding time.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def png_bytes(a: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), mode=mode).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def person_row(item: dict, *, categories: list[str], image: np.ndarray, parsing: np.ndarray,
               densepose: np.ndarray, keypoints: np.ndarray, pc_ratio: float | None,
               frame_box: list[int] | None, photo_hw: tuple[int, int], provenance: str) -> dict[str, Any]:
    """A persons-table row: the working-size photo, its GP-29 parsing and DensePose index, BODY_25."""
    H, W = image.shape[:2]
    return {
        "person_id": item["id"], "categories": categories, "source": item.get("source", "manifest"),
        "source_uri": item.get("source_uri") or item["image"], "height": H, "width": W,
        "image_png": png_bytes(image, "RGB"), "parsing_png": png_bytes(parsing.astype(np.uint8), "L"),
        "densepose_png": png_bytes(densepose.astype(np.uint8), "L"),
        "keypoints": keypoints.astype(np.float32).reshape(-1).tolist(),
        "worn_garment_id": item.get("worn_garment_id"), "pc_ratio": None if pc_ratio is None else float(pc_ratio),
        "frame_box": frame_box, "photo_height": photo_hw[0], "photo_width": photo_hw[1],
        "provenance": provenance,
    }


def garment_row(item: dict, *, category: str, image: np.ndarray, mask: np.ndarray, parts: np.ndarray,
                provenance: str) -> dict[str, Any]:
    """A garments-table row: the working-size product image, its mask ({0, 255}) and part map."""
    H, W = image.shape[:2]
    return {
        "garment_id": item["id"], "category": category, "source": item.get("source", "manifest"),
        "source_uri": item.get("source_uri") or item["image"], "height": H, "width": W,
        "image_png": png_bytes(image, "RGB"),
        "mask_png": png_bytes((mask * 255).astype(np.uint8), "L"),
        "parts_png": png_bytes(parts.astype(np.uint8), "L"),
        "provenance": provenance,
    }
