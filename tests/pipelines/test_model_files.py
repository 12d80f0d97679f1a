"""Model files by URL: render and train read checkpoints from object storage (the S3 server) the way
the estimators read theirs — fetched once per worker into the sha256-keyed cache of infra.models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from infra.models import fetch_model, sha256_file
from infra.storage import S3Settings, Storage, filesystem
from pipelines.cli import main

DEMO = Path(__file__).resolve().parents[2] / "pipelines" / "assets" / "demo"


def _s3_flags(local_s3) -> list[str]:
    s = local_s3.settings
    return ["--set", f"s3.endpoint_url={s.endpoint_url}", "--set", f"s3.access_key_id={s.access_key_id}",
            "--set", f"s3.secret_access_key={s.secret_access_key}", "--set", f"s3.region={s.region}"]


def _upload(local_s3, src: Path, key: str) -> str:
    filesystem(local_s3.url(), local_s3.settings).put(str(src), f"{local_s3.bucket}/{key}")
    return local_s3.url(key)


def test_fetch_model_caches_by_sha256(local_s3, tmp_path, monkeypatch):
    """One download per machine; the cache is keyed by the bytes' sha256; an overwritten object is fetched again."""
    monkeypatch.setenv("GPVTON_MODEL_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"weights-1" * 1000)
    b.write_bytes(b"weights-2" * 1000)
    url = _upload(local_s3, a, "models/m.bin")
    first = fetch_model(url, local_s3.settings)
    assert first.sha256 == sha256_file(a) and Path(first.path) == tmp_path / "cache" / first.sha256 / "m.bin"
    assert fetch_model(url, local_s3.settings) == first
    _upload(local_s3, b, "models/m.bin")
    second = fetch_model(url, local_s3.settings)
    assert second.sha256 == sha256_file(b) and Path(second.path).read_bytes() == b.read_bytes()
    with pytest.raises(FileNotFoundError, match="models/none.bin"):
        fetch_model(local_s3.url("models/none.bin"), local_s3.settings)


def test_render_from_s3_checkpoints(synthetic_shards, local_s3, tmp_path, monkeypatch, capsys):
    """`gpvton render --warp-checkpoint s3://… --generator-checkpoint s3://…` loads the demo model
    from the S3 server (the driver's checks and the workers alike) and records the files' sha256."""
    monkeypatch.setenv("GPVTON_MODEL_CACHE", str(tmp_path / "cache"))
    shards = synthetic_shards(n_garments=9, n_persons=4, seed=0)
    warp = _upload(local_s3, DEMO / "warp.safetensors", "models/demo/warp.safetensors")
    gen = _upload(local_s3, DEMO / "generator.safetensors", "models/demo/generator.safetensors")
    job = tmp_path / "job"
    rc = main(["render", "--shards", str(shards), "--output", str(job), "--runner", "local", "--no-progress",
               "--warp-checkpoint", warp, "--generator-checkpoint", gen, *_s3_flags(local_s3),
               "--set", "garments.include=[g0002, g0007]", "--set", "categories=[upper]"])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads((job / "job.json").read_text())
    assert meta["checkpoints"]["warp"] == {"path": warp, "sha256": sha256_file(DEMO / "warp.safetensors")}
    assert meta["checkpoints"]["generator"]["sha256"] == sha256_file(DEMO / "generator.safetensors")
    assert meta["checkpoint_meta"]["warp"]["kind"] == "warp_dresscode" and not meta["random_weights"]
    summary = json.loads((job / "summary.json").read_text())
    assert summary["counts"].get("error", 0) == 0 and summary["pairs"] > 0
    assert len(list((job / "renders").rglob("*.jpg"))) == summary["pairs"]
