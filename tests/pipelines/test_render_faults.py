"""Render faults in process (runner: local): a transient storage failure is not a result, one run per output.

* transient write failures are retried within the run (retry budget);
* beyond the budget they become ``transient:`` error rows that a plain rerun re-attempts;
* deterministic error rows (non-finite output) stay, unless ``--retry-errors``;
* a second run on an output in use refuses (exit 2) and leaves the first run's files alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from infra import failpoints
from infra.lease import Lease
from infra.storage import TRANSIENT_PREFIX, Storage
from pipelines.render import RenderConfig, run_job
from pipelines.render.job import JobLocked

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_render_job import BASE, check_job, expected_pairs  # noqa: E402

SMALL = dict(BASE, persons={"include": ["p0000", "p0001"]})   # 2 persons × 2 garments, 2 units


@pytest.fixture(scope="module")
def shards(synthetic_shards) -> Path:
    return synthetic_shards(n_garments=9, n_persons=4, seed=0)


@pytest.fixture(autouse=True)
def _fresh_write_failpoint(monkeypatch):
    monkeypatch.setitem(failpoints._write_fails, "raised", 0)


def pairs(shards: Path) -> set[tuple[str, str]]:
    return {pg for pg in expected_pairs(shards) if pg[0] in ("p0000", "p0001")}


def test_transient_write_failures_are_retried_within_the_run(shards, tmp_path, monkeypatch):
    monkeypatch.setenv(failpoints.env("fail_writes"), "renders/:3")   # the first 3 image writes fail
    job = tmp_path / "job"
    res = run_job(RenderConfig(shards=str(shards), output=str(job), **SMALL))
    assert failpoints._write_fails["raised"] == 3
    assert res.exit_code == 0 and res.summary["counts"]["error"] == 0
    scores = check_job(job, pairs(shards))
    assert "error" not in scores.column("flag").to_pylist()


def test_transient_failure_beyond_the_budget_is_re_attempted_by_a_plain_rerun(shards, tmp_path, monkeypatch):
    monkeypatch.setenv("GPVTON_STORAGE_RETRY_S", "0.3")
    monkeypatch.setenv(failpoints.env("fail_writes"), "renders/upper/p0001/")   # p0001's images: store "down"
    job = tmp_path / "job"
    res = run_job(RenderConfig(shards=str(shards), output=str(job), **SMALL))
    assert res.exit_code == 1 and res.summary["counts"]["error"] == 2
    scores = check_job(job, pairs(shards))
    errors = [r["error"] for r in scores.to_pylist() if r["flag"] == "error"]
    assert len(errors) == 2 and all(e.startswith(TRANSIENT_PREFIX + "write failed: ConnectionError") for e in errors)
    assert {r["person_id"] for r in scores.to_pylist() if r["flag"] == "error"} == {"p0001"}
    ok_pairs = {(r["person_id"], r["garment_id"]): (r["run_id"], r["version"]) for r in scores.to_pylist()
                if r["flag"] != "error"}
    ok_files = {k: (job / k).stat().st_mtime_ns for k in scores.column("output_key").to_pylist() if k}

    monkeypatch.delenv(failpoints.env("fail_writes"))               # the store is back: a plain rerun
    res = run_job(RenderConfig(shards=str(shards), output=str(job), **SMALL))
    assert res.exit_code == 0 and res.summary["counts"]["error"] == 0
    assert res.summary["pairs_rendered_this_run"] == 2                # only the pairs that errored
    assert res.summary["changes"]["retried"] == 2
    scores = check_job(job, pairs(shards))                            # every pair once, every image once
    assert "error" not in scores.column("flag").to_pylist()
    for r in scores.to_pylist():                                      # the clean pairs were not touched
        if (r["person_id"], r["garment_id"]) in ok_pairs:
            assert (r["run_id"], r["version"]) == ok_pairs[(r["person_id"], r["garment_id"])]
    for k, mtime in ok_files.items():
        assert (job / k).stat().st_mtime_ns == mtime


def test_deterministic_error_rows_stay_unless_retry_errors(shards, tmp_path, monkeypatch):
    monkeypatch.setenv(failpoints.env("nan_pairs"), "p0000/g0007")
    job = tmp_path / "job"
    cfg = dict(SMALL, max_unrendered_fraction=0.5)
    run_job(RenderConfig(shards=str(shards), output=str(job), **cfg))
    monkeypatch.delenv(failpoints.env("nan_pairs"))
    res = run_job(RenderConfig(shards=str(shards), output=str(job), **cfg))          # plain rerun: kept
    assert res.summary["pairs_rendered_this_run"] == 0 and res.summary["counts"]["error"] == 1
    res = run_job(RenderConfig(shards=str(shards), output=str(job), retry_errors=True, **cfg))
    assert res.summary["pairs_rendered_this_run"] == 1 and res.summary["counts"]["error"] == 0   # the one pair
    check_job(job, pairs(shards))


def test_second_run_on_the_same_output_refuses(shards, tmp_path, capsys):
    from pipelines.cli import main

    job = tmp_path / "job"
    held = Lease(Storage(str(job)), "lock.json", ttl_s=60, settle_s=0).acquire()   # a run in progress
    try:
        with pytest.raises(JobLocked, match="another render run is using this output"):
            run_job(RenderConfig(shards=str(shards), output=str(job), **SMALL))
        args = ["render", "--shards", str(shards), "--output", str(job), "--runner", "local", "--no-progress",
                "--random-weights", "--set", "categories=[upper]", "--set", "model.variant=vitonhd",
                "--set", "model.width=0.0625", "--set", "garments.include=[g0002]"]
        assert main(args) == 2
        assert "another render run is using this output" in capsys.readouterr().err
        assert not (job / "scores").exists() and not (job / "logs").exists()
    finally:
        held.release()
    assert not (job / "lock.json").exists()
    res = run_job(RenderConfig(shards=str(shards), output=str(job), **SMALL))      # free again
    assert res.exit_code == 0 and not (job / "lock.json").exists()
    assert pq.read_table(job / "plan" / "units.parquet").num_rows == 2


def test_two_renders_started_together_on_one_s3_output(shards, local_s3):
    """Two `gpvton render` processes take the output's lease at the same moment (on the S3 server):
    exactly one renders (exit 0), the other exits 2 naming host, pid and since; the winner's lease
    is renewed while it runs past lock_ttl_s, and released at the end."""
    import json
    import os
    import subprocess
    import threading
    import time

    out = local_s3.url("jobs/race")
    st = Storage(out, local_s3.settings)
    at = time.time() + 8.0                                      # both interpreters are up by then
    env = {**os.environ, **local_s3.env(), "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           failpoints.env("lease_at"): str(at), failpoints.env("slow_unit_s"): "1.5"}
    cmd = [sys.executable, "-m", "pipelines.cli", "render", "--shards", str(shards), "--output", out,
           "--runner", "local", "--no-progress", "--random-weights", "--set", "categories=[upper]",
           "--set", "model.variant=vitonhd", "--set", "model.width=0.0625", "--set", "lock_ttl_s=1",
           "--set", "garments.include=[g0002, g0007]", "--set", "persons.include=[p0000, p0001]",
           "--set", "unit_size=2"]
    seen: list[dict] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            try:
                seen.append(st.read_json("lock.json"))
            except (FileNotFoundError, ValueError):
                pass

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    procs = [subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    res = [p.communicate(timeout=300) for p in procs]
    stop.set()
    w.join()
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], res
    err = next(e for p, (_, e) in zip(procs, res) if p.returncode == 2)
    assert "another render run is using this output (host " in err and ", pid " in err and "since " in err, err
    winner = {r["run_id"] for r in seen}
    assert len(winner) == 1, winner                              # the lease never changed hands
    renewed = sorted({r["renewed"] for r in seen})
    assert renewed[-1] - renewed[0] > 1.0 and len(renewed) >= 3   # renewed past its 1 s TTL while running
    assert not st.exists("lock.json")
    summary = st.read_json("summary.json")
    assert summary["counts"].get("error", 0) == 0 and len(st.list("renders", ".jpg")) == 4
    assert json.loads(json.dumps(summary))["pairs"] == 4


@pytest.mark.parametrize("name, key, message", [("EROFS", "", "Read-only file system"),
                                                ("ENOSPC", "scores/unit-00001", "No space left on device")])
def test_read_only_or_full_output_exits_2(shards, tmp_path, monkeypatch, capsys, name, key, message):
    """A read-only output (every write refused) or one that fills up during the run is the user's to
    fix: exit 2 with one line; on a full disk the completed unit stays and a rerun finishes the job."""
    from pipelines.cli import main

    job = tmp_path / "job"
    monkeypatch.setattr(failpoints, "_errno_latch", set())
    monkeypatch.setenv(failpoints.env("write_errno"), f"{key}:{name}")
    args = ["render", "--shards", str(shards), "--output", str(job), "--runner", "local", "--no-progress",
            "--random-weights", "--set", "categories=[upper]", "--set", "model.variant=vitonhd",
            "--set", "model.width=0.0625", "--set", "garments.include=[g0002, g0007]",
            "--set", "persons.include=[p0000, p0001]", "--set", "unit_size=2", "--set", "in_flight_per_actor=1"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]      # after the random-weights banner
    assert err.startswith("gpvton render: error: cannot write to") and str(job) in err and message in err, err
    assert not (job / "lock.json").exists()
    if name == "EROFS":
        assert not [p for p in job.rglob("*") if p.is_file()] if job.exists() else True
        return
    assert [p.name for p in (job / "scores").glob("*.done")] == ["unit-00000.parquet.done"]
    assert not list(job.rglob(".tmp-*"))
    monkeypatch.delenv(failpoints.env("write_errno"))
    assert main(args) == 0
    check_job(job, pairs(shards))
