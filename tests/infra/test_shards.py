"""ShardSet reads what the manifest lists (never other files in the folder) and older shards by
listing; columns an older schema lacks come back null."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from infra.schema import GARMENTS
from infra.shards import ShardSet


def _garments(ids: list[str], with_key: bool = True) -> pa.Table:
    rows = [{"garment_id": i, "category": "upper", "source": "t", "source_uri": f"/x/{i}", "height": 4, "width": 3,
             "image_png": b"i", "mask_png": b"m", "parts_png": b"p", "provenance": "{}",
             "content_key": f"k-{i}"} for i in ids]
    t = pa.Table.from_pylist(rows, schema=GARMENTS)
    return t if with_key else t.drop_columns(["content_key"])


def test_manifest_parts_only(tmp_path):
    (tmp_path / "garments").mkdir()
    pq.write_table(_garments(["a", "b"]), tmp_path / "garments" / "part-00000.parquet")
    pq.write_table(_garments(["b"]), tmp_path / "garments" / "part-g0002-00000.parquet")   # next generation
    pq.write_table(_garments([]), tmp_path / "garments" / "part-g0002-c00000.parquet")
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"parts": {"garments": ["garments/part-g0002-00000.parquet", "garments/part-g0002-c00000.parquet"],
                   "persons": []}}))
    s = ShardSet(str(tmp_path))
    assert s.parts("garments") == ["garments/part-g0002-00000.parquet", "garments/part-g0002-c00000.parquet"]
    t = s.read_table("garments", ["garment_id", "content_key"])
    assert t.to_pydict() == {"garment_id": ["b"], "content_key": ["k-b"]}
    assert s.read_table("persons").num_rows == 0 and s.read_table("persons").schema.names[0] == "person_id"
    assert [r["garment_id"] for r in s.iter_rows("garments", ["garment_id"])] == ["b"]
    assert s.url("garments/x.parquet").endswith("/garments/x.parquet")


def test_older_shards_by_listing_with_null_new_columns(tmp_path):
    (tmp_path / "garments").mkdir()
    pq.write_table(_garments(["a", "b"], with_key=False), tmp_path / "garments" / "part-00000.parquet")
    pq.write_table(_garments(["c"], with_key=False), tmp_path / "garments" / "part-00001.parquet")
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 2, "counts": {"garments": 3}}))
    s = ShardSet(str(tmp_path))
    assert s.parts("garments") == ["garments/part-00000.parquet", "garments/part-00001.parquet"]
    t = s.read_table("garments")
    assert t.schema.names == GARMENTS.names
    assert t.column("garment_id").to_pylist() == ["a", "b", "c"]
    assert t.column("content_key").to_pylist() == [None, None, None]
    assert s.read_part("garments/part-00000.parquet", filters=[("garment_id", "in", ["b"])]).num_rows == 1
    assert ShardSet(str(tmp_path / "none")).manifest == {}
