"""Fixed shapes (compile's precondition) and the asynchronous host copies change no output:
one unit through UnitProcessor with padding off and on, padded pairs never reach images, rows or
scores, and the host copy is the identity on the CPU. (A compiled unit runs in ``bench/gpu_check.py``
without ``--eager-only``: a cold inductor compile takes about 3 minutes on 2 cores, too long for CI.)"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from gpvton_core.inference import TryOnPipeline, person_bucket
from gpvton_core.transfer import copy_to_host
from workers.render.images import ImageWriter
from workers.render.settings import WorkerSettings
from workers.render.unit import UnitProcessor


@pytest.fixture(scope="module")
def shards(synthetic_shards) -> Path:
    return synthetic_shards(n_garments=9, n_persons=4, seed=0)


def make_unit(shards: Path, n_persons: int, n_garments: int, unit_id: int = 0) -> dict:
    """A unit of the upper category (person-major pairs, as the planner orders them)."""
    persons = pq.read_table(shards / "persons").to_pylist()
    garments = pq.read_table(shards / "garments").to_pylist()
    ps = sorted(r["person_id"] for r in persons if "upper" in r["categories"])[:n_persons]
    gs = sorted(r["garment_id"] for r in garments if r["category"] == "upper")[:n_garments]
    assert len(ps) == n_persons and len(gs) == n_garments, "the synthetic catalogue is smaller than the test needs"
    part = "persons/part-00000.parquet", "garments/part-00000.parquet"
    return {"unit_id": unit_id, "category": "upper", "person_ids": ps, "garment_ids": gs, "worn": {},
            "pairs": [{"person_id": p, "garment_id": g, "version": "v1"} for p in ps for g in gs],
            "files": {"persons": {p: part[0] for p in ps}, "garments": {g: part[1] for g in gs}}}


def settings(shards: Path, job: Path, **kw) -> WorkerSettings:
    base = dict(job_root=str(job), shards_root=str(shards), variant="vitonhd", shard_size=(128, 96),
                batch_size=4, image_format="png", device="cpu", precision="fp32", width=0.0625, seed=0,
                num_threads=1)
    return WorkerSettings(**{**base, **kw})


def run_unit(s: WorkerSettings, unit: dict, monkeypatch) -> tuple[dict, dict, list[int], dict]:
    """(summary, (person, garment) → try-on tensor, pairs per network call, rows by pair)."""
    images: dict = {}
    calls: list[int] = []
    write, chunk = ImageWriter.write, TryOnPipeline._run_chunk

    def spy_write(self, key, category, p, g, tryon, *a, **k):
        images[(p, g)] = tryon.clone()
        return write(self, key, category, p, g, tryon, *a, **k)

    def spy_chunk(self, gb, pb, gi, pi, compact=False):
        calls.append(int(gi.numel()))
        return chunk(self, gb, pb, gi, pi, compact)

    monkeypatch.setattr(ImageWriter, "write", spy_write)
    monkeypatch.setattr(TryOnPipeline, "_run_chunk", spy_chunk)
    proc = UnitProcessor(s)
    summary = proc.process_unit(unit)
    rows = pq.read_table(io.BytesIO((Path(s.job_root) / "scores" / "unit-00000.parquet").read_bytes())).to_pylist()
    monkeypatch.undo()
    return summary, images, calls, {(r["person_id"], r["garment_id"]): r for r in rows}


def test_person_bucket_is_one_or_a_power_of_two():
    assert [person_bucket(n, 8) for n in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    assert person_bucket(5, 6) == 6


def test_padded_unit_gives_the_unpadded_images(shards, tmp_path, monkeypatch):
    """3 persons × 3 garments at batch 4: batches mix persons and the last one holds one pair."""
    unit = make_unit(shards, 3, 3)
    pairs = [(p["person_id"], p["garment_id"]) for p in unit["pairs"]]
    plain = run_unit(settings(shards, tmp_path / "plain"), unit, monkeypatch)
    padded = run_unit(settings(shards, tmp_path / "padded", fixed_shapes=True), unit, monkeypatch)
    assert plain[2] == [4, 4, 1]            # the plain path follows the unit's shape
    assert padded[2] == [4, 4, 4]           # every network call at exactly batch_size pairs
    assert set(plain[1]) == set(padded[1]) == set(pairs)
    diff = max(float((plain[1][k] - padded[1][k]).abs().max()) for k in pairs)
    assert diff <= 1e-5, diff
    for k in pairs:   # the same rows and scores (the parsing argmax may flip a tie: a little slack)
        a, b = plain[3][k], padded[3][k]
        assert a["flag"] == b["flag"] and a["output_key"] == b["output_key"]
        for name in ("warp_miou", "preserve_ssim"):
            assert abs(a[name] - b[name]) <= 1e-3, (k, name, a[name], b[name])
    assert padded[0]["compile"]["fixed_shapes"] is True and padded[0]["compile"]["mode"] == "off"


def test_padded_pairs_reach_no_image_row_or_score(shards, tmp_path, monkeypatch):
    """One pair at batch 4: three padded copies are computed and dropped."""
    unit = make_unit(shards, 1, 1)
    job = tmp_path / "job"
    summary, images, calls, rows = run_unit(settings(shards, job, fixed_shapes=True), unit, monkeypatch)
    assert calls == [4]
    assert len(images) == 1 and len(rows) == 1 and summary["pairs"] == 1
    assert len(list((job / "renders").rglob("*.png"))) == 1
    assert all(r["flag"] != "error" and r["warp_miou"] is not None for r in rows.values())


def test_host_copy_is_the_identity_on_the_cpu():
    t = torch.randn(2, 3, 4, 4)
    hc = copy_to_host({"a": t, "none": None})
    assert hc.ready()
    out = hc.wait()
    assert out["a"] is t and out["none"] is None


def test_compile_decision(tmp_path):
    """auto: on for CUDA only when the run renders enough pairs per actor; never on the CPU."""
    from pipelines.render import RenderConfig
    from pipelines.render.runtime import resolve_compile

    cfg = RenderConfig(shards=str(tmp_path), output=str(tmp_path / "job"), compile_min_pairs=1000)
    on = resolve_compile(cfg, "cuda", 1000, "pairs to render")
    assert (on["resolved"], on["mode"], on["fixed_shapes"]) == ("on", "reduce-overhead", True)
    assert on["cache_dir"] and not on["cache_dir"].startswith("~")
    assert resolve_compile(cfg, "cuda", 999, "pairs to render")["resolved"] == "off"
    assert resolve_compile(cfg, "cpu", 10 ** 9, "pairs to render")["resolved"] == "off"
    forced = RenderConfig(shards=str(tmp_path), output=str(tmp_path / "job"), compile="on")
    assert resolve_compile(forced, "cpu", 1, "x")["mode"] == "default"     # the CPU: inductor's default mode


def test_compile_on_off_read_as_yaml_booleans(tmp_path):
    from pipelines.render import RenderConfig

    for raw, want in ((False, "off"), (True, "on"), ("auto", "auto")):
        assert RenderConfig(shards=str(tmp_path), output=str(tmp_path), compile=raw).compile == want
