"""`gpvton demo` on a fresh folder: catalogue → shards → render → report, random weights announced."""

from __future__ import annotations

import json

from pipelines.cli import main


def test_demo_small(tmp_path, capsys):
    out = tmp_path / "demo"
    # 128×96 with the in-process runner keeps the test short; the default (512, Beam, Ray) is the same code
    code = main(["demo", "--output", str(out), "--resolution", "128", "--runner", "local", "--no-progress",
                 "--garments", "1", "--persons", "1"])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    assert "RANDOMLY INITIALISED" in err and str(out / "job") in err
    job = out / "job"
    meta = json.loads((job / "job.json").read_text())
    assert meta["random_weights"] and meta["model_note"].startswith("RANDOM WEIGHTS")
    summary = json.loads((job / "summary.json").read_text())
    assert summary["pairs"] > 0 and summary["scored"] == summary["pairs"] and summary["counts"]["error"] == 0
    assert len(list((job / "renders").rglob("*.jpg"))) == summary["pairs"]
    assert len(list((job / "debug").rglob("*.warped.png"))) == summary["pairs"]
