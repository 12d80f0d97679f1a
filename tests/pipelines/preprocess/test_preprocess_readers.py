"""Readers: dataset layouts, manifests in CSV / JSONL / Parquet, relative URL resolution."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.preprocess import readers as rd
from pipelines.preprocess.beam_pipeline import dedupe
from pipelines.preprocess.item_context import check_id


def test_parse_input():
    assert rd.parse_input("vitonhd:/data/x") == ("vitonhd", "/data/x")
    assert rd.parse_input("manifest:s3://b/k") == ("manifest", "s3://b/k")
    for bad in ("/data/x", "foo:/x", "dresscode:"):
        with pytest.raises(rd.ReaderError):
            rd.parse_input(bad)


def test_vitonhd_and_dresscode_layouts(vitonhd_root, dresscode_root):
    items = rd.read_vitonhd(str(vitonhd_root))
    persons = [i for i in items if i["kind"] == "person"]
    garments = [i for i in items if i["kind"] == "garment"]
    assert len(persons) == 7 and len(garments) == 7
    p = {i["id"]: i for i in persons}
    assert p["00006_00"]["parsing"].endswith("parse-bytedance_512/00006_00.png")
    assert p["14274_00"]["parsing"] is None and p["14274_00"]["lip_parsing"]
    assert p["00006_00"]["worn_garment_id"] == "00006_00"
    items = rd.read_dresscode(str(dresscode_root))
    persons = {i["id"]: i for i in items if i["kind"] == "person"}
    assert len(persons) == 6
    assert persons["013563_0"]["categories"] == ["lower"]
    assert persons["013563_0"]["keypoints_ref_hw"] == [512, 384]
    assert persons["013563_0"]["worn_garment_id"] == "013563_1"
    with pytest.raises(rd.ReaderError):
        rd.read_vitonhd(str(dresscode_root))


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_manifest_formats(tmp_path, fmt):
    garments = [{"garment_id": "g1", "image": "imgs/g1.jpg", "category": "Upper_Body", "mask": "", "parts": None},
                {"garment_id": "g2", "image": "s3://bucket/g2.jpg", "category": "dress", "mask": "/abs/m.png", "parts": None}]
    persons = [{"person_id": "p1", "image": "imgs/p1.jpg", "categories": "upper;lower", "keypoints": "k/p1.json",
                "parsing": None, "lip_parsing": "l/p1.png", "atr_parsing": None, "densepose": "d/p1.png",
                "densepose_rendered": None, "worn_garment_id": "g1"},
               {"person_id": "", "image": "imgs/p2.jpg", "categories": None, "keypoints": None, "parsing": None,
                "lip_parsing": None, "atr_parsing": None, "densepose": None, "densepose_rendered": None,
                "worn_garment_id": None}]
    for name, rows in (("garments", garments), ("persons", persons)):
        path = tmp_path / f"{name}.{fmt}"
        if fmt == "csv":
            cols = list(rows[0])
            lines = [",".join(cols)] + [",".join("" if r[c] is None else str(r[c]) for c in cols) for r in rows]
            path.write_text("\n".join(lines) + "\n")
        elif fmt == "jsonl":
            path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        else:
            pq.write_table(pa.Table.from_pylist(rows), path)
    items = rd.read_manifest(str(tmp_path))
    g = {i["id"]: i for i in items if i["kind"] == "garment"}
    assert g["g1"]["image"] == f"{tmp_path}/imgs/g1.jpg" and g["g1"]["mask"] is None
    assert rd.normalize_category(g["g1"]["category"]) == "upper"
    assert g["g2"]["image"] == "s3://bucket/g2.jpg" and g["g2"]["mask"] == "/abs/m.png"
    p = [i for i in items if i["kind"] == "person"]
    assert p[0]["categories"] == ["upper", "lower"] and p[0]["keypoints"] == f"{tmp_path}/k/p1.json"
    assert p[0]["worn_garment"]["image"] == f"{tmp_path}/imgs/g1.jpg"
    assert p[1]["error"]["stage"] == "read"       # a row without id becomes one error row


def test_dedupe_and_id_checks():
    items = [{"kind": "garment", "id": "a", "source_uri": "1"}, {"kind": "garment", "id": "a", "source_uri": "2"},
             {"kind": "person", "id": "a", "source_uri": "3"}]
    out = dedupe(items)
    assert [i["source_uri"] for i in out] == ["1", "2", "3"]
    assert [bool(i.get("error")) for i in out] == [False, True, False]
    assert "duplicate garment id 'a' (first from 1)" in out[1]["error"]["reason"]
    assert check_id("00006_00") is None
    for bad in ("../x", "a/b", "", " a", "x\\y", ".."):
        assert check_id(bad), bad


def test_job_config_file_flags_and_overrides(tmp_path):
    import argparse

    from pipelines.config import ConfigError
    from pipelines.preprocess import job

    cfg_file = tmp_path / "pre.yaml"
    cfg_file.write_text("inputs: ['vitonhd:/data/v']\noutput: /out\nresolution: 512\n"
                        "pipeline_args: ['--direct_num_workers=1']\n")
    parser = argparse.ArgumentParser()
    job.add_arguments(parser)
    args = parser.parse_args(["--config", str(cfg_file), "--resolution", "1024", "--set", "num_shards=3",
                              "--runner", "FlinkRunner", "--", "--flink_master=host:8081"])
    cfg = job.config_from_args(args)
    assert cfg.resolution == 1024 and cfg.num_shards == 3 and cfg.runner == "FlinkRunner"
    assert cfg.inputs == ["vitonhd:/data/v"] and cfg.output == "/out"
    assert cfg.pipeline_args == ["--direct_num_workers=1", "--flink_master=host:8081"]
    with pytest.raises(ConfigError):
        job.config_from_args(parser.parse_args(["--config", str(cfg_file), "--set", "inputs=['bad:/x']"]))
    with pytest.raises(ConfigError):
        job.config_from_args(parser.parse_args(["--output", "/o"]))


def _jpeg(path, size=(30, 40)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 200, 200)).save(path)


def test_photos_folder_layout(tmp_path):
    _jpeg(tmp_path / "models" / "anna 01.jpg")
    _jpeg(tmp_path / "models" / "lower" / "ben.png")
    _jpeg(tmp_path / "models" / "hats" / "cat.jpg")
    _jpeg(tmp_path / "garments" / "tops" / "SS26-001.webp")
    _jpeg(tmp_path / "garments" / "dress" / "SS26-002.jpg")
    _jpeg(tmp_path / "garments" / "loose.jpg")
    items = {(i["kind"], i["id"]): i for i in rd.read_photos(str(tmp_path))}
    from infra.storage import sanitize_id

    anna = items[("person", sanitize_id("anna 01"))]       # storage-safe, collision-proof id
    assert anna["frame"] and anna["categories"] == ["upper", "lower", "dresses"]
    assert not anna["categories_declared"] and anna["keypoints"] is None and anna["parsing"] is None
    ben = items[("person", "ben")]
    assert ben["categories"] == ["lower"] and ben["categories_declared"]
    assert "not a garment category" in items[("person", "cat")]["error"]["reason"]
    assert items[("garment", "SS26-001")]["category"] == "tops"      # normalised to 'upper' at derive
    assert items[("garment", "SS26-002")]["frame"]
    assert "outside a category folder" in items[("garment", "loose")]["error"]["reason"]
    assert rd.parse_input(f"photos:{tmp_path}") == ("photos", str(tmp_path))


def test_photos_table_keeps_given_annotations(tmp_path):
    _jpeg(tmp_path / "img" / "p1.jpg")
    _jpeg(tmp_path / "img" / "g1.jpg")
    (tmp_path / "kp.json").write_text("{}")
    (tmp_path / "photos.csv").write_text(
        "image,kind,category,categories,id,keypoints\n"
        "img/p1.jpg,model,,upper;dresses,,kp.json\n"
        "img/g1.jpg,product,upper,,G-1,\n"
        ",model,,,,\n")
    for url in (str(tmp_path / "photos.csv"), str(tmp_path)):
        items = rd.read_photos(url)
        p, g, bad = items
        assert p["id"] == "p1" and p["categories"] == ["upper", "dresses"] and p["categories_declared"]
        assert p["keypoints"] == str(tmp_path / "kp.json") and p["parsing"] is None
        assert g["id"] == "G-1" and g["category"] == "upper" and g["image"] == str(tmp_path / "img" / "g1.jpg")
        assert "needs image and kind" in bad["error"]["reason"]
    with pytest.raises(rd.ReaderError, match="photos"):
        rd.read_photos(str(tmp_path / "img"))
