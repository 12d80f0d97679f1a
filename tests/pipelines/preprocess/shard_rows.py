"""Shard rows as the preprocess tests inspect them: the row's own fields, its PNG columns decoded
by :mod:`gpvton_core.rows` (the one decoder render, train and eval use), and its provenance parsed.

Only the test conveniences live here (provenance as a dict, the garment mask as bool); decoding
stays in ``gpvton_core.rows`` so the tests check the rows as their readers see them.
"""

from __future__ import annotations

import json
from typing import Any

from gpvton_core import rows


def decode_person_row(row: dict[str, Any]) -> dict[str, Any]:
    """A persons-table row → arrays: image (H×W×3 uint8), parsing, densepose (H×W uint8),
    keypoints (25×3 float32), plus the scalar fields unchanged."""
    return {**row, **rows.decode_person_row(row), "provenance": json.loads(row["provenance"])}


def decode_garment_row(row: dict[str, Any]) -> dict[str, Any]:
    """A garments-table row → image (H×W×3 uint8), mask (bool H×W), parts (uint8 0..3)."""
    g = rows.decode_garment_row(row)
    return {**row, **g, "mask": g["mask"] > 127, "provenance": json.loads(row["provenance"])}
