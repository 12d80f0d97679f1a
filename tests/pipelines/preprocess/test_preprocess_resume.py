"""Preprocessing resumes: a rerun redoes only the unfinished groups of the generation it was
writing; a rerun with nothing to do is a no-op; other settings over the same output are a new
generation (every item changed), not an error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from preprocess_synth import write_good_manifest
from pipelines.cli import main
from pipelines.preprocess.beam_pipeline import read_table

pytestmark = pytest.mark.slow


def _ids(out):
    return sorted(r["person_id"] for r in read_table(str(out), "persons").to_pylist()) + \
        sorted(r["garment_id"] for r in read_table(str(out), "garments").to_pylist())


def test_rerun_after_a_crash_redoes_only_unfinished_groups(tmp_path):
    root = tmp_path / "cat"
    write_good_manifest(root, n_persons=4)
    out = tmp_path / "shards"
    args = ["preprocess", "--input", f"manifest:{root}", "--output", str(out), "--resolution", "256",
            "--set", "num_shards=3"]
    assert main(args) == 0
    first = _ids(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["groups"] == {"total": 3, "done_now": 3, "resumed": 0}

    # A crash in the middle of generation 1: two groups done, group 1's marker never came and its
    # garments part is missing; nothing was committed yet.
    stamps = {k: (out / k).stat().st_mtime_ns for k in manifest["parts"]["persons"]}
    state = out / "_preprocess" / "gen-0001"
    state.mkdir(parents=True, exist_ok=True)
    (state / "plan.json").write_text(json.dumps({"fingerprint": manifest["plan"], "max_pixels": 64_000_000}))
    import pyarrow.parquet as pq

    for g in (0, 2):
        counts = {t: pq.read_metadata(out / t / f"part-{g:05d}.parquet").num_rows
                  if (out / t / f"part-{g:05d}.parquet").exists() else 0 for t in ("persons", "garments", "errors")}
        (state / f"group-{g:05d}.done").write_text(json.dumps(counts))
    (out / "garments" / "part-00001.parquet").unlink(missing_ok=True)
    (out / "manifest.json").unlink()
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["groups"] == {"total": 3, "done_now": 1, "resumed": 2}
    assert _ids(out) == first and len(first) == len(set(first))        # every item exactly once
    assert {k: (out / k).stat().st_mtime_ns for k in stamps if "00001" not in k} == \
        {k: v for k, v in stamps.items() if "00001" not in k}           # finished groups untouched

    # Nothing left to do: a rerun is a no-op and writes no manifest.
    before = (out / "manifest.json").read_bytes()
    assert main(args) == 0
    assert (out / "manifest.json").read_bytes() == before

    # Other settings over the same output: a new generation in which every item changed.
    other = [a if a != "256" else "128" for a in args]
    assert main(other) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resolution"] == 128 and manifest["generation"] == 2
    assert manifest["changes"]["persons"]["changed"] == 4 and manifest["derived"] == 6
    assert _ids(out) == first
    assert main(other + ["--force"]) == 0
    assert json.loads((out / "manifest.json").read_text())["generation"] == 3
    assert _ids(out) == first
