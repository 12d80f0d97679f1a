"""Bare photos into shards: the bundled estimators fill in what a photo lacks, and every bad photo
becomes one error row that says why (issue: raw catalogue photos)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pipelines.cli import main
from pipelines.preprocess.beam_pipeline import read_table
from pipelines.preprocess.derive import decode_person_row

pytestmark = pytest.mark.slow


def _provenance(rows):
    return {r.get("person_id") or r.get("garment_id"): json.loads(r["provenance"]) for r in rows}


def test_dataset_photos_without_pose_or_densepose_files_get_them_estimated(tmp_path, vitonhd_root):
    """A VITON-HD layout that lacks openpose_json and image-densepose: pose and DensePose come from
    the bundled estimators with no user files at all; the given LIP parsing is kept."""
    root = tmp_path / "vitonhd"
    for sub in ("image", "cloth", "cloth-mask", "image-parse-v3"):
        shutil.copytree(vitonhd_root / "test" / sub, root / "test" / sub)
    out = tmp_path / "shards"
    assert main(["preprocess", "--input", f"vitonhd:{root}", "--output", str(out), "--resolution", "256"]) == 0
    errors = read_table(str(out), "errors").to_pylist()
    assert errors == []
    persons = read_table(str(out), "persons").to_pylist()
    assert len(persons) == 7
    for pid, prov in _provenance(persons).items():
        assert prov["keypoints"].startswith("estimated:mediapipe-blazepose"), (pid, prov)
        assert prov["densepose"] == "estimated:mask+skeleton"
        assert prov["parsing"] == "derived:lip+pose"
        assert "keypoints" in prov["estimated"] and "parsing" in prov["derived"]
        assert prov["models"]["pose"].startswith("mediapipe-blazepose")
    for row in persons:
        p = decode_person_row(row)
        assert row["frame_box"] is None                    # dataset photos are 3:4 and framed: kept whole
        assert (row["photo_height"], row["photo_width"]) == (1024, 768)
        body = p["parsing"] > 0
        assert (p["densepose"][body] > 0).mean() > 0.9     # DensePose covers the body


def _person_photo(vitonhd_root, pid="00006_00") -> Image.Image:
    return Image.open(vitonhd_root / "test" / "image" / f"{pid}.jpg").convert("RGB")


def test_bad_photos_one_error_row_each(tmp_path, vitonhd_root):
    """No person; two persons; a person cut off above the joints every category needs; a person too
    small to render; a garment that cannot be separated from its background — one clear error row
    each, and the good photos still come through."""
    models, garments = tmp_path / "cat" / "models", tmp_path / "cat" / "garments" / "upper"
    models.mkdir(parents=True)
    garments.mkdir(parents=True)
    a, b = _person_photo(vitonhd_root), _person_photo(vitonhd_root, "00008_00")
    # good: a landscape photo with the model off-centre (framed around her), EXIF-rotated.
    wide = Image.new("RGB", (2000, 1100), tuple(int(v) for v in np.asarray(a)[5, 5]))
    wide.paste(a.resize((768, 1024)), (1100, 40))
    exif = Image.Exif()
    exif[0x0112] = 6                                      # stored rotated: viewers turn it 90° clockwise
    wide.rotate(90, expand=True).save(models / "good_wide.jpg", exif=exif.tobytes())
    Image.new("RGB", (768, 1024), (235, 235, 235)).save(models / "empty_studio.jpg")
    two = Image.new("RGB", (1536, 1024))
    two.paste(a, (0, 0))
    two.paste(b, (768, 0))
    two.save(models / "two_people.jpg")
    a.crop((0, 0, 768, 420)).save(models / "head_only.jpg")
    small = Image.new("RGB", (240, 320), (240, 240, 240))      # found, but ~115 px tall: < 128 at 256
    small.paste(a.resize((60, 80)), (100, 150))
    small.save(models / "tiny.jpg")
    cloth = Image.open(vitonhd_root / "test" / "cloth" / "00006_00.jpg").convert("RGB")
    shot = Image.new("RGB", (1400, 1000), (226, 226, 226))           # light grey, off-centre
    shot.paste(cloth.resize((450, 600)), (800, 250), Image.fromarray(
        (np.asarray(Image.open(vitonhd_root / "test" / "cloth-mask" / "00006_00.jpg").convert("L").resize((450, 600))) > 127)
        .astype(np.uint8) * 255))
    shot.save(garments / "good_shot.jpg")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (800, 600, 3), dtype=np.uint8)).save(garments / "busy.jpg")

    # Without a parser a person cannot be completed: its error row names both options.
    rc = main(["preprocess", "--input", f"photos:{tmp_path / 'cat'}", "--output", str(tmp_path / "noparser"),
               "--resolution", "256"])
    assert rc == 0                                     # the garment still came through
    errors = {r["item_id"]: r for r in read_table(str(tmp_path / "noparser"), "errors").to_pylist()}
    reasons = {k: v["reason"] for k, v in errors.items()}
    assert "gpvton train parser" in reasons["good_wide"] and "--parser" in reasons["good_wide"]
    assert reasons["empty_studio"] == "no person found in the photo"
    assert "2 persons" in reasons["two_people"]
    assert "cut off" in reasons["head_only"] and "hip" in reasons["head_only"].lower()
    assert "too small" in reasons["tiny"]
    assert "cannot separate the garment" in reasons["busy"]
    garments_rows = read_table(str(tmp_path / "noparser"), "garments").to_pylist()
    assert [g["garment_id"] for g in garments_rows] == ["good_shot"]
    g = garments_rows[0]
    prov = json.loads(g["provenance"])
    assert prov["mask"] == "estimated:plain-background" and prov["frame"]["photo_hw"] == [1000, 1400]
