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
