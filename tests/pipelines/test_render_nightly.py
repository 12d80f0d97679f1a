"""A catalogue every night: a render over changed shards into the same output renders exactly the
pairs whose content key is new, leaves the rest untouched, retires what left, survives a kill -9,
works on S3, and its dry run writes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra import failpoints
from infra.jobfolder import JobFolder
from pipelines.render import RenderConfig, run_job

REPO = Path(__file__).resolve().parents[2]
BASE = dict(runner="local", categories=["upper"], model={"variant": "vitonhd", "width": 0.0625}, unit_size=2,
            batch_size=2, progress=False, random_weights=True)


def _key(row: dict) -> str:
    return hashlib.sha256(row["image_png"] + row.get("parsing_png", b"") + row.get("mask_png", b"")).hexdigest()[:32]


def keyed_shards(src: Path, dst: Path, edit=None) -> Path:
    """A copy of ``src`` whose rows carry content keys (a hash of their images), after ``edit``
    (``{table: rows → rows}``) changed the catalogue the way a night does."""
    shutil.rmtree(dst, ignore_errors=True)
    for table in ("persons", "garments", "errors"):
        rows = pq.read_table(src / table / "part-00000.parquet").to_pylist()
        schema = pq.read_schema(src / table / "part-00000.parquet")
        if edit and table in edit:
            rows = edit[table](rows)
        if table != "errors":
            for r in rows:
                r["content_key"] = _key(r)
            if "content_key" not in schema.names:
                schema = schema.append(pa.field("content_key", pa.string()))
        (dst / table).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), dst / table / "part-00000.parquet")
    manifest = json.loads((src / "manifest.json").read_text())
    manifest.pop("parts", None)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def upper_ids(shards: Path) -> tuple[list[str], list[str]]:
    ps = pq.read_table(shards / "persons" / "part-00000.parquet").to_pylist()
    gs = pq.read_table(shards / "garments" / "part-00000.parquet").to_pylist()
    return ([r["person_id"] for r in ps if "upper" in r["categories"]],
            [r["garment_id"] for r in gs if r["category"] == "upper"])


def files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def index_rows(job: str) -> dict[tuple[str, str], dict]:
    rows = JobFolder(job).read_index().to_pylist()
    assert len(rows) == len({(r["person_id"], r["garment_id"]) for r in rows})      # one row per pair
    return {(r["person_id"], r["garment_id"]): r for r in rows}


@pytest.fixture(scope="module")
def nights(synthetic_shards, tmp_path_factory) -> dict:
    src = synthetic_shards(n_garments=9, n_persons=4, seed=0)
    root = tmp_path_factory.mktemp("nights")
    night1 = keyed_shards(src, root / "night1")
    persons, garments = upper_ids(night1)
    assert len(persons) >= 2 and len(garments) >= 3
    withdrawn, changed = garments[0], garments[1]

    def edit_garments(rows):
        out = [r for r in rows if r["garment_id"] != withdrawn]
        for r in out:
            if r["garment_id"] == changed:       # a new photo under the same id
                from PIL import Image, ImageOps
                import io

                img = ImageOps.mirror(Image.open(io.BytesIO(r["image_png"])))
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                r["image_png"] = buf.getvalue()
        new = dict(next(r for r in rows if r["garment_id"] == garments[2]), garment_id="g0100")
        new["image_png"] = new["image_png"] + b""          # same pixels, new id: a new garment
        return out + [new]

    def edit_persons(rows):
        new = dict(next(r for r in rows if r["person_id"] == persons[0]), person_id="p0100")
        return rows + [new]

    night2 = keyed_shards(src, root / "night2", {"garments": edit_garments, "persons": edit_persons})
    return {"night1": night1, "night2": night2, "persons": persons, "garments": garments,
            "withdrawn": withdrawn, "changed": changed}


def expected_night2(n: dict) -> dict[str, set]:
    p1, g1 = n["persons"], n["garments"]
    g2 = [g for g in g1 if g != n["withdrawn"]] + ["g0100"]
    p2 = p1 + ["p0100"]
    plan = {(p, g) for p in p2 for g in g2}
    added = {(p, "g0100") for p in p2} | {("p0100", g) for g in g2}
    updated = {(p, n["changed"]) for p in p1}
    retired = {(p, n["withdrawn"]) for p in p1}
    return {"plan": plan, "added": added, "updated": updated, "retired": retired,
            "unchanged": plan - added - updated}


def test_night_two_renders_exactly_the_changes(nights, tmp_path):
    job = str(tmp_path / "job")
    cfg1 = RenderConfig(shards=str(nights["night1"]), output=job, **BASE)
    assert run_job(cfg1).exit_code == 0
    before = index_rows(job)
    renders_before = files(Path(job) / "renders")
    exp = expected_night2(nights)

    res = run_job(RenderConfig(shards=str(nights["night2"]), output=job, **BASE))
    assert res.exit_code == 0
    s = res.summary
    assert s["changes"] == {"added": len(exp["added"]), "updated": len(exp["updated"]),
                            "retired": len(exp["retired"]), "unchanged": len(exp["unchanged"]), "retried": 0}
    assert s["pairs_rendered_this_run"] == len(exp["added"]) + len(exp["updated"])
    assert s["pairs"] == len(exp["plan"]) and sum(s["counts"].values()) == len(exp["plan"])
    assert json.loads((Path(job) / "summary.json").read_text())["changes"] == s["changes"]
    after = index_rows(job)
    assert set(after) == exp["plan"]                                           # retired pairs left the index
    for pair in exp["unchanged"]:                                              # untouched: same row, same file
        assert after[pair]["version"] == before[pair]["version"]
        assert after[pair]["run_id"] == before[pair]["run_id"]
        key = after[pair]["output_key"][len("renders/"):]
        assert files(Path(job) / "renders")[key] == renders_before[key]
    for pair in exp["updated"]:                                                # a new version next to the old
        assert after[pair]["version"] != before[pair]["version"]
        assert (Path(job) / after[pair]["output_key"]).exists() and (Path(job) / before[pair]["output_key"]).exists()
    changes = JobFolder(job).read_changes().to_pylist()
    by_kind = {k: {(r["person_id"], r["garment_id"]) for r in changes if r["change"] == k}
               for k in ("added", "updated", "retired")}
    assert by_kind == {"added": exp["added"], "updated": exp["updated"], "retired": exp["retired"]}
    assert all(r["output_key"] for r in changes)
    assert s["change_list"] == JobFolder(job).change_lists()[-1]

    # a rerun of the same night changes nothing and writes nothing but its summary
    snapshot = files(Path(job))
    res = run_job(RenderConfig(shards=str(nights["night2"]), output=job, **BASE))
    assert res.summary["changes"]["unchanged"] == len(exp["plan"]) and res.summary["pairs_rendered_this_run"] == 0
    now = files(Path(job))
    changed = {k for k in set(now) | set(snapshot) if now.get(k) != snapshot.get(k)}
    assert all(k in ("summary.json", "job.json", "logs/driver.log") or k.startswith("runs/") for k in changed), changed

    # prune: only the current renders stay
    from pipelines.cli import main

    assert main(["prune", job]) == 0
    on_disk = sorted(str(p.relative_to(job)) for p in (Path(job) / "renders").rglob("*.jpg"))
    assert on_disk == sorted(r["output_key"] for r in index_rows(job).values() if r["output_key"])


def test_a_new_checkpoint_updates_every_pair_and_the_dry_run_says_so_first(nights, tmp_path, capsys):
    job = str(tmp_path / "job")
    assert run_job(RenderConfig(shards=str(nights["night1"]), output=job, **BASE)).exit_code == 0
    n = len(index_rows(job))
    other_model = dict(BASE, model={"variant": "vitonhd", "width": 0.0625, "seed": 1})   # other weights
    snapshot = files(Path(job))
    capsys.readouterr()
    res = run_job(RenderConfig(shards=str(nights["night1"]), output=job, dry_run=True, **other_model))
    assert res.exit_code == 0 and res.summary["changes"]["updated"] == n and res.summary["to_render"] == n
    out = capsys.readouterr().out
    assert f"{n} updated" in out and "to render: " + str(n) in out and "pairs/s" in out
    assert files(Path(job)) == snapshot                                        # the dry run wrote nothing
    res = run_job(RenderConfig(shards=str(nights["night1"]), output=job, **other_model))
    assert res.summary["changes"]["updated"] == n and res.summary["pairs_rendered_this_run"] == n
    # a dry run over an empty output writes nothing either
    fresh = tmp_path / "fresh"
    res = run_job(RenderConfig(shards=str(nights["night1"]), output=str(fresh), dry_run=True, **BASE))
    assert res.summary["changes"]["added"] == n and not fresh.exists()


def test_kill_during_night_two_then_rerun_loses_and_duplicates_nothing(nights, tmp_path):
    job = tmp_path / "job"
    assert run_job(RenderConfig(shards=str(nights["night1"]), output=str(job), **BASE)).exit_code == 0
    exp = expected_night2(nights)
    cmd = [sys.executable, "-m", "pipelines.cli", "render", "--shards", str(nights["night2"]), "--output", str(job),
           "--runner", "local", "--unit-size", "1", "--batch-size", "1", "--no-progress", "--random-weights",
           "--set", "categories=[upper]", "--set", "model.variant=vitonhd", "--set", "model.width=0.0625"]
    env = dict(os.environ, PYTHONPATH=str(REPO), **{failpoints.env("slow_unit_s"): "0.4"})
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    night1_run = JobFolder(str(job)).index_manifest()["run_id"]

    def night2_markers() -> int:      # night 1's work area stays until night 2 starts its own
        state = JobFolder(str(job)).run_state() or {}
        return len(list((job / "scores").glob("*.done"))) if state.get("run_id") not in (None, night1_run) else 0

    deadline = time.time() + 120
    while time.time() < deadline and night2_markers() < 3:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in (job / "scores").glob("*.done")}
    todo = len(exp["added"]) + len(exp["updated"])
    assert 3 <= len(done_before) < todo, "the kill must land midway"
    res = run_job(RenderConfig(shards=str(nights["night2"]), output=str(job), **BASE))
    assert res.exit_code == 0
    assert res.summary["pairs_rendered_this_run"] == todo - len(done_before)      # done units are kept
    assert res.summary["changes"]["added"] == len(exp["added"])                    # the night's changes as a whole
    for name, mtime in done_before.items():
        assert (job / "scores" / name).stat().st_mtime_ns == mtime
    assert set(index_rows(str(job))) == exp["plan"]
    changes = JobFolder(str(job)).read_changes().to_pylist()
    assert len(changes) == len({(r["person_id"], r["garment_id"]) for r in changes}) == todo + len(exp["retired"])


def test_night_two_on_the_s3_server(nights, local_s3, monkeypatch):
    for k, v in local_s3.env().items():
        monkeypatch.setenv(k, v)
    job = local_s3.url("nightly-job")
    assert run_job(RenderConfig(shards=str(nights["night1"]), output=job, **BASE)).exit_code == 0
    exp = expected_night2(nights)
    res = run_job(RenderConfig(shards=str(nights["night2"]), output=job, **BASE))
    assert res.exit_code == 0 and res.summary["pairs_rendered_this_run"] == len(exp["added"]) + len(exp["updated"])
    assert set(index_rows(job)) == exp["plan"]
    keys = set(JobFolder(job).storage.list("renders"))
    assert {r["output_key"] for r in index_rows(job).values()} <= keys
