"""Preprocessing resumes: a rerun redoes only the unfinished groups; other inputs or settings are
refused unless --force rebuilds."""

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
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "persons").glob("part-*.parquet")}

    # A crash in the middle of group 1: its marker never came and its part files are half there.
    (out / "_preprocess" / "group-00001.done").unlink()
    (out / "garments" / "part-00001.parquet").unlink()
    (out / "manifest.json").unlink()
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["groups"] == {"total": 3, "done_now": 1, "resumed": 2}
    assert _ids(out) == first and len(first) == len(set(first))        # every item exactly once
    after = {p.name: p.stat().st_mtime_ns for p in (out / "persons").glob("part-*.parquet")}
    assert after["part-00000.parquet"] == stamps["part-00000.parquet"]  # finished groups untouched
    assert after["part-00002.parquet"] == stamps["part-00002.parquet"]

    # Nothing left to do: a rerun is a no-op that still writes the manifest.
    assert main(args) == 0
    assert json.loads((out / "manifest.json").read_text())["groups"]["done_now"] == 0

    # Other settings over the same output: refused (exit 2) unless forced.
    other = [a if a != "256" else "128" for a in args]
    assert main(other) == 2
    assert _ids(out) == first
    assert main(other + ["--force"]) == 0
    assert json.loads((out / "manifest.json").read_text())["resolution"] == 128
    assert _ids(out) == first
