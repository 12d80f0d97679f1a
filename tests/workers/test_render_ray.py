"""Render jobs on real Ray actors: a two-actor pool, an actor crash, S3 with transient write failures,
worker logs kept under JOB/logs/, a quiet console."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra import failpoints
from infra.storage import Storage, sanitize_id
from pipelines.config import ConfigError
from pipelines.render import RenderConfig, run_job

REPO = Path(__file__).resolve().parents[2]
BASE = dict(runner="ray", categories=["upper"], model={"variant": "vitonhd", "width": 0.0625},
            garments={"include": ["g0002", "g0007"]}, unit_size=2, batch_size=2, progress=False,
            num_cpus=0.5, max_unrendered_fraction=0.0, random_weights=True)
RESTART_WARNING = "constructor arguments in the object store"


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
    assert sorted(renders) == sorted(scores.column("output_key").to_pylist())
    for r in scores.to_pylist():      # content-versioned keys: renders/CAT/PERSON/GARMENT-VERSION.jpg
        assert r["output_key"] == f"renders/upper/{sanitize_id(r['person_id'])}/{sanitize_id(r['garment_id'])}-" \
                                  f"{r['version']}.jpg" and len(r["version"]) == 12
    assert all(u.startswith(st.root) for u in scores.column("output_uri").to_pylist())
    return scores, [st.read_json(k + ".done") for k in units]


def test_two_actor_pool_local_folder(ray_local, shards, tmp_path):
    job = tmp_path / "job"
    res = run_job(RenderConfig(shards=str(shards), output=str(job), actors=2, **BASE))
    assert res.exit_code == 0
    _, infos = check_storage(Storage(str(job)), expected_pairs(shards))
    assert len({i["pid"] for i in infos}) == 2          # both actors of the pool worked
    # one log file per worker under JOB/logs/, named after the actor and its process
    logs = {p.name: p.read_text() for p in (job / "logs").glob("worker-*.log")}
    assert sorted(n.split("-p")[0] for n in logs) == ["worker-00", "worker-01"]
    assert {int(n.split("-p")[1].split(".")[0]) for n in logs} == {i["pid"] for i in infos}
    text = "".join(logs.values())
    assert text.count("render worker") == 2
    assert sorted(int(x.split("unit ")[1].split(":")[0]) for x in text.splitlines() if " unit " in x) == \
        sorted(i["unit_id"] for i in infos)


def test_actors_start_while_the_driver_plans(ray_local, shards, tmp_path, monkeypatch):
    """A new job's actors are placed before planning starts; a job stopped by a configuration error
    after that leaves no output folder behind."""
    import ray

    import pipelines.render.job as job_mod

    plan = job_mod.plan_pairs
    seen: list[float] = []

    def plan_after_actors(*args, **kwargs):
        held = 0.0
        wait_until = time.time() + 30     # placing an actor takes Ray a moment: wait for it, not for planning
        while held < 2 * BASE["num_cpus"] and time.time() < wait_until:
            time.sleep(0.05)
            held = ray.cluster_resources()["CPU"] - ray.available_resources().get("CPU", 0.0)
        seen.append(held)                  # CPUs the job's actors hold before the plan exists
        return plan(*args, **kwargs)

    monkeypatch.setattr(job_mod, "plan_pairs", plan_after_actors)
    deadline = time.time() + 60
    while time.time() < deadline and ray.available_resources().get("CPU", 0.0) < ray.cluster_resources()["CPU"]:
        time.sleep(0.2)   # actors of earlier tests are gone
    res = run_job(RenderConfig(shards=str(shards), output=str(tmp_path / "job"), actors=2, **BASE))
    assert res.exit_code == 0 and seen == [2 * BASE["num_cpus"]]
    empty = dict(BASE, garments={"include": ["no-such-garment"]})
    with pytest.raises(ConfigError, match="nothing to render"):
        run_job(RenderConfig(shards=str(shards), output=str(tmp_path / "none"), actors=2, **empty))
    assert not (tmp_path / "none").exists()


def test_an_actor_reads_the_next_unit_while_it_computes(ray_local, shards, tmp_path):
    """With two units in flight an actor prepares (reads, decodes) one while the other is on the
    networks; the networks still take one unit at a time."""
    job = tmp_path / "job"
    res = run_job(RenderConfig(shards=str(shards), output=str(job), actors=1, in_flight_per_actor=2, **BASE))
    assert res.exit_code == 0
    _, infos = check_storage(Storage(str(job)), expected_pairs(shards))
    assert len(infos) >= 3 and len({i["pid"] for i in infos}) == 1
    units = sorted(infos, key=lambda i: i["phases"]["compute"][0])
    for a, b in zip(units, units[1:]):
        assert b["phases"]["compute"][0] >= a["phases"]["compute"][1]     # never two on the networks
    # the next unit's reading began while the previous one computed (finishing in time as well
    # depends on how busy the machine is: not asserted)
    overlapped = [b for a, b in zip(units, units[1:]) if b["phases"]["prep"][0] < a["phases"]["compute"][1]]
    assert overlapped, [i["phases"] for i in units]


def test_actor_crash_is_restarted_and_unit_retried(ray_local, shards, tmp_path, monkeypatch, capfd):
    marker = tmp_path / "crashed"
    monkeypatch.setenv(failpoints.env("crash_unit"), "1")       # the actor process exits once on unit 1
    monkeypatch.setenv(failpoints.env("crash_marker"), str(marker))
    monkeypatch.setenv(failpoints.env("raise_unit"), "2")       # unit 2 raises on every attempt
    job = tmp_path / "job"
    capfd.readouterr()
    res = run_job(RenderConfig(shards=str(shards), output=str(job), actors=1, **BASE))
    assert marker.exists(), "the fault was not injected"
    assert res.exit_code == 1 and res.summary["units_lost"] == [2]
    # a restartable actor whose constructor arguments live in the object store makes Ray's core
    # worker print an error line: the actor gets only small inlined arguments
    assert RESTART_WARNING not in capfd.readouterr().err
    worker_logs = {p.name: p.read_text() for p in (job / "logs").glob("worker-00-p*.log")}
    assert len(worker_logs) == 2                            # the crashed process and its restart
    assert any("failpoint raise_unit: injected failure of unit 2" in t for t in worker_logs.values())
    st = Storage(str(job))
    infos = {i["unit_id"]: i for i in (st.read_json(k) for k in st.list("scores", ".done"))}
    assert sorted(infos) == [0, 1]
    crashed_pid = int(marker.read_text().split("pid ")[1])
    assert infos[1]["pid"] != crashed_pid                   # unit 1 ran on the restarted actor
    # the next run renders only the lost unit
    monkeypatch.delenv(failpoints.env("raise_unit"))
    res = run_job(RenderConfig(shards=str(shards), output=str(job), actors=1, **BASE))
    assert res.exit_code == 0 and res.summary["pairs_rendered_this_run"] == 2
    from infra.jobfolder import JobFolder

    index = JobFolder(str(job)).read_index()
    assert sorted((r["person_id"], r["garment_id"]) for r in index.to_pylist()) == sorted(expected_pairs(shards))
    assert sorted(st.list("renders")) == sorted(index.column("output_key").to_pylist())


def test_s3_shards_and_output_with_transient_write_failures(ray_local, local_s3, shards, monkeypatch):
    monkeypatch.setenv(failpoints.env("storage_fails"), "3")
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
    assert any(k.startswith("logs/worker-") for k in st.list("logs"))     # worker logs on S3 too


@pytest.mark.slow
def test_cli_is_quiet_and_keeps_logs_verbose_shows_them(shards, tmp_path):
    """A normal run prints our progress and summary only; Ray's and the workers' lines go to JOB/logs/."""
    cmd = [sys.executable, "-m", "pipelines.cli", "render", "--shards", str(shards), "--random-weights",
           "--no-progress", "--set", "categories=[upper]", "--set", "model.width=0.0625",
           "--set", "garments.include=[g0002]", "--set", "persons.include=[p0000]", "--set", "num_cpus=0.5"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", failpoints.PREFIX))}
    env["PYTHONPATH"] = str(REPO)
    quiet = subprocess.run(cmd + ["--output", str(tmp_path / "q")], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    for noise in ("Token authentication", "core_worker", RESTART_WARNING, "apitools", " INFO ray", "(RenderActor"):
        assert noise not in quiet.stderr, quiet.stderr
    lines = [x for x in quiet.stderr.splitlines() if x.strip() and not x.startswith("!!")]
    assert all(" gpvton." in x for x in lines), lines       # only our own log lines (and the banner)
    assert "ok 0, warn 0, fail 1, error 0, missing 0 of 1 pairs" in quiet.stdout.splitlines()[-1]
    logs = {p.name: p.read_text() for p in (tmp_path / "q" / "logs").glob("*.log")}
    assert "driver.log" in logs and "rendering 1 units / 1 pairs" in logs["driver.log"]
    assert any(n.startswith("worker-00-p") and "unit 0: 1 pairs" in t for n, t in logs.items())
    verbose = subprocess.run(cmd + ["--output", str(tmp_path / "v"), "-v"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "render worker 0" in verbose.stderr                 # the worker's records, streamed by Ray
    assert json.loads((tmp_path / "v" / "summary.json").read_text())["exit_code"] == 0
