"""`gpvton demo` on a fresh folder: catalogue → shards → render → report.

By default the demo renders with the small demo model shipped in ``pipelines/assets/demo/`` at the
resolution it was trained at, and says so; ``--random-weights`` uses randomly initialised networks
and says that instead.
"""

from __future__ import annotations

import json

import pytest

from pipelines.cli import main
from pipelines.demo import DEMO_ASSETS, shipped_model


def _check_job(job):
    summary = json.loads((job / "summary.json").read_text())
    assert summary["pairs"] > 0 and summary["scored"] == summary["pairs"] and summary["counts"]["error"] == 0
    assert len(list((job / "renders").rglob("*.jpg"))) == summary["pairs"]
    assert len(list((job / "debug").rglob("*.warped.png"))) == summary["pairs"]
    return summary


def test_demo_default_uses_shipped_model(tmp_path, capsys):
    model = shipped_model()
    assert model is not None, f"the demo model is missing from {DEMO_ASSETS}"
    assert model["warp_steps"] > 0 and model["generator_steps"] > 0
    sizes = {p.name: p.stat().st_size for p in DEMO_ASSETS.glob("*.safetensors")}
    assert sum(sizes.values()) < 3 * 2 ** 20, sizes  # committed to git: keep it small
    out = tmp_path / "demo"
    code = main(["demo", "--output", str(out), "--runner", "local", "--no-progress",
                 "--garments", "1", "--persons", "1"])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    assert "SMALL DEMO MODEL" in err and "RANDOMLY INITIALISED" not in err and "not a production model" in err
    job = out / "job"
    meta = json.loads((job / "job.json").read_text())
    assert not meta["random_weights"]
    assert meta["model_note"].startswith("small demo model trained on the synthetic catalogue")
    assert f"({model['warp_steps']} warp + {model['generator_steps']} generator steps" in meta["model_note"]
    assert "not a production model" in meta["model_note"]
    assert meta["shard_size"] == [model["height"], model["width_px"]]  # rendered at the trained resolution
    assert {k: meta["checkpoints"][k]["path"] for k in ("warp", "generator")} == \
        {"warp": model["warp"], "generator": model["generator"]}
    summary = _check_job(job)
    assert summary["model_note"] == meta["model_note"]


@pytest.mark.slow
def test_demo_random_weights_on_ray_with_its_report(tmp_path, capsys):
    out = tmp_path / "demo"
    # the demo's default runner (Ray), at 128×96 to keep it short; then the QA report it writes
    code = main(["demo", "--output", str(out), "--resolution", "128", "--no-progress",
                 "--garments", "1", "--persons", "1", "--random-weights"])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    assert "RANDOMLY INITIALISED" in err and str(out / "job") in err and "SMALL DEMO MODEL" not in err
    job = out / "job"
    meta = json.loads((job / "job.json").read_text())
    assert meta["random_weights"] and meta["model_note"].startswith("RANDOM WEIGHTS") and meta["runner"] == "ray"
    assert list((job / "logs").glob("worker-*.log")), "no Ray worker log: did the render run on Ray?"
    summary = _check_job(job)
    report = json.loads((job / "report" / "summary.json").read_text())
    assert f"{job / 'report' / 'index.html'} (exit " in err
    assert report["pairs"] == summary["pairs"] and report["counts"] == summary["counts"]
    assert report["success"] is (report["failed_fraction"] <= report["fail_limit"])
    html = (job / "report" / "index.html").read_text()
    assert "RANDOM WEIGHTS" in html and html.count(".jpg") >= summary["pairs"]


def test_shipped_demo_model_really_warps(tmp_path):
    """On paired photos it never saw (the demo's seed-0 catalogue; it was trained on seed 1), the demo
    warper puts every category's garment where the person wears it; the same network untrained does not."""
    import torch

    from gpvton_core.checkpoints import build_from_checkpoint
    from gpvton_core.training.batch import collate
    from gpvton_core.training.paired import garment_iou, warp_batch
    from gpvton_core.warp import LFGPWarp
    from pipelines.demo import build_shards
    from pipelines.synthetic.catalogue import make_catalogue
    from workers.train.data import decode_pair, list_pairs

    model = shipped_model()
    net, _ = build_from_checkpoint(model["warp"])
    size = (model["height"], model["width_px"])
    make_catalogue(tmp_path / "cat", n_garments=6, n_persons=6, height=size[0], width=size[1], seed=0)
    build_shards(tmp_path / "cat", tmp_path / "shards", size[0])
    pairs, grows = list_pairs(str(tmp_path / "shards"), net.variant)
    b = collate([decode_pair(p, grows, size, net.variant) for p in pairs])
    cats = b["category"]
    assert set(cats) == {"upper", "lower", "dresses"}
    trained = garment_iou(warp_batch(net.eval(), b)["label"], b)
    torch.manual_seed(0)
    untrained = garment_iou(warp_batch(LFGPWarp(net.variant, net.width).eval(), b)["label"], b)
    for cat in ("upper", "lower", "dresses"):
        iou = [v for v, c in zip(trained, cats) if c == cat]
        assert sum(iou) / len(iou) > 0.55 and min(iou) > 0.4, (cat, iou)  # measured: 0.47–0.89
    assert max(untrained) < 0.3, untrained
