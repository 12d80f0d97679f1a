"""``gpvton train``: config, user errors (exit 2, one line), and runs: the VGG-19 terms with a
config file, S3 output with resume, the parser with its ONNX export, train → render.

Every job goes through Ray Train (one worker included). That start-up is proven once per stage
family: the parser here (one worker), warp in test_ray_cluster.py (two workers on two nodes). The
other runs go through the whole CLI with the per-worker loop run in this process (``in_process``):
what they prove is about the loop and the run's files, not Ray's start-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gpvton_core.checkpoints import safetensors_meta as read_meta
from pipelines.cli import main
from pipelines.config import ConfigError
from pipelines.train import TrainConfig, check_config

SMALL = ["--resolution", "128x96", "--width", "0.0625", "--set", "threads=1", "--set", "progress=false",
         "--set", "batch_size=1", "--set", "max_pairs=2"]


@pytest.fixture(scope="session")
def fake_vgg(tmp_path_factory) -> Path:
    """A file with torchvision's VGG-19 key names and shapes (random values; the real file is 548 MB)."""
    from gpvton_core.training.vgg import VGG19Features

    torch.manual_seed(0)
    path = tmp_path_factory.getbasetemp() / "vgg19-random.pth"
    torch.save({k: torch.randn_like(v) * 0.01 for k, v in VGG19Features().state_dict().items()}, path)
    return path


def test_refuses_without_vgg_weights(training_shards, tmp_path, capsys):
    rc = main(["train", "warp", "--shards", training_shards, "--output", str(tmp_path / "o"), "--steps", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--vgg-weights" in err and "--no-perceptual" in err
    assert not (tmp_path / "o").exists()
    rc = main(["train", "warp", "--shards", training_shards, "--output", str(tmp_path / "o"), "--vgg-weights",
               str(tmp_path / "missing.pth")])
    assert rc == 2 and "not found" in capsys.readouterr().err


def test_config_validation(tmp_path):
    with pytest.raises(ConfigError):
        from pipelines.config import load_config

        load_config(TrainConfig, None, ["resolution=100x90"], base={"shards": "x", "output": "y"})
    cfg = TrainConfig(shards="x", output="y", stage="generator", perceptual=False)
    with pytest.raises(ConfigError, match="warp-checkpoint"):
        check_config(cfg)
    assert TrainConfig(shards="x", output="y", resolution="256x192").size == (256, 192)


@pytest.mark.slow
def test_cli_run_with_perceptual_terms_and_config_file(training_shards, fake_vgg, in_process, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("mask_epoch: 0\nlr: 0.001\ncheckpoint_every: 0\n")
    out = tmp_path / "run"
    rc = main(["train", "warp", "--config", str(cfg), "--shards", training_shards, "--output", str(out),
               "--steps", "2", "--vgg-weights", str(fake_vgg), *SMALL])
    assert rc == 0
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["mask_epoch"] == 0 and resolved["perceptual"] is True and resolved["width"] == 0.0625
    rows = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["vgg"] > 0


@pytest.mark.slow
def test_s3_output_and_resume_is_step_exact(training_shards, local_s3, in_process, tmp_path, monkeypatch):
    """`gpvton train --resume` of a run on s3:// continues at its checkpoint: the resumed run's weights
    and losses equal those of an uninterrupted run (a resume that restarted at step 0 would differ).
    Checkpoints are the core's one safetensors format, read back through the model-file cache."""
    from gpvton_core.checkpoints import build_from_checkpoint, load_safetensors_bytes
    from infra.models import fetch_model
    from infra.storage import Storage

    monkeypatch.setenv("GPVTON_MODEL_CACHE", str(tmp_path / "cache"))
    s = local_s3.settings
    small = [*SMALL, "--no-perceptual", "--set", "mask_epoch=0", "--set", "checkpoint_every=1",
             "--set", f"s3.endpoint_url={s.endpoint_url}", "--set", f"s3.access_key_id={s.access_key_id}",
             "--set", f"s3.secret_access_key={s.secret_access_key}", "--set", f"s3.region={s.region}"]
    whole, cut = local_s3.url("train/whole"), local_s3.url("train/cut")
    assert main(["train", "warp", "--shards", training_shards, "--output", whole, "--steps", "2", *small]) == 0
    assert main(["train", "warp", "--shards", training_shards, "--output", cut, "--steps", "1", *small]) == 0
    st = {u: Storage(u, s) for u in (whole, cut)}
    before = json.loads(st[cut].read_bytes("log.jsonl").decode().splitlines()[0])
    assert main(["train", "warp", "--shards", training_shards, "--output", cut, "--steps", "2", "--resume",
                 *small]) == 0
    rows = {u: [json.loads(l) for l in st[u].read_bytes("log.jsonl").decode().splitlines()] for u in st}
    assert [r["step"] for r in rows[cut]] == [1, 2] and st[cut].read_json("checkpoints/latest.json")["step"] == 2
    assert rows[cut][0] == before             # step 1 was not run again (its timing would differ) ...
    assert [r["total"] for r in rows[cut]] == pytest.approx([r["total"] for r in rows[whole]], rel=1e-5)
    a, ma = load_safetensors_bytes(st[whole].read_bytes("warp.safetensors"))
    b, mb = load_safetensors_bytes(st[cut].read_bytes("warp.safetensors"))
    assert ma["kind"] == mb["kind"] == "warp_vitonhd" and ma["step"] == mb["step"] == 2
    for k in a:                               # ... and step 2 continued exactly where step 1 stopped
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert st[cut].exists("loss_curve.png") and st[cut].exists("config.json")
    # render's model path reads the same file from s3:// with the same reader
    _, meta = build_from_checkpoint(fetch_model(f"{cut}/warp.safetensors", s).path)
    assert meta["kind"] == "warp_vitonhd" and meta["width"] == 0.0625


@pytest.mark.slow
def test_trained_checkpoints_render_through_gpvton_render(synthetic_shards, in_process, tmp_path):
    """`gpvton train warp` → `gpvton train generator` → `gpvton render`, Dress Code variant, every category."""
    shards = str(synthetic_shards(n_garments=9, n_persons=4, seed=0))
    small = [*SMALL, "--set", "variant=dresscode", "--set", "mask_epoch=0", "--no-perceptual"]
    warp, gen, job = tmp_path / "warp", tmp_path / "gen", tmp_path / "job"
    assert main(["train", "warp", "--shards", shards, "--output", str(warp), "--steps", "2", *small]) == 0
    assert main(["train", "generator", "--shards", shards, "--output", str(gen), "--steps", "2",
                 "--warp-checkpoint", str(warp / "warp.safetensors"), *small]) == 0
    assert main(["render", "--shards", shards, "--output", str(job), "--runner", "local", "--no-progress",
                 "--warp-checkpoint", str(warp / "warp.safetensors"),
                 "--generator-checkpoint", str(gen / "generator.safetensors"),
                 "--set", "garments.include=[g0000, g0002, g0003]", "--set", "persons.include=[p0000, p0003]"]) == 0
    meta = json.loads((job / "job.json").read_text())
    assert meta["checkpoint_meta"]["warp"]["kind"] == "warp_dresscode"
    assert not meta["random_weights"]
    summary = json.loads((job / "summary.json").read_text())
    renders = sorted(p.relative_to(job / "renders").as_posix().rsplit("-", 1)[0]   # without the content version
                     for p in (job / "renders").rglob("*.jpg"))
    # p0000 wears upper + lower, p0003 a dress: g0000 lower, g0002 upper, g0003 dress
    assert renders == ["dresses/p0003/g0003", "lower/p0000/g0000", "upper/p0000/g0002"], renders
    assert summary["counts"].get("error", 0) == 0, summary["counts"]


def _one_line_error(capsys, argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, (rc, err)
    assert err and "\n" not in err, err
    return err


def test_user_errors_exit_2_with_one_line(training_shards, tmp_path, capsys):
    """Missing / empty shards, missing checkpoint files and bad flags stop before Ray starts."""
    out = str(tmp_path / "run")
    base = ["train", "parser", "--output", out]
    assert "no condition shards" in _one_line_error(capsys, [*base, "--shards", str(tmp_path / "nowhere")])
    (tmp_path / "empty").mkdir()
    assert "no condition shards" in _one_line_error(capsys, [*base, "--shards", str(tmp_path / "empty")])
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "nopersons" / "persons").mkdir(parents=True)
    pq.write_table(pa.table({"person_id": pa.array([], pa.string()), "worn_garment_id": pa.array([], pa.string())}),
                   tmp_path / "nopersons" / "persons" / "part-00000.parquet")
    assert "no persons" in _one_line_error(capsys, [*base, "--shards", str(tmp_path / "nopersons")])
    assert "--shards is required" in _one_line_error(capsys, base)
    err = _one_line_error(capsys, ["train", "generator", "--shards", training_shards, "--output", out,
                                   "--no-perceptual", "--warp-checkpoint", str(tmp_path / "warp.safetensors")])
    assert "warp checkpoint not found" in err
    ok = [*base, "--shards", training_shards]
    assert "workers" in _one_line_error(capsys, [*ok, "--workers", "0"])
    assert "resolution" in _one_line_error(capsys, [*ok, "--resolution", "100x90"])
    assert "--bogus" in _one_line_error(capsys, [*ok, "--bogus"])
    assert "atr" in _one_line_error(capsys, [*ok, "--labels", "atr"])
    assert "steps" in _one_line_error(capsys, [*ok, "--steps", "many"])
    # --resume: checkpoint files named by latest.json must be there, and of the same stage
    ck = Path(out) / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "latest.json").write_text(json.dumps({"step": 2, "dir": "checkpoints/step-00000002"}))
    assert "checkpoint file missing" in _one_line_error(capsys, [*ok, "--resume"])
    (Path(out) / "config.json").write_text(json.dumps({"stage": "warp"}))
    assert "holds a warp run" in _one_line_error(capsys, [*ok, "--resume"])
    assert not (Path(out) / "parser.safetensors").exists()


@pytest.mark.slow
def test_parser_through_ray_train(training_shards, ray_local, tmp_path):
    """`gpvton train parser` (one Ray Train worker): the run, its ONNX export and its contract,
    which HumanParser picks up from beside the model."""
    import numpy as np

    from pipelines.preprocess.estimators.parser import HumanParser, ParserConfig

    out = tmp_path / "parser"
    assert main(["train", "parser", "--shards", training_shards, "--output", str(out), "--steps", "3",
                 "--resolution", "128x96", "--width", "0.125", "--set", "threads=1", "--set", "progress=false",
                 "--set", "checkpoint_every=2"]) == 0
    meta = read_meta((out / "parser.safetensors").read_bytes())
    assert meta["ray_train"] is True and meta["kind"] == "parser" and meta["step"] == 3
    assert json.loads((out / "checkpoints/latest.json").read_text())["step"] == 3
    assert [r["step"] for r in (json.loads(l) for l in (out / "log.jsonl").read_text().splitlines())] == [1, 2, 3]
    assert json.loads((out / "config.json").read_text())["stage"] == "parser"
    parser = HumanParser(ParserConfig(model=str(out / "parser.onnx")))
    assert parser.scheme == "gp29" and parser.input_size == (128, 96)
    labels = parser.parse(np.full((256, 192, 3), 128, np.uint8))
    assert labels.shape == (256, 192) and labels.max() < 29
