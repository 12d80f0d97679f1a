"""Nightly preprocess over a changing catalogue: night 1 → night 2 derives exactly the new and
changed items, keeps the unchanged rows as they were, retires withdrawn ids; a rerun with no
changes is a no-op; --force rebuilds; a SIGKILL mid-update resumes to the same result; the same
on a real S3 server; a dry run writes nothing."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from infra import failpoints
from infra.shards import ShardSet
from infra.storage import filesystem
from pipelines.cli import main
from pipelines.synthetic.catalogue import make_catalogue

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow
G_FIELDS = ["garment_id", "image", "category", "mask", "parts"]
P_FIELDS = ["person_id", "image", "categories", "keypoints", "parsing", "densepose", "worn_garment_id"]


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write(path: Path, fields: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def night1(root: Path) -> Path:
    """6 garments, 3 model photos (they wear g0000..g0002), 128×96, plus a second catalogue
    (seed 1) to draw tomorrow's new photos from."""
    make_catalogue(root / "cat", n_garments=6, n_persons=3, height=128, width=96, seed=0)
    make_catalogue(root / "more", n_garments=3, n_persons=1, height=128, width=96, seed=1)
    return root / "cat"


def night2(root: Path) -> dict[str, set[str]]:
    """Two new garments, g0004 reshot (a new photo under its id), g0005 withdrawn, one new model
    photo. Returns the ids each change applies to."""
    cat, more = root / "cat", root / "more"
    garments = [r for r in _rows(cat / "garments.csv") if r["garment_id"] != "g0005"]
    for i, new_id in enumerate(("n0000", "n0001")):
        src = _rows(more / "garments.csv")[i]
        for part in ("image", "mask", "parts"):
            shutil.copy(more / src[part], cat / src[part].replace(src["garment_id"], new_id))
        garments.append({**src, **{k: src[k].replace(src["garment_id"], new_id) for k in ("image", "mask", "parts")},
                         "garment_id": new_id})
    g4 = next(r for r in garments if r["garment_id"] == "g0004")
    src = _rows(more / "garments.csv")[2]
    g4["category"] = src["category"]
    for part in ("image", "mask", "parts"):
        shutil.copy(more / src[part], cat / g4[part])            # same URLs, new bytes
    _write(cat / "garments.csv", G_FIELDS, garments)
    persons = _rows(cat / "persons.csv")
    p = _rows(more / "persons.csv")[0]
    for part in ("image", "keypoints", "parsing", "densepose"):
        shutil.copy(more / p[part], cat / p[part].replace("p0000", "q0000"))
    persons.append({**p, **{k: p[k].replace("p0000", "q0000") for k in ("image", "keypoints", "parsing", "densepose")},
                    "person_id": "q0000", "worn_garment_id": "g0000"})
    _write(cat / "persons.csv", P_FIELDS, persons)
    return {"added": {"n0000", "n0001", "q0000"}, "changed": {"g0004"}, "retired": {"g0005"}}


def _args(cat: Path, out: str, *extra: str) -> list[str]:
    return ["preprocess", "--input", f"manifest:{cat}", "--output", out, "--resolution", "128",
            "--no-progress", *extra]


def _rows_by_id(out: str, s3=None) -> dict[str, dict]:
    shards = ShardSet(out, s3)
    rows = {}
    for table, key in (("persons", "person_id"), ("garments", "garment_id")):
        t = shards.read_table(table).to_pylist()
        ids = [r[key] for r in t]
        assert len(ids) == len(set(ids)), f"{table}: more than one row per id"
        rows.update({r[key]: r for r in t})
    return rows


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _check_night2(before: dict[str, dict], after: dict[str, dict], manifest: dict, ids: dict[str, set[str]]) -> None:
    assert set(after) == (set(before) | ids["added"]) - ids["retired"]
    for i in set(before) - ids["changed"] - ids["retired"]:
        assert after[i] == before[i], i                 # unchanged rows: every value, bytes included
    for i in ids["changed"]:
        assert after[i]["content_key"] != before[i]["content_key"]
        assert after[i]["image_png"] != before[i]["image_png"]
    assert manifest["changes"] == {
        "persons": {"added": 1, "changed": 0, "unchanged": 3, "retired": 0},
        "garments": {"added": 2, "changed": 1, "unchanged": 4, "retired": 1}}
    assert manifest["derived"] == 4 and manifest["generation"] == 2
    assert manifest["counts"] == {"persons": 4, "garments": 7, "errors": 0}


def test_night1_night2_incremental(tmp_path, capsys):
    cat = night1(tmp_path)
    out = tmp_path / "shards"
    assert main(_args(cat, str(out), "--set", "num_shards=3")) == 0
    m1 = json.loads((out / "manifest.json").read_text())
    assert m1["generation"] == 1 and m1["derived"] == 9 and m1["metrics"]["items_derived"] == 9
    before = _rows_by_id(str(out))
    assert all(len(r["content_key"]) == 32 for r in before.values())
    capsys.readouterr()

    # a rerun with no changes: nothing derived, no new generation, nothing rewritten
    tree = _tree(out / "persons") | _tree(out / "garments")
    assert main(_args(cat, str(out), "--set", "num_shards=3")) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text()) == m1
    assert _tree(out / "persons") | _tree(out / "garments") == tree

    ids = night2(tmp_path)
    # the dry run says what would happen, and writes nothing at all
    whole = _tree(out)
    assert main(_args(cat, str(out), "--dry-run")) == 0
    said = capsys.readouterr().out
    assert "would derive 4 items" in said and "garments: added 2, changed 1, unchanged 4, retired 1" in said
    assert _tree(out) == whole

    assert main(_args(cat, str(out))) == 0
    m2 = json.loads((out / "manifest.json").read_text())
    after = _rows_by_id(str(out))
    _check_night2(before, after, m2, ids)
    assert m2["metrics"]["items_derived"] == 4               # Beam derived exactly the 4 new / changed items
    # parts whose rows all stayed are reused by reference; the previous generation's parts stay on disk
    with_rows = {k for k in m1["parts"]["persons"] if pq.read_metadata(out / k).num_rows}
    assert with_rows and with_rows <= set(m2["parts"]["persons"])          # night 1's persons, untouched
    assert all((out / k).is_file() for k in m1["parts"]["garments"])
    changes = {(r["id"], r["change"]) for r in pq.read_table(out / "_preprocess/gen-0002/changes.parquet").to_pylist()}
    assert changes == {("n0000", "added"), ("n0001", "added"), ("q0000", "added"), ("g0004", "changed"),
                       ("g0005", "retired")}

    # night 3, nothing changed: no-op again; --force derives everything into generation 3
    assert main(_args(cat, str(out))) == 0
    assert json.loads((out / "manifest.json").read_text())["generation"] == 2
    assert main(_args(cat, str(out), "--force")) == 0
    m3 = json.loads((out / "manifest.json").read_text())
    assert m3["generation"] == 3 and m3["derived"] == 11 and m3["metrics"]["items_derived"] == 11
    assert {k: {c: r[c] for c in ("content_key", "image_png")} for k, r in _rows_by_id(str(out)).items()} == \
        {k: {c: r[c] for c in ("content_key", "image_png")} for k, r in after.items()}
    # garbage collection: only parts listed by generation 3 or generation 2 remain
    listed = {k for m in (m2, m3) for keys in m["parts"].values() for k in keys}
    on_disk = {str(p.relative_to(out)) for t in ("persons", "garments", "errors") for p in (out / t).glob("*.parquet")}
    assert on_disk == listed
    assert not any((out / k).exists() for k in set(m1["parts"]["garments"]) - listed)


def test_killed_night2_resumes_to_the_same_result(tmp_path):
    cat = night1(tmp_path)
    ref, out = tmp_path / "ref", tmp_path / "shards"
    for o in (ref, out):
        assert main(_args(cat, str(o))) == 0
    night2(tmp_path)
    assert main(_args(cat, str(ref), "--set", "num_shards=4")) == 0     # uninterrupted

    # each group marker waits 2 s: the kill lands between two groups of generation 2
    env = dict(os.environ, PYTHONPATH=str(REPO), **{failpoints.env("slow_writes"): "_preprocess/gen-0002/group-:2"})
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *_args(cat, str(out), "--set", "num_shards=4")],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not list((out / "_preprocess" / "gen-0002").glob("group-*.done")):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no group finished in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list((out / "_preprocess" / "gen-0002").glob("group-*.done"))
    assert 1 <= len(done) < 4
    assert json.loads((out / "manifest.json").read_text())["generation"] == 1   # readers still see night 1

    assert main(_args(cat, str(out), "--set", "num_shards=4")) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["generation"] == 2 and m["groups"]["resumed"] == len(done)
    assert m["metrics"]["items_derived"] == 4 - len(done)
    got, want = _rows_by_id(str(out)), _rows_by_id(str(ref))
    assert got == want
    assert m["parts"] == json.loads((ref / "manifest.json").read_text())["parts"]


def test_night1_night2_on_s3(local_s3, tmp_path):
    cat = night1(tmp_path)
    s3 = local_s3.settings
    fs = filesystem(local_s3.url(), s3)
    out = local_s3.url("shards/incremental")
    flags = ["--set", f"s3.endpoint_url={s3.endpoint_url}", "--set", f"s3.access_key_id={s3.access_key_id}",
             "--set", f"s3.secret_access_key={s3.secret_access_key}", "--set", f"s3.region={s3.region}"]

    def upload() -> None:
        fs.rm(f"{local_s3.bucket}/in/cat", recursive=True) if fs.exists(f"{local_s3.bucket}/in/cat") else None
        fs.put(str(cat), f"{local_s3.bucket}/in/cat", recursive=True)
        fs.invalidate_cache()

    upload()
    s3cat = local_s3.url("in/cat")
    args = ["preprocess", "--input", f"manifest:{s3cat}", "--output", out, "--resolution", "128", "--no-progress",
            *flags]
    assert main(args) == 0
    before = _rows_by_id(out, s3)
    assert main(args) == 0                                  # no change: stays generation 1
    assert ShardSet(out, s3).manifest["generation"] == 1
    ids = night2(tmp_path)
    upload()
    assert main(args) == 0
    m = ShardSet(out, s3).manifest
    _check_night2(before, _rows_by_id(out, s3), m, ids)
    assert all(fs.exists(f"{local_s3.bucket}/shards/incremental/{k}") for keys in m["parts"].values() for k in keys)
