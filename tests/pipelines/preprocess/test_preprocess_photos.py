"""Bare photos into shards: the bundled estimators fill in what a photo lacks, and every bad photo
becomes one error row that says why (issue: raw catalogue photos)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from shard_rows import decode_person_row  # noqa: E402

from pipelines.cli import main  # noqa: E402
from pipelines.preprocess.beam_pipeline import read_table  # noqa: E402

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


def _dummy_parser(path):
    """A gp29 parser ONNX with its parser.json: dark pixels → label 5 (upper clothes), else background."""
    import torch

    class Dark(torch.nn.Module):
        def forward(self, x):
            dark = 4.0 * (0.5 - x.mean(dim=1, keepdim=True))
            logits = torch.zeros(x.shape[0], 29, x.shape[2], x.shape[3])
            return logits + torch.nn.functional.one_hot(torch.tensor(5), 29).view(1, 29, 1, 1) * dark

    torch.onnx.export(Dark(), torch.zeros(1, 3, 64, 48), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    path.with_suffix(".json").write_text(json.dumps({"classes": "gp29", "input_size": [64, 48],
                                                    "channel_order": "rgb", "mean": [0, 0, 0], "std": [1, 1, 1]}))
    return path


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
    assert rc == 1                                     # no persons: unusable shards (the garment came through)
    errors = {r["item_id"]: r for r in read_table(str(tmp_path / "noparser"), "errors").to_pylist()}
    reasons = {k: v["reason"] for k, v in errors.items()}
    assert "gpvton train parser" in reasons["good_wide"] and "--parser" in reasons["good_wide"]
    assert reasons["empty_studio"] == "no person found in the photo"
    assert "2 persons" in reasons["two_people"]
    assert "cut off" in reasons["head_only"] and "RHip" in reasons["head_only"]
    assert "too small" in reasons["tiny"]
    assert "cannot separate the garment" in reasons["busy"]
    # With a parser (a tiny ONNX one: dark pixels are 'upper clothes'), the good photo is framed
    # around the model, EXIF-rotated, and keeps only the categories whose joints are in the frame.
    parser = _dummy_parser(tmp_path / "dummy.onnx")
    assert main(["preprocess", "--input", f"photos:{tmp_path / 'cat'}", "--output", str(tmp_path / "parsed"),
                 "--resolution", "256", "--parser", str(parser), "--set", "max_error_fraction.persons=1",
                 "--set", "max_error_fraction.garments=1"]) == 0
    rows = {r["person_id"]: r for r in read_table(str(tmp_path / "parsed"), "persons").to_pylist()}
    assert list(rows) == ["good_wide"]
    row = rows["good_wide"]
    assert (row["photo_height"], row["photo_width"]) == (1100, 2000)        # upright after EXIF
    x0, y0, x1, y1 = row["frame_box"]
    assert abs((x1 - x0) / (y1 - y0) - 0.75) < 0.01
    assert x0 > 900 and x1 < 2000 and (x0 + x1) / 2 > 1300                   # around the model on the right
    assert row["categories"] == ["upper"]                                   # cut at the thighs: no lower, no dress
    prov = json.loads(row["provenance"])
    assert set(prov["categories_dropped"]) == {"lower", "dresses"}
    assert prov["parsing"].startswith("estimated:onnx-parser:gp29@")

    garments_rows = read_table(str(tmp_path / "noparser"), "garments").to_pylist()
    assert [g["garment_id"] for g in garments_rows] == ["good_shot"]
    g = garments_rows[0]
    prov = json.loads(g["provenance"])
    assert prov["mask"] == "estimated:plain-background" and prov["frame"]["photo_hw"] == [1000, 1400]


def _images_only(shared, root):
    """Images-only copies of the shared photos (all annotations removed), in the photos layout."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
    from bench_photos import _copy_images

    _copy_images(shared, root)


def test_images_only_photos_preprocess_and_render_with_a_trained_parser(tmp_path, shared_data, vitonhd_root,
                                                                         dresscode_root, in_process):
    """The whole raw-photo path: a parser trained by `gpvton train parser` on label maps we own,
    its ONNX export driving `gpvton preprocess --input photos:` on images-only copies of the shared
    photos, and the shards rendering through `gpvton render` (training and rendering in process:
    Ray Train and Ray actors have their own tests)."""
    from pathlib import Path

    labelled, run = tmp_path / "labelled", tmp_path / "parser"
    assert main(["preprocess", "--input", f"vitonhd:{vitonhd_root}", "--input", f"dresscode:{dresscode_root}",
                 "--output", str(labelled), "--resolution", "256"]) == 0
    assert main(["train", "parser", "--shards", str(labelled), "--output", str(run), "--steps", "120",
                 "--width", "0.25", "--resolution", "128x96", "--set", "lr=0.003"]) == 0
    assert (run / "parser.onnx").is_file() and (run / "parser.json").is_file()

    photos, shards = tmp_path / "photos", tmp_path / "shards"
    _images_only(shared_data, photos)
    assert not list(photos.rglob("*.json")) and not list(photos.rglob("*.png"))
    assert main(["preprocess", "--input", f"photos:{photos}", "--parser", str(run / "parser.onnx"),
                 "--set", "max_error_fraction.persons=0.2",
                 "--output", str(shards), "--resolution", "256"]) == 0
    errors = read_table(str(shards), "errors").to_pylist()
    persons = read_table(str(shards), "persons").to_pylist()
    garments = read_table(str(shards), "garments").to_pylist()
    assert len(persons) + len([e for e in errors if e["kind"] == "person"]) == 13
    assert len(persons) >= 11, errors                 # a 120-step parser may still fail a photo or two
    assert len(garments) == 13, errors
    for pid, prov in _provenance(persons).items():
        assert prov["keypoints"].startswith("estimated:mediapipe-blazepose")
        assert prov["parsing"].startswith("estimated:onnx-parser:gp29@")
        assert prov["densepose"] == "estimated:mask+skeleton"
        assert set(prov["estimated"]) >= {"keypoints", "parsing", "densepose"} and prov["given"] == []
        assert set(prov["models"]) >= {"pose", "segmenter", "parser"}
    for g in garments:
        assert json.loads(g["provenance"])["mask"] == "estimated:plain-background"

    job = tmp_path / "job"
    demo = Path(__file__).resolve().parents[3] / "pipelines" / "assets" / "demo"
    assert main(["render", "--shards", str(shards), "--output", str(job), "--resolution", "256",
                 "--warp-checkpoint", str(demo / "warp.safetensors"),
                 "--generator-checkpoint", str(demo / "generator.safetensors"),
                 "--set", "max_failed_fraction=1.0", "--runner", "local",   # two photos × every garment (CI time)
                 "--set", "persons.include=" + json.dumps(sorted(p["person_id"] for p in persons)[:2])]) == 0
    summary = json.loads((job / "summary.json").read_text())
    assert summary["units_lost"] == [] and summary["exit_code"] == 0, summary["lost_errors"]
    scores = read_table_scores(job)
    assert len(scores) == summary["pairs"] > 0
    assert not [s for s in scores if s["flag"] == "error"], [s["error"] for s in scores if s["error"]]
    assert all((job / s["output_key"]).is_file() for s in scores)


def read_table_scores(job):
    import pyarrow.parquet as pq

    rows = []
    for f in sorted((job / "scores").glob("unit-*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows
