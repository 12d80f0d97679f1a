"""``gpvton train``: config, the VGG-19 refusal, S3 output with resume, a 2-worker Ray Train run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipelines.cli import main
from pipelines.config import ConfigError
from pipelines.train import TrainConfig, check_config, run_training

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


def test_cli_run_with_perceptual_terms_and_config_file(training_shards, fake_vgg, tmp_path):
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
    assert (out / "warp.safetensors").is_file()


def test_s3_output_and_resume(training_shards, local_s3, tmp_path):
    s = local_s3.settings
    s3 = {"endpoint_url": s.endpoint_url, "access_key_id": s.access_key_id,
          "secret_access_key": s.secret_access_key, "region": s.region}
    url = local_s3.url("train-run")
    base = dict(shards=training_shards, output=url, resolution="128x96", width=0.0625, perceptual=False,
                threads=1, progress=False, batch_size=1, max_pairs=2, mask_epoch=0, s3=s3, checkpoint_every=1)
    run_training(TrainConfig(**base, steps=1))
    res = run_training(TrainConfig(**base, steps=2, resume=True))
    assert res["steps"] == 2
    from infra.storage import S3Settings, Storage

    st = Storage(url, S3Settings(**s3))
    assert st.read_json("checkpoints/latest.json")["step"] == 2
    rows = [json.loads(l) for l in st.read_bytes("log.jsonl").decode().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert st.exists("warp.safetensors") and st.exists("loss_curve.png") and st.exists("config.json")


def test_two_worker_ray_train(training_shards, ray_local, tmp_path):
    out = tmp_path / "ddp"
    res = run_training(TrainConfig(shards=training_shards, output=str(out), workers=2, steps=2, resolution="128x96",
                                   width=0.0625, perceptual=False, threads=1, progress=False, batch_size=1,
                                   mask_epoch=0, checkpoint_every=0))
    assert res.get("steps") == 2
    rows = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert (out / "warp.safetensors").is_file()


def test_trained_checkpoints_render_through_gpvton_render(synthetic_shards, tmp_path):
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
    renders = sorted(p.relative_to(job / "renders").as_posix() for p in (job / "renders").rglob("*.jpg"))
    # p0000 wears upper + lower, p0003 a dress: g0000 lower, g0002 upper, g0003 dress
    assert renders == ["dresses/p0003/g0003.jpg", "lower/p0000/g0000.jpg", "upper/p0000/g0002.jpg"], renders
    assert summary["counts"].get("error", 0) == 0, summary["counts"]
