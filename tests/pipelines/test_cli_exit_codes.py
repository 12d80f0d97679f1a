"""Exit codes 0 / 1 / 2 of every command; user errors are one line without a traceback, ``-v`` adds it.

render's 0/1/2 on real jobs are in test_render_job.py; train's 0 in test_train.py.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpvton_synthetic_job import Pair, write_job  # noqa: E402

from infra import failpoints  # noqa: E402
from pipelines.cli import main  # noqa: E402


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("gpvton ") and "error: " in lines[0], err
    for n in needles:
        assert n in lines[0], (n, err)
    return lines[0]


@pytest.fixture
def ok_job(tmp_path) -> Path:
    pairs = [Pair(f"P{i}", f"G{i}", "upper", "ok", {"warp_miou": 0.9, "ssim": 0.9}, paired=True) for i in range(4)]
    write_job(str(tmp_path / "job"), str(tmp_path / "shards"), pairs, unit_size=2)
    return tmp_path / "job"


@pytest.fixture
def bad_configs(tmp_path) -> dict[str, Path]:
    garbled = tmp_path / "garbled.yaml"
    garbled.write_text("shards: [unclosed\n")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    return {"garbled": garbled, "binary": binary, "folder": folder}


@pytest.mark.parametrize("command", [["render"], ["preprocess"], ["train", "warp"], ["eval", "--job", "j"],
                                     ["report", "--job", "j"]])
def test_unreadable_config_is_exit_2_for_every_command(command, bad_configs, capsys):
    for kind, path in bad_configs.items():
        assert main([*command, "--config", str(path)]) == 2, kind
        _one_line_error(capsys, str(path))


def test_verbose_adds_the_traceback(tmp_path, capsys):
    assert main(["render", "--shards", str(tmp_path / "none"), "--output", str(tmp_path / "j"),
                 "--random-weights"]) == 2
    _one_line_error(capsys, "no persons shards", "-v for the traceback")
    assert main(["render", "--shards", str(tmp_path / "none"), "--output", str(tmp_path / "j"),
                 "--random-weights", "-v"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "UserError" in err and err.rstrip().splitlines()[-1].startswith("gpvton render: error")


def test_render_user_errors(tmp_path, capsys, synthetic_shards):
    shards = synthetic_shards(n_garments=9, n_persons=4, seed=0)
    out = str(tmp_path / "j")
    assert main(["render", "--shards", str(shards), "--output", out, "--warp-checkpoint", str(tmp_path / "w.pth"),
                 "--generator-checkpoint", str(tmp_path / "g.pth")]) == 2
    _one_line_error(capsys, "warp checkpoint not found", str(tmp_path / "w.pth"))
    assert main(["render", "--shards", str(shards), "--output", out]) == 2
    _one_line_error(capsys, "--warp-checkpoint and --generator-checkpoint", "--random-weights")
    assert not Path(out).exists()


def test_render_lost_unit_is_exit_1(tmp_path, capsys, monkeypatch, synthetic_shards):
    shards = synthetic_shards(n_garments=9, n_persons=4, seed=0)
    monkeypatch.setenv(failpoints.env("raise_unit"), "0")
    assert main(["render", "--shards", str(shards), "--output", str(tmp_path / "j"), "--random-weights",
                 "--runner", "local", "--no-progress", "--set", "categories=[upper]",
                 "--set", "garments.include=[g0002]", "--set", "persons.include=[p0000]",
                 "--set", "model.width=0.0625"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "missing 1 of 1 pairs" in last and "exit 1" in last and "units lost: gpvton status" in last


def test_status_exit_codes(ok_job, tmp_path, capsys):
    assert main(["status", str(ok_job)]) == 0
    out = capsys.readouterr().out
    assert "units: 2 planned, 2 done, 0 not done" in out and "ok 4, warn 0, fail 0, error 0, missing 0" in out
    # a run in progress (or stopped): its work area is not in the index yet, one unit still to do
    state = json.loads((ok_job / "plan" / "run.json").read_text())
    (ok_job / "plan" / "run.json").write_text(json.dumps(dict(state, run_id="20991231T000000Z-next")))
    (ok_job / "scores" / "unit-00001.parquet.done").unlink()
    assert main(["status", str(ok_job)]) == 1
    out = capsys.readouterr().out
    assert "in progress or stopped" in out and "1 not done (1)" in out
    assert main(["status", str(tmp_path / "nothing")]) == 2
    _one_line_error(capsys, "no render job at", "job.json not found")


def test_status_lists_errors_and_logs(tmp_path, capsys):
    pairs = [Pair("P0", "G0", "upper", "ok", {"warp_miou": 0.9}),
             Pair("P1", "G1", "upper", "error", {}, error="RuntimeError: CUDA out of memory\n  at line 3"),
             Pair("P2", "G2", "upper", "error", {}, error="RuntimeError: CUDA out of memory\n  at line 9")]
    info = write_job(str(tmp_path / "job"), str(tmp_path / "shards"), pairs)
    info["job"].write_bytes("logs/worker-00-p42.log", b"".join(f"line {i}\n".encode() for i in range(20)))
    assert main(["status", str(tmp_path / "job"), "--log-lines", "3"]) == 1      # 2 of 3 unrendered
    out = capsys.readouterr().out
    assert "2 × RuntimeError: CUDA out of memory" in out and "at line" not in out
    assert "logs/worker-00-p42.log:" in out and "line 19" in out and "line 16" not in out


def test_report_exit_codes(tmp_path, capsys):
    pairs = [Pair(f"P{i}", f"G{i}", "upper", "ok" if i else "fail", {"warp_miou": 0.9 if i else 0.1})
             for i in range(4)]
    write_job(str(tmp_path / "job"), str(tmp_path / "shards"), pairs)
    assert main(["report", "--job", str(tmp_path / "job"), "--fail-limit", "0.25"]) == 0
    assert main(["report", "--job", str(tmp_path / "job")]) == 1                  # 1 of 4 > 0.05
    assert "FAILED, exit 1" in capsys.readouterr().out
    assert main(["report", "--job", str(tmp_path / "nothing")]) == 2
    _one_line_error(capsys, "job.json not found")


def test_eval_exit_codes(ok_job, tmp_path, capsys):
    assert main(["eval", "--job", str(ok_job), "--metrics", "ssim"]) == 0
    assert main(["eval", "--job", str(ok_job), "--metrics", "fid"]) == 2
    _one_line_error(capsys, "--inception-weights")
    assert main(["eval", "--job", str(tmp_path / "nothing"), "--metrics", "ssim"]) == 2
    _one_line_error(capsys, "job.json not found")
    shutil.rmtree(ok_job / "renders")                                           # the images are gone
    assert main(["eval", "--job", str(ok_job), "--metrics", "ssim"]) == 1
    assert "no pair could be evaluated" in capsys.readouterr().err


def test_train_user_errors_exit_2(tmp_path, capsys):
    assert main(["train", "warp", "--shards", str(tmp_path / "none"), "--output", str(tmp_path / "run"),
                 "--no-perceptual", "--steps", "1"]) == 2
    _one_line_error(capsys, str(tmp_path / "none"))
    assert main(["train", "warp", "--output", str(tmp_path / "run")]) == 2


def test_preprocess_exit_codes_2(tmp_path, capsys):
    assert main(["preprocess", "--input", f"nosuchkind:{tmp_path}", "--output", str(tmp_path / "s")]) == 2
    _one_line_error(capsys, "unknown input kind 'nosuchkind'")
    assert main(["preprocess", "--input", f"vitonhd:{tmp_path / 'none'}", "--output", str(tmp_path / "s")]) == 2
    _one_line_error(capsys, str(tmp_path / "none"))
    assert main(["preprocess", "--output", str(tmp_path / "s")]) == 2
    _one_line_error(capsys, "no inputs")


@pytest.mark.slow
def test_preprocess_exit_codes_0_and_1(tmp_path, capsys):
    from pipelines.synthetic.catalogue import make_catalogue

    cat = tmp_path / "cat"
    make_catalogue(cat, n_garments=1, n_persons=1, height=128, width=96, seed=0)
    assert main(["preprocess", "--input", f"manifest:{cat}", "--output", str(tmp_path / "ok"),
                 "--resolution", "128"]) == 0
    for png in cat.rglob("*.png"):                                              # every image unreadable
        png.write_bytes(b"not an image")
    assert main(["preprocess", "--input", f"manifest:{cat}", "--output", str(tmp_path / "bad"),
                 "--resolution", "128"]) == 1
    assert "nothing could be processed" in capsys.readouterr().err


def test_demo_user_errors_exit_2(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "d"), "--random-weights", "--warp-checkpoint", "w"]) == 2
    _one_line_error(capsys, "exclude each other")
    assert main(["demo", "--output", str(tmp_path / "d"), "--warp-checkpoint", "w"]) == 2
    _one_line_error(capsys, "--generator-checkpoint is missing")


@pytest.mark.slow
def test_demo_exit_1_when_render_loses_units(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(failpoints.env("raise_unit"), "0")
    assert main(["demo", "--output", str(tmp_path / "d"), "--resolution", "128", "--runner", "local",
                 "--no-progress", "--garments", "1", "--persons", "1", "--random-weights"]) == 1
