"""Shard rows decoded into arrays, for tests that inspect what preprocess wrote.

Render and train decode rows their own way (``workers``, ``gpvton_core.inputs``); only tests need
whole rows back as arrays, so this lives with them.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from PIL import Image


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def decode_person_row(row: dict[str, Any]) -> dict[str, Any]:
    """A persons-table row → arrays: image (H×W×3 uint8), parsing, densepose (H×W uint8),
    keypoints (25×3 float32), plus the scalar fields unchanged."""
    out = dict(row)
    out["image"] = decode_png(row["image_png"])
    out["parsing"] = decode_png(row["parsing_png"])
    out["densepose"] = decode_png(row["densepose_png"])
    out["keypoints"] = np.asarray(row["keypoints"], np.float32).reshape(25, 3)
    out["provenance"] = json.loads(row["provenance"])
    return out


def decode_garment_row(row: dict[str, Any]) -> dict[str, Any]:
    """A garments-table row → image (H×W×3 uint8), mask (bool H×W), parts (uint8 0..3)."""
    out = dict(row)
    out["image"] = decode_png(row["image_png"])
    out["mask"] = decode_png(row["mask_png"]) > 127
    out["parts"] = decode_png(row["parts_png"])
    out["provenance"] = json.loads(row["provenance"])
    return out
