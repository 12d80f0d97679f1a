"""The training loop, in-process: losses fall (synthetic and VITON-HD shards), exact resume,
the generator stage on a trained warper's output, checkpoints that the render path loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gpvton_core.checkpoints import safetensors_meta as read_meta
from gpvton_core.rows import decode_labels, decode_rgb
from workers.train.data import list_pairs, list_persons
from workers.train.per_worker import train_loop_per_worker

BASE = dict(variant="vitonhd", height=128, width_px=96, model_width=0.0625, batch_size=1,
            lr=2e-3, lr_d=5e-5, beta1=0.5, niter=10 ** 6, niter_decay=0, mask_epoch=0, dgt=True,
            dynamic_mask=True, gan=True, perceptual=False, checkpoint_every=0, resume=False, seed=0,
            threads=1, progress=False, s3=None)


def _cfg(shards: str, out: Path, **kw) -> dict:
    return dict(BASE, stage="warp", shards=shards, output=str(out), **kw)


def _rows(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]


def _falls(rows: list[dict], key: str = "total") -> None:
    first = sum(r[key] for r in rows[:2]) / 2
    last = sum(r[key] for r in rows[-2:]) / 2
    assert last < 0.95 * first, (first, last, [round(r[key], 3) for r in rows])


def test_pairs_from_shards(training_shards):
    pairs, grows = list_pairs(training_shards, "vitonhd")
    assert len(pairs) == 3 and all(grows[p["garment_id"]]["category"] == "upper" for p in pairs)
    pairs_dc, _ = list_pairs(training_shards, "dresscode")
    assert len(pairs_dc) == 9


@pytest.fixture(scope="session")
def warp_run(training_shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.getbasetemp() / "warp-run"
    train_loop_per_worker(_cfg(training_shards, out, steps=8, max_pairs=1))
    return out


def test_warp_losses_fall_on_synthetic(warp_run):
    rows = _rows(warp_run)
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert all(r["dgt"] == 1 for r in rows)
    _falls(rows)
    assert (warp_run / "log.csv").read_text().startswith("step,epoch,lr,dgt,total,")
    assert (warp_run / "loss_curve.png").stat().st_size > 1000
    meta = read_meta((warp_run / "warp.safetensors").read_bytes())
    assert meta["kind"] == "warp_vitonhd" and meta["stage"] == "warp" and meta["width"] == 0.0625
    assert meta["step"] == 8
    from gpvton_core.checkpoints import build_from_checkpoint

    net, header = build_from_checkpoint(str(warp_run / "warp.safetensors"))
    assert header["kind"] == "warp_vitonhd" and header["width"] == 0.0625


def test_checkpoint_loads_in_render_models(warp_run):
    from gpvton_core.checkpoints import load_safetensors

    sd, meta = load_safetensors(warp_run / "warp.safetensors")
    from gpvton_core.warp import LFGPWarp

    net = LFGPWarp("vitonhd", float(meta["width"]))
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert not missing and not unexpected


def test_resume_is_step_exact(training_shards, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    kw = dict(steps=4, max_pairs=2, checkpoint_every=2)
    train_loop_per_worker(_cfg(training_shards, full, **kw))
    train_loop_per_worker(_cfg(training_shards, part, **dict(kw, steps=2)))         # "interrupted" at 2
    assert json.loads((part / "checkpoints/latest.json").read_text())["step"] == 2
    train_loop_per_worker(_cfg(training_shards, part, **dict(kw, resume=True)))     # resumes 3..4
    a, b = _rows(full), _rows(part)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(a) == strip(b)
    from safetensors.torch import load_file

    wa, wb = load_file(full / "warp.safetensors"), load_file(part / "warp.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_generator_stage_losses_fall(training_shards, warp_run, tmp_path):
    out = tmp_path / "gen"
    train_loop_per_worker(dict(BASE, stage="generator", shards=training_shards, output=str(out), steps=6,
                               max_pairs=1, warp_checkpoint=str(warp_run / "warp.safetensors")))
    rows = _rows(out)
    _falls(rows, "l1_rendered")
    sd_meta = read_meta((out / "generator.safetensors").read_bytes())
    assert sd_meta["kind"] == "generator" and sd_meta["stage"] == "generator"
    from gpvton_core.checkpoints import load_safetensors
    from gpvton_core.generator import TryOnGenerator

    sd, meta = load_safetensors(out / "generator.safetensors")
    missing, unexpected = TryOnGenerator(float(meta["width"])).load_state_dict(sd, strict=False)
    assert not missing and not unexpected


@pytest.fixture(scope="module")
def vitonhd_shards(vitonhd_shards) -> str:
    """The session's VITON-HD shards (tests/conftest.py), as the URL string the loop takes."""
    return str(vitonhd_shards)


def test_warp_losses_fall_on_vitonhd(vitonhd_shards, tmp_path):
    pairs, _ = list_pairs(vitonhd_shards, "vitonhd")
    assert pairs, "the VITON-HD sample shards give paired training data"
    assert any(p["person"]["pc_ratio"] is not None for p in pairs)
    out = tmp_path / "vh"
    train_loop_per_worker(_cfg(vitonhd_shards, out, steps=6, max_pairs=1))
    _falls(_rows(out))


@pytest.fixture(scope="module")
def dresscode_shards(dresscode_shards) -> str:
    """The session's Dress Code shards (tests/conftest.py), as the URL string the loop takes."""
    return str(dresscode_shards)


def test_dresscode_warp_and_generator_on_dresscode_samples(dresscode_shards, tmp_path):
    """The Dress Code variant on the real Dress Code samples (lower body and dresses): the warp's
    losses fall (with DGT), then the generator trains on that warper's output."""
    pairs, grows = list_pairs(dresscode_shards, "dresscode")
    cats = {grows[p["garment_id"]]["category"] for p in pairs}
    assert {"lower", "dresses"} <= cats, cats
    lower = next(i for i, p in enumerate(pairs) if grows[p["garment_id"]]["category"] == "lower")
    warp = tmp_path / "warp"
    train_loop_per_worker(_cfg(dresscode_shards, warp, variant="dresscode", steps=6, batch_size=2,
                               max_pairs=max(2, lower + 1)))
    rows = _rows(warp)
    assert all(r["dgt"] == 1 for r in rows)
    _falls(rows)
    assert read_meta((warp / "warp.safetensors").read_bytes())["variant"] == "dresscode"
    gen = tmp_path / "gen"
    train_loop_per_worker(dict(BASE, stage="generator", variant="dresscode", shards=dresscode_shards,
                               output=str(gen), steps=6, max_pairs=1,
                               warp_checkpoint=str(warp / "warp.safetensors")))
    _falls(_rows(gen), "l1_rendered")


# ---- the parser ------------------------------------------------------------------------------------
PARSER = dict(stage="parser", height=128, width_px=96, model_width=0.25, batch_size=2, lr=3e-3, beta1=0.9,
              niter=10 ** 6, niter_decay=0, checkpoint_every=0, resume=False, seed=0, threads=1,
              progress=False, s3=None, labels="gp29")


@pytest.fixture(scope="module")
def parser_run(vitonhd_shards, tmp_path_factory) -> Path:
    """80 steps on the 7 VITON-HD sample photos and their 29-label parsings (LIP-derived)."""
    out = tmp_path_factory.getbasetemp() / "parser-run"
    train_loop_per_worker(dict(PARSER, shards=vitonhd_shards, output=str(out), steps=80))
    return out


def test_parser_loss_falls_and_the_run_is_complete(parser_run):
    rows = _rows(parser_run)
    assert [r["step"] for r in rows] == list(range(1, 81))
    _falls(rows)
    assert rows[-1]["pixel_acc"] > 0.5 > rows[0]["pixel_acc"]
    for name in ("parser.safetensors", "parser.onnx", "parser.json", "loss_curve.png", "log.csv"):
        assert (parser_run / name).stat().st_size > 0, name
    meta = read_meta((parser_run / "parser.safetensors").read_bytes())
    assert meta["kind"] == "parser" and meta["labels"] == "gp29" and meta["num_classes"] == 29
    contract = json.loads((parser_run / "parser.json").read_text())
    assert contract == meta["contract"]
    assert contract["input_size"] == [128, 96] and contract["channel_order"] == "rgb" and contract["keep_aspect"]


def _miou_on(parser, persons) -> list[float]:
    from gpvton_core.parser import mean_iou

    return [mean_iou(parser.parse(decode_rgb(p["image_png"])), decode_labels(p["parsing_png"]), 29) for p in persons]


def test_parser_onnx_parses_the_training_photos(parser_run, vitonhd_shards, tmp_path):
    """The exported ONNX, through HumanParser and the parser.json beside it, on the 512×384 shard
    photos: the same logits as the torch weights, and a parsing far closer to the training labels
    than an untrained network's (measured: mIoU ≈ 0.24 vs ≈ 0.003)."""
    import onnxruntime as ort

    from gpvton_core.parser import ParserNet, normalize_rgb
    from pipelines.preprocess.estimators.parser import HumanParser, ParserConfig
    from workers.train.onnx_export import export_onnx

    persons = list_persons(vitonhd_shards)
    parser = HumanParser(ParserConfig(model=str(parser_run / "parser.onnx")))
    assert parser.scheme == "gp29" and parser.input_size == (128, 96)
    from safetensors.torch import load_file

    net = ParserNet(29, 0.25).eval()
    net.load_state_dict(load_file(parser_run / "parser.safetensors"))
    img = decode_rgb(persons[0]["image_png"])
    x = torch.nn.functional.interpolate(normalize_rgb(torch.from_numpy(img.copy()).permute(2, 0, 1)[None]),
                                        size=(128, 96), mode="bilinear", antialias=True)
    sess = ort.InferenceSession(str(parser_run / "parser.onnx"))
    with torch.no_grad():
        ref = net(x).numpy()
    assert np.abs(sess.run(None, {"input": x.numpy()})[0] - ref).max() < 1e-3

    trained = _miou_on(parser, persons)
    torch.manual_seed(0)
    (tmp_path / "parser.onnx").write_bytes(export_onnx(ParserNet(29, 0.25), (128, 96)))
    (tmp_path / "parser.json").write_text((parser_run / "parser.json").read_text())
    untrained = _miou_on(HumanParser(ParserConfig(model=str(tmp_path / "parser.onnx"))), persons)
    assert np.mean(trained) > 0.15 and np.mean(trained) > 10 * np.mean(untrained), (trained, untrained)
    out = parser.parse(img)
    assert out.shape == img.shape[:2] and out.dtype == np.uint8 and out.max() < 29


def test_parser_resume_is_step_exact(vitonhd_shards, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    kw = dict(PARSER, shards=vitonhd_shards, steps=4, checkpoint_every=2, export_onnx=False)
    train_loop_per_worker(dict(kw, output=str(full)))
    train_loop_per_worker(dict(kw, output=str(part), steps=2))
    train_loop_per_worker(dict(kw, output=str(part), resume=True))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(_rows(full)) == strip(_rows(part))
    from safetensors.torch import load_file

    wa, wb = load_file(full / "parser.safetensors"), load_file(part / "parser.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not (full / "parser.onnx").exists() and (full / "parser.json").is_file()


def test_parser_lip_labels_on_dresscode(dresscode_shards, tmp_path):
    """``labels=lip``: the 29-label parsings (ATR-derived here) collapsed to LIP, VITON-HD's convention."""
    from pipelines.preprocess.estimators.parser import HumanParser, ParserConfig
    out = tmp_path / "lip"
    train_loop_per_worker(dict(PARSER, shards=dresscode_shards, output=str(out), steps=3, labels="lip"))
    contract = json.loads((out / "parser.json").read_text())
    assert contract["classes"] == "lip" and contract["class_map"] == list(range(20))
    parser = HumanParser(ParserConfig(model=str(out / "parser.onnx")))
    img = decode_rgb(list_persons(dresscode_shards)[0]["image_png"])
    lab = parser.parse(img)
    assert lab.shape == img.shape[:2] and lab.max() < 20
