"""Render jobs in process (runner: local): outputs exactly once, resume after a kill, failing pairs, exit codes,
random weights only on request, one failure definition shared with the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra import failpoints
from infra.storage import sanitize_id
from pipelines.config import ConfigError
from pipelines.render import RenderConfig, run_job

REPO = Path(__file__).resolve().parents[2]
# small and fast: VITON-HD variant, upper garments only, 3 persons × 2 garments at 128×96
BASE = dict(runner="local", categories=["upper"], model={"variant": "vitonhd", "width": 0.0625},
            garments={"include": ["g0002", "g0007"]}, unit_size=2, batch_size=2, progress=False,
            random_weights=True)


@pytest.fixture(scope="module")
def shards(synthetic_shards) -> Path:
    return synthetic_shards(n_garments=9, n_persons=4, seed=0)


def expected_pairs(shards: Path) -> set[tuple[str, str]]:
    persons = pq.read_table(shards / "persons" / "part-00000.parquet", columns=["person_id", "categories"])
    ps = [r["person_id"] for r in persons.to_pylist() if "upper" in r["categories"]]
    return {(p, g) for p in ps for g in ("g0002", "g0007")}


def check_job(job: Path, pairs: set[tuple[str, str]], fmt: str = "jpg", extra_renders: bool = False) -> pa.Table:
    """Every pair has exactly one index row and (unless errored) exactly one image; nothing else."""
    from infra.jobfolder import JobFolder

    scores = JobFolder(str(job)).read_index()
    got = [(r["person_id"], r["garment_id"]) for r in scores.to_pylist()]
    assert sorted(got) == sorted(pairs) and len(got) == len(set(got))
    renders = sorted(str(p.relative_to(job)) for p in (job / "renders").rglob(f"*.{fmt}"))
    want = sorted(f"renders/upper/{sanitize_id(p)}/{sanitize_id(g)}-{v}.{fmt}" for (p, g), flag, v in
                  zip(got, scores.column("flag").to_pylist(), scores.column("version").to_pylist()) if flag != "error")
    assert set(want) <= set(renders) if extra_renders else renders == want    # retired: kept until prune
    assert sorted(k for k in scores.column("output_key").to_pylist() if k) == want
    assert not list(job.rglob(".tmp-*"))
    return scores


def test_local_job_exactly_once_then_rerun_is_a_noop(shards, tmp_path):
    job = tmp_path / "job"
    res = run_job(RenderConfig(shards=str(shards), output=str(job), **BASE))
    assert res.exit_code == 0
    pairs = expected_pairs(shards)
    scores = check_job(job, pairs)
    assert set(scores.column("flag").to_pylist()) <= {"ok", "warn", "fail"}
    assert all(v is not None for v in scores.column("warp_miou").to_pylist())
    meta = json.loads((job / "job.json").read_text())
    assert meta["random_weights"] and "RANDOM WEIGHTS" in meta["model_note"]
    assert meta["variant"] == "vitonhd" and meta["package_version"]
    from gpvton_core.precision import native_bf16

    want = "bf16" if native_bf16("cpu")[0] else "fp32"   # precision: auto (the default)
    assert meta["precision"]["requested"] == "auto" and meta["precision"]["resolved"] == want
    assert meta["precision"]["reason"].startswith("auto: ") and ("policy" in meta["precision"]) == (want == "bf16")
    for marker in (job / "scores").glob("*.done"):
        assert json.loads(marker.read_text())["precision"]["resolved"] == want
    summary = json.loads((job / "summary.json").read_text())
    assert summary["pairs"] == len(pairs) and sum(summary["counts"].values()) == len(pairs)
    assert pq.read_table(job / "plan" / "units.parquet").num_rows == summary["units"] == 3
    markers = {p: p.stat().st_mtime_ns for p in (job / "scores").glob("*.done")}
    renders = {p: p.stat().st_mtime_ns for p in (job / "renders").rglob("*.jpg")}
    res = run_job(RenderConfig(shards=str(shards), output=str(job), **BASE))
    assert res.exit_code == 0 and res.summary["changes"] == {"added": 0, "updated": 0, "retired": 0,
                                                             "unchanged": len(pairs), "retried": 0}
    assert res.summary["pairs_rendered_this_run"] == 0 and res.summary["pairs_per_second"] is None
    assert res.summary["measured_pairs_per_second"] > 0            # the last measured speed is kept
    assert json.loads((job / "job.json").read_text())["created"] == meta["created"]
    assert {p: p.stat().st_mtime_ns for p in (job / "scores").glob("*.done")} == markers
    assert {p: p.stat().st_mtime_ns for p in (job / "renders").rglob("*.jpg")} == renders
    # --force recomputes every pair
    res = run_job(RenderConfig(shards=str(shards), output=str(job), force=True, **BASE))
    assert res.exit_code == 0 and res.summary["changes"]["added"] == len(pairs)
    assert res.summary["pairs_rendered_this_run"] == len(pairs)
    check_job(job, pairs)
    # narrower filters retire the pairs that left the plan; nothing is rendered
    other = dict(BASE, garments={"include": ["g0002"]}, persons={"include": ["p0000"]})
    res = run_job(RenderConfig(shards=str(shards), output=str(job), **other))
    assert res.exit_code == 0 and res.summary["pairs"] == 1 and res.summary["pairs_rendered_this_run"] == 0
    assert res.summary["changes"] == {"added": 0, "updated": 0, "retired": len(pairs) - 1, "unchanged": 1,
                                      "retried": 0}
    check_job(job, {("p0000", "g0002")}, extra_renders=True)


def test_the_local_runner_reads_the_next_unit_while_it_computes(shards, tmp_path):
    """In process as in a Ray actor: with two units in flight one is read and decoded while the
    other is on the networks, which take one unit at a time; one in flight runs them in turn."""
    def phases(in_flight: int) -> list[dict]:
        job = tmp_path / f"job{in_flight}"
        assert run_job(RenderConfig(shards=str(shards), output=str(job), in_flight_per_actor=in_flight,
                                    **BASE)).exit_code == 0
        check_job(job, expected_pairs(shards))
        infos = [json.loads(m.read_text()) for m in (job / "scores").glob("*.done")]
        return sorted((i["phases"] for i in infos), key=lambda p: p["compute"][0])

    for in_flight in (2, 1):
        units = phases(in_flight)
        assert len(units) == 3
        for a, b in zip(units, units[1:]):
            assert b["compute"][0] >= a["compute"][1]                 # never two units on the networks
        # the next unit's reading began while the previous one computed (whether it also finished
        # in time depends on how busy the machine is: not asserted)
        overlapped = [b for a, b in zip(units, units[1:]) if b["prep"][0] < a["compute"][1]]
        assert bool(overlapped) == (in_flight > 1), units


def test_bad_row_and_nan_pair_become_error_rows(shards, tmp_path, monkeypatch):
    # shards copy with one corrupt person image
    bad = tmp_path / "shards"
    for sub in ("garments", "errors"):
        (bad / sub).mkdir(parents=True)
        (bad / sub / "part-00000.parquet").write_bytes((shards / sub / "part-00000.parquet").read_bytes())
    (bad / "manifest.json").write_text((shards / "manifest.json").read_text())
    persons = pq.read_table(shards / "persons" / "part-00000.parquet").to_pylist()
    persons[1]["image_png"] = b"not a png"
    (bad / "persons").mkdir()
    pq.write_table(pa.Table.from_pylist(persons, schema=pq.read_schema(shards / "persons" / "part-00000.parquet")),
                   bad / "persons" / "part-00000.parquet")
    monkeypatch.setenv(failpoints.env("nan_pairs"), f"{persons[0]['person_id']}/g0007")
    job = tmp_path / "job"
    res = run_job(RenderConfig(shards=str(bad), output=str(job), max_unrendered_fraction=0.05, **BASE))
    assert res.exit_code == 1                                        # 3 of 6 pairs unrendered > 5 %
    assert res.summary["unrendered"] == 3 and res.summary["unrendered_fraction"] == pytest.approx(0.5)
    scores = check_job(job, expected_pairs(shards))
    errors = {(r["person_id"], r["garment_id"]): r["error"] for r in scores.to_pylist() if r["flag"] == "error"}
    assert errors[(persons[0]["person_id"], "g0007")] == "non-finite values in the try-on output"
    for g in ("g0002", "g0007"):
        assert "bad input row" in errors[(persons[1]["person_id"], g)]
    assert len(errors) == 3
    assert json.loads((job / "summary.json").read_text())["counts"]["error"] == 3
    # the same job with a tolerant limit exits 0 (nothing re-rendered: all units are done)
    res = run_job(RenderConfig(shards=str(bad), output=str(job), max_unrendered_fraction=0.6, **BASE))
    assert res.exit_code == 0 and res.summary["pairs_rendered_this_run"] == 0


def test_an_item_whose_encoding_fails_fails_only_its_pairs(shards, tmp_path, monkeypatch):
    """A unit whose batched encoding raises is encoded item by item: only the failing item's pairs
    become error rows, the rest of the unit renders."""
    from workers.render.encoding import UnitEncoder

    pairs = expected_pairs(shards)
    victim = sorted({p for p, _ in pairs})[0]
    encode = UnitEncoder.encode

    def failing_encode(self, kind, items, category):
        if kind == "person" and victim in items:
            raise RuntimeError("encoder exploded")
        return encode(self, kind, items, category)

    monkeypatch.setattr(UnitEncoder, "encode", failing_encode)
    job = tmp_path / "job"
    run_job(RenderConfig(shards=str(shards), output=str(job), max_unrendered_fraction=1.0, **BASE))
    scores = check_job(job, pairs)
    errors = {(r["person_id"], r["garment_id"]): r["error"] for r in scores.to_pylist() if r["flag"] == "error"}
    assert set(errors) == {(victim, g) for g in ("g0002", "g0007")}
    assert all(e == "encoding failed: RuntimeError: encoder exploded" for e in errors.values())


def test_resume_after_kill(shards, tmp_path):
    job = tmp_path / "job"
    cmd = [sys.executable, "-m", "pipelines.cli", "render", "--shards", str(shards), "--output", str(job),
           "--runner", "local", "--unit-size", "1", "--batch-size", "1", "--no-progress",
           "--set", "categories=[upper]", "--set", "model.variant=vitonhd", "--set", "model.width=0.0625",
           "--set", "garments.include=[g0002, g0007]", "--random-weights"]
    env = dict(os.environ, PYTHONPATH=str(REPO), **{failpoints.env("slow_unit_s"): "0.5"})
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((job / "scores").glob("*.done"))) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in (job / "scores").glob("*.done")}
    assert 2 <= len(done_before) < 6, "the kill must land midway"
    res = run_job(RenderConfig(shards=str(shards), output=str(job),
                               **dict(BASE, unit_size=1, batch_size=1)))
    assert res.exit_code == 0
    check_job(job, expected_pairs(shards))
    assert res.summary["pairs_rendered_this_run"] == 6 - len(done_before)
    assert res.summary["changes"]["added"] == 6          # the night's changes, as if it had not crashed
    for name, (mtime, text) in done_before.items():       # done units were not recomputed
        p = job / "scores" / name
        assert (p.stat().st_mtime_ns, p.read_text()) == (mtime, text)


def test_cli_exit_codes(shards, tmp_path, capsys):
    from pipelines.cli import main

    args = ["render", "--shards", str(shards), "--runner", "local", "--no-progress", "--random-weights",
            "--set", "categories=[upper]", "--set", "model.variant=vitonhd", "--set", "model.width=0.0625",
            "--set", "garments.include=[g0002]", "--set", "persons.include=[p0000]", "--format", "png"]
    assert main(args + ["--output", str(tmp_path / "ok")]) == 0
    assert len(list((tmp_path / "ok" / "renders" / "upper" / "p0000").glob("g0002-*.png"))) == 1
    assert main(args + ["--output", str(tmp_path / "bad"), "--set", "thresholds.warp_miou={warn: 0.1, fail: 0.5}"]) == 2
    assert main(args + ["--output", str(tmp_path / "old"), "--set", "fail_flags=[error, fail]"]) == 2
    assert "fail_flags was removed" in capsys.readouterr().err


def test_one_failure_definition_for_render_report_and_status(shards, tmp_path, capsys):
    """Every pair fails QA: render worked (exit 0) and says where to look; the report, the QA gate,
    exits 1; render's summary, the report and status agree on every count and fraction."""
    from pipelines.cli import main

    job = tmp_path / "strict"
    args = ["render", "--shards", str(shards), "--runner", "local", "--no-progress", "--random-weights",
            "--output", str(job), "--set", "categories=[upper]", "--set", "model.variant=vitonhd",
            "--set", "model.width=0.0625", "--set", "garments.include=[g0002, g0007]",
            "--set", "thresholds.warp_miou={warn: 1.01, fail: 1.01}"]
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    n = len(expected_pairs(shards))
    assert f"ok 0, warn 0, fail {n}, error 0, missing 0 of {n} pairs" in out[-1]
    assert "exit 0" in out[-1] and f"gpvton report --job {job}" in out[-1]
    summary = json.loads((job / "summary.json").read_text())
    assert summary["failed"] == n and summary["failed_fraction"] == 1.0 and summary["unrendered"] == 0
    assert main(["report", "--job", str(job)]) == 1
    report = json.loads((job / "report" / "summary.json").read_text())
    capsys.readouterr()
    assert main(["status", str(job), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    keys = ("pairs", "scored", "missing", "counts", "unrendered", "unrendered_fraction", "failed", "failed_fraction",
            "definitions")
    assert {k: report[k] for k in keys} == {k: summary[k] for k in keys} == {k: status[k] for k in keys}


def test_random_weights_are_opt_in(shards, tmp_path, capsys):
    """No checkpoints and no --random-weights: exit 2 naming the missing flags, nothing written."""
    import torch

    from gpvton_core.checkpoints import save_safetensors
    from gpvton_core.warp import LFGPWarp
    from pipelines.cli import main

    args = ["render", "--shards", str(shards), "--runner", "local", "--no-progress"]
    assert main(args + ["--output", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "--warp-checkpoint and --generator-checkpoint" in err and "--random-weights" in err
    assert "Traceback" not in err and not (tmp_path / "none").exists()
    torch.manual_seed(0)
    warp = tmp_path / "warp.safetensors"
    save_safetensors(LFGPWarp("vitonhd", 0.0625), warp)
    assert main(args + ["--output", str(tmp_path / "one"), "--warp-checkpoint", str(warp)]) == 2
    err = capsys.readouterr().err
    assert "error: no --generator-checkpoint given (checkpoints.generator in the config)" in err
    assert main(args + ["--output", str(tmp_path / "both"), "--warp-checkpoint", str(warp), "--random-weights"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_checkpoints_hashes_and_wrong_kind(shards, tmp_path):
    import hashlib

    import torch

    from gpvton_core.checkpoints import save_safetensors
    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.warp import LFGPWarp
    from pipelines.cli import main

    torch.manual_seed(1)
    warp, gen = tmp_path / "warp.safetensors", tmp_path / "gen.safetensors"
    save_safetensors(LFGPWarp("vitonhd", 0.0625), warp)
    save_safetensors(TryOnGenerator(0.0625), gen)
    args = ["render", "--shards", str(shards), "--runner", "local", "--no-progress",
            "--set", "categories=[upper]", "--set", "garments.include=[g0002]", "--set", "persons.include=[p0000]"]
    assert main(args + ["--output", str(tmp_path / "swapped"), "--warp-checkpoint", str(gen),
                        "--generator-checkpoint", str(warp)]) == 2
    assert main(args + ["--output", str(tmp_path / "mixed"), "--warp-checkpoint", str(warp),
                        "--generator-checkpoint", str(gen), "--set", "categories=[upper, lower]"]) == 2
    job = tmp_path / "ok"
    assert main(args + ["--output", str(job), "--warp-checkpoint", str(warp), "--generator-checkpoint", str(gen)]) == 0
    meta = json.loads((job / "job.json").read_text())
    assert not meta["random_weights"] and "RANDOM" not in meta["model_note"]
    assert meta["checkpoints"]["warp"]["sha256"] == hashlib.sha256(warp.read_bytes()).hexdigest()
    assert meta["checkpoint_meta"]["warp"] == {"kind": "warp_vitonhd", "width": 0.0625}
    assert len(list((job / "renders" / "upper" / "p0000").glob("g0002-*.jpg"))) == 1


def test_lost_unit_fails_the_job_and_the_rerun_completes_it(shards, tmp_path, monkeypatch):
    job = tmp_path / "job"
    small = dict(BASE, persons={"include": ["p0000", "p0001"]})
    monkeypatch.setenv(failpoints.env("raise_unit"), "1")
    res = run_job(RenderConfig(shards=str(shards), output=str(job), **small))
    assert res.exit_code == 1
    assert res.summary["units_lost"] == [1] and res.summary["missing"] == 2
    assert "injected failure" in res.summary["lost_errors"][0]
    assert not (job / "scores" / "unit-00001.parquet.done").exists()
    monkeypatch.delenv(failpoints.env("raise_unit"))
    res = run_job(RenderConfig(shards=str(shards), output=str(job), **small))
    assert res.exit_code == 0 and res.summary["pairs_rendered_this_run"] == 2
    check_job(job, {pg for pg in expected_pairs(shards) if pg[0] in ("p0000", "p0001")})


def test_precision_is_resolved_once_for_the_job(monkeypatch):
    """auto follows the hardware; an explicit choice stands; a driver without the workers' GPU defers."""
    import torch

    from gpvton_core import precision as prec
    from pipelines.render.runtime import resolve_precision

    monkeypatch.setattr(prec, "cpu_flags", lambda: {"capability": "AVX2", "avx512_bf16": False, "amx_bf16": False,
                                                    "amx_fp16": False, "mkldnn": True})
    plain = resolve_precision("auto", "cpu")
    assert plain["resolved"] == "fp32" and "no native bf16" in plain["reason"] and "policy" not in plain
    monkeypatch.setattr(prec, "cpu_flags", lambda: {"capability": "AVX512", "avx512_bf16": True, "amx_bf16": False,
                                                    "amx_fp16": False, "mkldnn": True})
    native = resolve_precision("auto", "cpu")
    assert native["resolved"] == "bf16" and native["policy"]["generator"] and not native["policy"]["encoders"]
    assert resolve_precision("fp32", "cpu")["resolved"] == "fp32"
    assert resolve_precision("fp16", "cpu")["policy"]["reduced"] == "fp16"
    if not torch.cuda.is_available():
        deferred = resolve_precision("auto", "cuda")
        assert deferred["resolved"] == "auto" and deferred["reason"].startswith("left to the workers")
