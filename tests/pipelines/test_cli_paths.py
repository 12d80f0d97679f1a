"""Every URL argument accepts relative paths, ``~`` and ``file://``, from any working directory.

Before, a relative ``--output``/``--shards`` failed with ``.../rel/tmp/.../rel/persons/part-00000.parquet``
(listing glued fsspec's absolute paths onto the relative root) and job.json recorded paths that
meant nothing from another directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def gpvton(monkeypatch, capsys):
    """``gpvton ARGS`` run from ``cwd`` with ``HOME=home``: in process (``main``), so the working
    directory and ``~`` resolve exactly as from a shell, without paying a Python start-up per command."""
    from pipelines.cli import main

    def run(cwd: Path, home: Path, *args: str) -> Result:
        monkeypatch.chdir(cwd)
        monkeypatch.setenv("HOME", str(home))
        capsys.readouterr()
        rc = main(list(args))
        out = capsys.readouterr()
        assert "Traceback" not in out.err, out.err[-3000:]
        return Result(rc, out.out, out.err)

    return run


def test_every_command_from_another_directory_with_relative_paths(tmp_path, gpvton):
    from pipelines.synthetic.catalogue import make_catalogue

    home, work, other = tmp_path / "home", tmp_path / "work", tmp_path / "elsewhere"
    for d in (home, work, other):
        d.mkdir()
    make_catalogue(tmp_path / "data" / "cat", n_garments=4, n_persons=2, height=128, width=96, seed=0)

    res = gpvton(work, home, "preprocess", "--input", "manifest:../data/cat", "--output", "~/shards",
                  "--resolution", "128")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (home / "shards" / "manifest.json").is_file() and not (work / "~").exists()

    res = gpvton(work, home, "render", "--shards", "../home/shards", "--output", "rel_job", "--runner", "local",
                  "--random-weights", "--pairing", "paired", "--no-progress", "--set", "model.width=0.0625")
    assert res.returncode == 0, res.stderr[-3000:]
    job = work / "rel_job"
    meta = json.loads((job / "job.json").read_text())
    assert meta["config"]["shards"] == str(home / "shards") and meta["config"]["output"] == str(job)
    summary = json.loads((job / "summary.json").read_text())
    assert summary["pairs"] > 0 and summary["scored"] == summary["pairs"]

    # the report reads the shards named in job.json: absolute, so any directory works
    res = gpvton(other, home, "report", "--job", "../work/rel_job", "--fail-limit", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((job / "report" / "summary.json").read_text())
    assert report["thumbnails"]["made"]["person"] > 0 and report["pairs"] == summary["pairs"]

    res = gpvton(other, home, "status", f"file://{job}")
    assert res.returncode == 0 and f"job {job} " in res.stdout, res.stdout + res.stderr

    res = gpvton(home, home, "eval", "--job", "~/../work/rel_job", "--metrics", "ssim", "--out", "eval_here")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((home / "eval_here" / "metrics.json").read_text())["pairs"]["evaluated"] == summary["pairs"]

    # rerun from another directory with equivalent spellings: the same job, resumed
    res = gpvton(other, home, "render", "--shards", "~/shards", "--output", f"file://{job}", "--runner", "local",
                  "--random-weights", "--pairing", "paired", "--no-progress", "--set", "model.width=0.0625")
    assert res.returncode == 0, res.stderr[-3000:]
    again = json.loads((job / "summary.json").read_text())
    assert again["changes"]["unchanged"] == summary["pairs"] and again["pairs_rendered_this_run"] == 0
