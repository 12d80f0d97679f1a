"""The Beam pipeline over a real S3 API (moto server): input copied to the bucket, shards written there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from preprocess_synth import write_good_manifest  # noqa: E402
from shard_rows import decode_garment_row, decode_person_row  # noqa: E402

from infra.storage import Storage, filesystem  # noqa: E402
from pipelines.cli import main  # noqa: E402
from pipelines.preprocess.beam_pipeline import read_table  # noqa: E402


def test_preprocess_s3_in_and_out(local_s3, dresscode_root, tmp_path):
    s3 = local_s3.settings
    fs = filesystem(local_s3.url(), s3)
    bucket = local_s3.bucket
    fs.put(str(dresscode_root / "upper_body"), f"{bucket}/in/dresscode/upper_body", recursive=True)
    write_good_manifest(tmp_path / "cat")
    fs.put(str(tmp_path / "cat"), f"{bucket}/in/catalogue", recursive=True)

    out = local_s3.url("shards/run1")
    rc = main(["preprocess", "--input", f"dresscode:{local_s3.url('in/dresscode')}",
               "--input", f"manifest:{local_s3.url('in/catalogue')}", "--output", out,
               "--set", f"s3.endpoint_url={s3.endpoint_url}", "--set", f"s3.access_key_id={s3.access_key_id}",
               "--set", f"s3.secret_access_key={s3.secret_access_key}", "--set", f"s3.region={s3.region}"])
    assert rc == 0
    storage = Storage(out, s3)
    keys = storage.list()
    assert "manifest.json" in keys and "preprocess_config.json" in keys
    assert any(k.startswith("persons/part-0") for k in keys)
    assert not any("temp" in k or ".tmp" in k for k in keys), keys
    manifest = storage.read_json("manifest.json")
    assert manifest["counts"] == {"persons": 4, "garments": 4, "errors": 0}
    assert storage.read_json("preprocess_config.json")["s3"]["secret_access_key"] == "***"
    persons = [decode_person_row(r) for r in read_table(out, "persons", s3).to_pylist()]
    garments = [decode_garment_row(r) for r in read_table(out, "garments", s3).to_pylist()]
    assert {p["person_id"] for p in persons} == {"000000_0", "000001_0", "p0", "p1"}
    assert {g["garment_id"] for g in garments} == {"000000_1", "000001_1", "g0", "g1"}
    for p in persons:
        assert p["source_uri"].startswith("s3://")
        assert p["parsing"].max() < 29 and p["image"].shape == (512, 384, 3)
        k = p["keypoints"]
        assert (k[:, 0] <= 384).all() and (k[:, 1] <= 512).all()
    for g in garments:
        assert ((g["parts"] > 0) <= g["mask"]).all()
    synthetic = {p["person_id"]: p for p in persons}["p0"]
    assert json.loads(json.dumps(synthetic["provenance"]))["parsing"] == "derived:lip+pose"
    # the synthetic person's sleeves were split off the upper clothes, left on the image right
    parsing = synthetic["parsing"]
    assert (parsing == 21).any() and (parsing == 22).any()
    assert np.nonzero(parsing == 21)[1].mean() > np.nonzero(parsing == 22)[1].mean()
