"""Render jobs on real Ray actors: a two-actor pool, an actor crash, S3 with transient write failures."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra.storage import Storage, sanitize_id
from pipelines.render import RenderConfig, run_job

BASE = dict(runner="ray", categories=["upper"], model={"variant": "vitonhd", "width": 0.0625},
            garments={"include": ["g0002", "g0007"]}, unit_size=2, batch_size=2, progress=False,
            num_cpus=0.5, max_failed_fraction=0.0)


@pytest.fixture(scope="module")
def shards(synthetic_shards) -> Path:
    return synthetic_shards(n_garments=9, n_persons=4, seed=0)


def expected_pairs(shards: Path) -> set[tuple[str, str]]:
    persons = pq.read_table(shards / "persons" / "part-00000.parquet", columns=["person_id", "categories"])
    return {(r["person_id"], g) for r in persons.to_pylist() if "upper" in r["categories"] for g in ("g0002", "g0007")}


def check_storage(st: Storage, pairs: set[tuple[str, str]]) -> tuple[pa.Table, list[dict]]:
    """Every pair exactly once in the scores and as one image; returns (scores, done-marker infos)."""
    keys = st.list("scores")
    units = [k for k in keys if k.endswith(".parquet")]
    assert sorted(k + ".done" for k in units) == sorted(k for k in keys if k.endswith(".done"))
    scores = pa.concat_tables([pq.read_table(io.BytesIO(st.read_bytes(k))) for k in units])
    got = [(r["person_id"], r["garment_id"]) for r in scores.to_pylist()]
    assert len(got) == len(set(got)) and set(got) == pairs
    assert set(scores.column("flag").to_pylist()) <= {"ok", "warn", "fail"}
    renders = st.list("renders")
    assert sorted(renders) == sorted(f"renders/upper/{sanitize_id(p)}/{sanitize_id(g)}.jpg" for p, g in pairs)
    assert all(u.startswith(st.root) for u in scores.column("output_uri").to_pylist())
    return scores, [st.read_json(k + ".done") for k in units]


def test_two_actor_pool_local_folder(ray_local, shards, tmp_path):
    job = tmp_path / "job"
    res = run_job(RenderConfig(shards=str(shards), output=str(job), actors=2, **BASE))
    assert res.exit_code == 0
    _, infos = check_storage(Storage(str(job)), expected_pairs(shards))
    assert len({i["pid"] for i in infos}) == 2          # both actors of the pool worked


def test_actor_crash_is_restarted_and_unit_retried(ray_local, shards, tmp_path, monkeypatch):
    marker = tmp_path / "crashed"
    monkeypatch.setenv("GPVTON_FAULT_CRASH_UNIT", "1")          # the actor process exits once on unit 1
    monkeypatch.setenv("GPVTON_FAULT_CRASH_MARKER", str(marker))
    monkeypatch.setenv("GPVTON_FAULT_RAISE_UNIT", "2")          # unit 2 raises on every attempt
    job = tmp_path / "job"
    res = run_job(RenderConfig(shards=str(shards), output=str(job), actors=1, **BASE))
    assert marker.exists(), "the fault was not injected"
    assert res.exit_code == 1 and res.summary["units_lost"] == [2]
    st = Storage(str(job))
    infos = {i["unit_id"]: i for i in (st.read_json(k) for k in st.list("scores", ".done"))}
    assert sorted(infos) == [0, 1]
    crashed_pid = int(marker.read_text().split("pid ")[1])
    assert infos[1]["pid"] != crashed_pid                   # unit 1 ran on the restarted actor
    # the next run renders only the lost unit
    monkeypatch.delenv("GPVTON_FAULT_RAISE_UNIT")
    res = run_job(RenderConfig(shards=str(shards), output=str(job), actors=1, **BASE))
    assert res.exit_code == 0 and res.summary["pairs_rendered_this_run"] == 2
    check_storage(st, expected_pairs(shards))


def test_s3_shards_and_output_with_transient_write_failures(ray_local, local_s3, shards, monkeypatch):
    monkeypatch.setenv("GPVTON_FAULT_STORAGE_FAILS", "3")
    src = Storage(local_s3.url("shards"), local_s3.settings)
    for f in shards.rglob("*"):
        if f.is_file():
            src.write_bytes(str(f.relative_to(shards)), f.read_bytes())
    s3 = {"endpoint_url": local_s3.settings.endpoint_url, "access_key_id": local_s3.settings.access_key_id,
          "secret_access_key": local_s3.settings.secret_access_key, "region": local_s3.settings.region}
    out = local_s3.url("jobs/ray-s3")
    res = run_job(RenderConfig(shards=local_s3.url("shards"), output=out, actors=2, s3=s3, **BASE))
    assert res.exit_code == 0
    st = Storage(out, local_s3.settings)
    _, infos = check_storage(st, expected_pairs(shards))
    assert sum(i["storage_failures_injected"] for i in infos) > 0   # retried with backoff, nothing lost
    meta = st.read_json("job.json")
    assert meta["config"]["s3"]["secret_access_key"] == "***"
    assert st.read_json("summary.json")["counts"]["error"] == 0
