"""The one shard-row decoder: photos → RGB, label maps → their stored values."""

import io

import numpy as np
import pytest
from PIL import Image

from gpvton_core.rows import decode_garment_row, decode_labels, decode_person_row, decode_rgb


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_palette_label_maps_decode_to_indices_not_colours():
    labels = np.array([[0, 5], [15, 28]], np.uint8)
    im = Image.fromarray(labels, mode="P")
    im.putpalette([v for i in range(256) for v in ((i * 37) % 256, 255 - i, (i * 11) % 256)])
    assert np.array_equal(decode_labels(_png(im)), labels)
    # Converting through luminance (what a plain .convert("L") does) would change the ids.
    assert not np.array_equal(np.asarray(im.convert("L")), labels)


def test_rgb_label_map_is_refused_and_photos_become_rgb():
    with pytest.raises(ValueError, match="single-channel"):
        decode_labels(_png(Image.new("RGB", (4, 4))))
    rgba = Image.new("RGBA", (3, 2), (10, 20, 30, 0))
    assert decode_rgb(_png(rgba)).shape == (2, 3, 3)
    assert decode_rgb(_png(Image.new("L", (3, 2), 7)))[0, 0].tolist() == [7, 7, 7]


def test_rows_decode_every_column():
    rgb = np.random.default_rng(0).integers(0, 255, (8, 6, 3), np.uint8)
    lab = np.arange(48, dtype=np.uint8).reshape(8, 6)
    person = {"image_png": _png(Image.fromarray(rgb)), "parsing_png": _png(Image.fromarray(lab, "L")),
              "densepose_png": _png(Image.fromarray(lab[::-1].copy(), "L")), "keypoints": [[1, 2, 0.5]] * 25}
    p = decode_person_row(person)
    assert np.array_equal(p["image"], rgb) and np.array_equal(p["parsing"], lab)
    assert np.array_equal(p["densepose"], lab[::-1]) and p["keypoints"].shape == (25, 3)
    assert decode_person_row({**person, "keypoints": None})["keypoints"].sum() == 0
    g = decode_garment_row({"image_png": person["image_png"], "mask_png": person["parsing_png"],
                            "parts_png": person["densepose_png"]})
    assert np.array_equal(g["mask"], lab) and np.array_equal(g["parts"], lab[::-1])
