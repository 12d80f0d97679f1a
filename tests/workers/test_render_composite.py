"""Delivery: paste-back keeps the photo's own pixels where nothing may change, and the original
frame puts the try-on back into the original photo (issue: fidelity for retailers)."""

from __future__ import annotations

import json

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from gpvton_core import composite as cp
from gpvton_core.conditions import masks as cm
from infra.storage import sanitize_id
from pipelines.render import RenderConfig, run_job

BASE = dict(runner="local", categories=["upper"], model={"variant": "vitonhd", "width": 0.0625},
            garments={"include": ["g0002", "g0007"]}, unit_size=4, batch_size=2, progress=False,
            random_weights=True)


@pytest.fixture(scope="module")
def shards(synthetic_shards) -> Path:
    return synthetic_shards(n_garments=9, n_persons=4, seed=0)


def _persons(shards: Path) -> dict[str, dict]:
    rows = pq.read_table(shards / "persons" / "part-00000.parquet").to_pylist()
    return {r["person_id"]: r for r in rows if "upper" in r["categories"]}


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def _render(shards: Path, job: Path, **kw):
    res = run_job(RenderConfig(shards=str(shards), output=str(job), output_format={"format": "png", "debug": True,
                                                                                 **kw.pop("fmt", {})}, **BASE, **kw))
    assert res.exit_code in (0, 1)
    return pq.read_table(sorted((job / "scores").glob("unit-*.parquet"))[0]).to_pylist()


def test_paste_back_keeps_the_photo_outside_the_band(shards, tmp_path):
    persons = _persons(shards)
    pb = _render(shards, tmp_path / "pb", composite="paste-back")
    off = _render(shards, tmp_path / "off", composite="official")
    checked = 0
    seams = {"paste-back": [], "official": []}
    for row, orow in zip(pb, off):
        assert row["flag"] != "error" and (row["person_id"], row["garment_id"]) == (orow["person_id"], orow["garment_id"])
        p = persons[row["person_id"]]
        photo = _png(p["image_png"])
        parsing = _png(p["parsing_png"])
        kps = np.asarray(p["keypoints"], np.float32).reshape(25, 3)
        out = np.asarray(Image.open(tmp_path / "pb" / row["output_key"]))
        official = np.asarray(Image.open(tmp_path / "off" / orow["output_key"]))
        label_key = row["output_key"].replace("renders/", "debug/", 1).rsplit(".", 1)[0] + ".label.png"
        label = np.asarray(Image.open(tmp_path / "pb" / label_key)) // 25
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))[None, None]   # noqa: E731
        garment = np.isin(label, (1, 2, 3))           # VITON-HD warp label: 1..3 garment parts, 4..6 arms/neck
        keep = cp.keep_region(t(cm.preserve_mask(parsing, kps, "vitonhd", "upper", "gen")), t(parsing == 0),
                              t(garment), clearance=max(1, cp.band_width(photo.shape[0]) // 2))
        deep = (cp._erode(keep, 2 * cp.band_width(photo.shape[0]) + 1) > 0.5)[0, 0].numpy()
        assert deep.sum() > 0.05 * deep.size                      # face, hair, background: a real region
        assert np.array_equal(out[deep], photo[deep])             # identical to the input photo there
        assert not np.array_equal(official[deep], photo[deep])    # the official composition redraws it
        outside = (keep < 0.5)[0, 0].numpy()
        assert np.abs(out[outside].astype(int) - official[outside].astype(int)).max() <= 1   # generated there
        f = lambda a: torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)[None]   # noqa: E731
        seams["paste-back"].append(float(cp.seam_deviation(f(out), f(photo), keep)))
        seams["official"].append(float(cp.seam_deviation(f(official), f(photo), keep)))
        # scores are computed on the delivered image: preserve_ssim sees the photo's own pixels
        assert row["preserve_ssim"] > orow["preserve_ssim"]
        checked += 1
    assert checked == len(pb) >= 4
    from pipelines.cli import main

    assert main(["report", "--job", str(tmp_path / "pb")]) in (0, 1)           # the QA report says how it was made
    html = (tmp_path / "pb" / "report" / "index.html").read_text()
    assert "composition paste-back" in html and "frame working" in html
    resolved = json.loads((tmp_path / "pb" / "job.json").read_text())["precision"]["resolved"]
    assert f"precision {resolved}" in html
    assert np.median(seams["paste-back"]) <= np.median(seams["official"]), seams


def test_original_frame_puts_the_tryon_back_into_the_photo(shards, tmp_path):
    persons = _persons(shards)
    rows = _render(shards, tmp_path / "orig", composite="paste-back", fmt={"frame": "original"})
    work = _render(shards, tmp_path / "work", composite="paste-back")
    for row, wrow in zip(rows, work):
        p = persons[row["person_id"]]
        with open(p["source_uri"], "rb") as fh:
            photo = np.asarray(Image.open(fh).convert("RGB"))
        out = np.asarray(Image.open(tmp_path / "orig" / row["output_key"]))
        assert out.shape == photo.shape                              # the original photo's size
        assert row["preserve_ssim"] == pytest.approx(wrow["preserve_ssim"])   # scores stay at working size
    # A photo that cannot be read back is an error row that says so; the rest completes.
    moved = next(iter(persons.values()))["source_uri"]
    Path(moved).rename(moved + ".moved")
    try:
        rows = _render(shards, tmp_path / "orig2", composite="paste-back", fmt={"frame": "original"})
    finally:
        Path(moved + ".moved").rename(moved)
    errors = [r for r in rows if r["flag"] == "error"]
    assert errors and all("original photo unreadable" in r["error"] for r in errors)
    assert len(errors) < len(rows)
