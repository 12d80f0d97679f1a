"""End-to-end: ``gpvton preprocess`` on the VITON-HD and Dress Code samples (Beam, in-process)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from shard_rows import decode_garment_row, decode_person_row  # noqa: E402

from pipelines.cli import main  # noqa: E402
from pipelines.preprocess.beam_pipeline import read_table  # noqa: E402
from infra.schema import GARMENTS, PERSONS, SCHEMA_VERSION  # noqa: E402


def _check_common(out, n_persons, n_garments, source):
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["resolution"] == 512
    assert manifest["counts"] == {"persons": n_persons, "garments": n_garments, "errors": 0}
    assert manifest["derivation_version"]
    cfg = json.loads((out / "preprocess_config.json").read_text())
    assert cfg["resolution"] == 512
    for name, schema in (("persons", PERSONS), ("garments", GARMENTS)):
        files = sorted((out / name).glob("part-*.parquet"))
        assert files and all(f.name.startswith("part-0") for f in files)
        for f in files:
            assert pq.read_schema(f).equals(schema, check_metadata=False)
    persons = read_table(str(out), "persons").to_pylist()
    garments = read_table(str(out), "garments").to_pylist()
    assert len(persons) == n_persons and len(garments) == n_garments
    assert len({p["person_id"] for p in persons}) == n_persons
    for row in persons:
        p = decode_person_row(row)
        assert p["source"] == source and (p["height"], p["width"]) == (512, 384)
        assert p["image"].shape == (512, 384, 3)
        assert p["parsing"].shape == (512, 384) and p["parsing"].max() < 29
        assert p["densepose"].shape == (512, 384) and p["densepose"].max() <= 24
        k = p["keypoints"]
        present = ~np.all(k == 0, axis=1)
        assert present.sum() >= 10
        assert (k[present, 0] >= 0).all() and (k[present, 0] <= 384).all()
        assert (k[present, 1] >= 0).all() and (k[present, 1] <= 512).all()
        assert p["provenance"]["derivation_version"]
        assert p["worn_garment_id"] in {g["garment_id"] for g in garments}
    for row in garments:
        g = decode_garment_row(row)
        assert g["image"].shape == (512, 384, 3)
        mask, parts = g["mask"], g["parts"]
        assert set(np.unique(decode_png_raw(row["mask_png"]))) <= {0, 255}
        assert set(np.unique(parts)) <= {0, 1, 2, 3}
        assert ((parts > 0) <= mask).all()            # parts ⊆ mask (label map: parts disjoint)
        assert (parts == 2).sum() > 0.3 * mask.sum()  # the middle part is the largest
    return persons, garments


def decode_png_raw(b):
    return np.asarray(Image.open(io.BytesIO(b)))


def test_vitonhd_shards(vitonhd_shards):
    persons, garments = _check_common(vitonhd_shards, 7, 7, "vitonhd")
    by_id = {p["person_id"]: json.loads(p["provenance"]) for p in persons}
    assert by_id["00006_00"]["parsing"] == "given:gpvton-29"
    assert by_id["14274_00"]["parsing"] == "derived:lip+pose"     # no release parsing for it
    assert all(v["densepose"] == "derived:colour-rendering" for v in by_id.values())
    assert all(p["categories"] == ["upper"] for p in persons)
    assert all(p["pc_ratio"] is not None and 0.3 < p["pc_ratio"] < 3 for p in persons)
    # sleeved garments get both sleeves, the sleeveless 00034_00 none
    parts = {g["garment_id"]: decode_garment_row(g)["parts"] for g in garments}
    assert set(np.unique(parts["00006_00"])) == {0, 1, 2, 3}
    assert set(np.unique(parts["00034_00"])) == {0, 2}


def test_dresscode_shards(dresscode_shards):
    persons, garments = _check_common(dresscode_shards, 6, 6, "dresscode")
    cats = {g["garment_id"]: g["category"] for g in garments}
    assert sorted(cats.values()) == ["dresses", "dresses", "lower", "lower", "upper", "upper"]
    for p in persons:
        prov = json.loads(p["provenance"])
        assert prov["parsing"] == "derived:atr+pose" and prov["densepose"] == "given:index"
        assert p["categories"] == [cats[p["worn_garment_id"]]]
        parsing = decode_person_row(p)["parsing"]
        if p["categories"] == ["lower"]:
            assert p["pc_ratio"] is None
            assert ((parsing == 9) | (parsing == 10)).any()
        else:
            assert p["pc_ratio"] is not None
    lower = [decode_garment_row(g)["parts"] for g in garments if g["category"] == "lower"]
    assert any(set(np.unique(x)) == {0, 1, 2, 3} for x in lower)   # the trousers have legs
