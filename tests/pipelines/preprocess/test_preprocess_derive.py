"""Per-item derivation without Beam: both resolutions, row decoding, mode conversions."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpvton_core.conditions.pose import pose_map
from pipelines.preprocess import derive as dv
from pipelines.preprocess import image_decoding as idec
from pipelines.preprocess.item_context import ItemError
from pipelines.preprocess.readers import read_vitonhd

sys.path.insert(0, str(Path(__file__).parent))
from shard_rows import decode_person_row  # noqa: E402


def _read(url: str) -> bytes:
    with open(url, "rb") as fh:
        return fh.read()


@pytest.mark.parametrize("resolution,hw", [(512, (512, 384)), (1024, (1024, 768))])
def test_vitonhd_person_both_resolutions(vitonhd_root, resolution, hw):
    items = {i["id"]: i for i in read_vitonhd(str(vitonhd_root)) if i["kind"] == "person"}
    table, row = dv.derive_item(items["00006_00"], _read, resolution)
    assert table == "persons" and (row["height"], row["width"]) == hw
    p = decode_person_row(row)
    assert p["image"].shape == hw + (3,) and p["parsing"].shape == hw and p["densepose"].shape == hw
    assert p["provenance"]["parsing"] == "given:gpvton-29"
    if resolution == 1024:      # the release parsing is 512×384: resized, and provenance says so
        assert any("parsing 384x512" in r for r in p["provenance"]["resampled"])
    # keypoints at the stored image's pixels: the neck sits in the neck region of the parsing
    k = p["keypoints"]
    x, y = int(k[1, 0]), int(k[1, 1])
    assert p["parsing"][max(0, y - 30):y + 5, x].tolist().count(11) > 0
    assert pose_map(k, *hw).shape == (25,) + hw


def test_to_rgb_conversions():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    cmyk = Image.fromarray(rgb).convert("CMYK")
    out, note = idec.to_rgb(cmyk)
    assert out.mode == "RGB" and "CMYK" in note and abs(int(np.asarray(out)[0, 0, 0]) - 200) <= 2
    rgba = Image.fromarray(np.dstack([rgb, np.zeros((4, 4), np.uint8)]), "RGBA")
    out, note = idec.to_rgb(rgba)
    assert (np.asarray(out) == 255).all() and "white" in note        # transparent → white
    g16 = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    out, note = idec.to_rgb(g16)
    assert (np.asarray(out) == 255).all()
    out, note = idec.to_rgb(Image.fromarray(rgb))
    assert note is None


def test_label_decoding_and_bomb_guard():
    assert idec.to_labels(Image.fromarray(np.full((2, 2, 3), 7, np.uint8)), "x").tolist() == [[7, 7], [7, 7]]
    with pytest.raises(ValueError):
        idec.to_labels(Image.fromarray(np.dstack([np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8),
                                                  np.zeros((2, 2), np.uint8)])), "x")
    buf = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buf, format="PNG")
    with pytest.raises(ValueError, match="decompression-bomb"):
        idec.open_image(buf.getvalue(), max_pixels=1_000_000)
    with pytest.raises(ValueError, match="0 bytes"):
        idec.open_image(b"", max_pixels=1_000_000)


def test_item_error_row_shape():
    item = {"kind": "garment", "id": "g", "source_uri": "u", "image": "/nonexistent.jpg", "category": "upper"}
    with pytest.raises(ItemError) as ei:
        dv.derive_item(item, _read, 512)
    row = ei.value.row()
    assert row == {"item_id": "g", "kind": "garment", "stage": "read", "reason": row["reason"],
                   "source_uri": "/nonexistent.jpg"}   # the URL that failed
    assert "not found" in row["reason"]
    json.dumps(row)
