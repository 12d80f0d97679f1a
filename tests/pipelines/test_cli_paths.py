"""Every URL argument accepts relative paths, ``~`` and ``file://``, from any working directory.

Before, a relative ``--output``/``--shards`` failed with ``.../rel/tmp/.../rel/persons/part-00000.parquet``
(listing glued fsspec's absolute paths onto the relative root) and job.json recorded paths that
meant nothing from another directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _gpvton(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPVTON_FAILPOINT_", "RAY_"))}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=600)
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return res


@pytest.mark.slow
def test_every_command_from_another_directory_with_relative_paths(tmp_path):
    from pipelines.synthetic.catalogue import make_catalogue

    home, work, other = tmp_path / "home", tmp_path / "work", tmp_path / "elsewhere"
    for d in (home, work, other):
        d.mkdir()
    make_catalogue(tmp_path / "data" / "cat", n_garments=4, n_persons=2, height=128, width=96, seed=0)

    res = _gpvton(work, home, "preprocess", "--input", "manifest:../data/cat", "--output", "~/shards",
                  "--resolution", "128")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (home / "shards" / "manifest.json").is_file() and not (work / "~").exists()

    res = _gpvton(work, home, "render", "--shards", "../home/shards", "--output", "rel_job", "--runner", "local",
                  "--random-weights", "--pairing", "paired", "--no-progress", "--set", "model.width=0.0625")
    assert res.returncode == 0, res.stderr[-3000:]
    job = work / "rel_job"
    meta = json.loads((job / "job.json").read_text())
    assert meta["config"]["shards"] == str(home / "shards") and meta["config"]["output"] == str(job)
    summary = json.loads((job / "summary.json").read_text())
    assert summary["pairs"] > 0 and summary["scored"] == summary["pairs"]

    # the report reads the shards named in job.json: absolute, so any directory works
    res = _gpvton(other, home, "report", "--job", "../work/rel_job", "--fail-limit", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((job / "report" / "summary.json").read_text())
    assert report["thumbnails"]["made"]["person"] > 0 and report["pairs"] == summary["pairs"]

    res = _gpvton(other, home, "status", f"file://{job}")
    assert res.returncode == 0 and f"job {job} " in res.stdout, res.stdout + res.stderr

    res = _gpvton(home, home, "eval", "--job", "~/../work/rel_job", "--metrics", "ssim", "--out", "eval_here")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((home / "eval_here" / "metrics.json").read_text())["pairs"]["evaluated"] == summary["pairs"]

    # rerun from another directory with equivalent spellings: the same job, resumed
    res = _gpvton(other, home, "render", "--shards", "~/shards", "--output", f"file://{job}", "--runner", "local",
                  "--random-weights", "--pairing", "paired", "--no-progress", "--set", "model.width=0.0625")
    assert res.returncode == 0, res.stderr[-3000:]
    again = json.loads((job / "summary.json").read_text())
    assert again["changes"]["unchanged"] == summary["pairs"] and again["pairs_rendered_this_run"] == 0
