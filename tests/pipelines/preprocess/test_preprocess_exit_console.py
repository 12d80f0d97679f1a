"""Preprocess exit codes and console (issue 21): photos that all fail exit 1, not 0 with an empty
persons table; a kind's error share over ``max_error_fraction`` exits 1; the console shows a
progress line and a summary, never log records or MediaPipe's native warnings (``-v`` does)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import main

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING|ERROR)")


def _photos(root, vitonhd_root, n_models: int = 6):
    models, garments = root / "models", root / "garments" / "upper"
    models.mkdir(parents=True)
    garments.mkdir(parents=True)
    for src in sorted((vitonhd_root / "test" / "image").glob("*.jpg"))[:n_models]:
        shutil.copy(src, models / src.name)
    cloth = sorted((vitonhd_root / "test" / "cloth").glob("*.jpg"))[0]
    shutil.copy(cloth, garments / cloth.name)
    return root


def test_model_photos_without_a_parser_exit_1_on_a_quiet_console(tmp_path, vitonhd_root, capfd):
    cat = _photos(tmp_path / "cat", vitonhd_root)
    out = tmp_path / "shards"
    # a fresh process, as a scheduler runs it (MediaPipe prints its warning once per process)
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "preprocess", "--input", f"photos:{cat}",
                           "--output", str(out), "--resolution", "256"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    rc, o, e = proc.returncode, proc.stdout, proc.stderr
    assert rc == 1                                          # 0 persons: the shards cannot feed a render
    assert "0 persons in the shards (6 error rows)" in e
    assert "preprocess: generation 1: 0 persons, 1 garments, 6 errors" in o
    assert "landmark_projection_calculator" not in o + e    # MediaPipe's C++ warning stays off the console
    assert not RECORD.search(o + e), e                      # no log records, no timestamps
    assert "apitools" not in e                              # nor Beam's import-time warning
    assert "preprocess: 100%" in e                          # the progress line
    text = (out / "logs" / "preprocess.log").read_text()
    assert "no human parsing given" in text and RECORD.search(text)   # records went to the job's log
    assert "landmark_projection_calculator" in text                   # and so did the native lines

    # -v: the records on the console as well
    rc = main(["-v", "preprocess", "--input", f"photos:{cat}", "--output", str(tmp_path / "v"),
               "--resolution", "256"])
    assert rc == 1
    assert RECORD.search(capfd.readouterr().err)


def test_max_error_fraction_per_kind(tmp_path, capsys):
    from pipelines.synthetic.catalogue import make_catalogue

    cat = tmp_path / "cat"
    make_catalogue(cat, n_garments=6, n_persons=2, height=128, width=96, seed=0)
    (cat / "garments" / "g0005.png").write_bytes(b"not an image")          # 1 of 6 garments fails
    args = ["preprocess", "--input", f"manifest:{cat}", "--resolution", "128", "--no-progress"]
    assert main([*args, "--output", str(tmp_path / "a")]) == 1
    assert "1 of 6 garment items failed (16.7% > max_error_fraction.garments 5.0%)" in capsys.readouterr().err
    assert main([*args, "--output", str(tmp_path / "b"), "--set", "max_error_fraction.garments=0.2"]) == 0
    # the failed garment has no row: the next run re-attempts it (and fails it again), nothing else
    assert main([*args, "--output", str(tmp_path / "b"), "--set", "max_error_fraction.garments=0.2"]) == 0
    import json

    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["generation"] == 2 and m["derived"] == 1 and m["counts"]["errors"] == 1
