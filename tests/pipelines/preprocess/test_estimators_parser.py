"""The ONNX parser contract, on tiny ONNX models exported here: channel order and mean/std,
class maps, output selection, flip averaging with the left/right swap, the way back to the
photo's size (with and without keeping the aspect), batching, the JSON contract beside the model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipelines.preprocess.estimators.parser import (NO_PARSER_REASON, HumanParser, ParserConfig,
                                                    load_parser_config)

pytest.importorskip("onnx", reason="exporting the test models needs the onnx package (dev extra)")


def export(net: nn.Module, path: Path, size: tuple[int, int] = (32, 32), dynamic: bool = True,
           outputs: int = 1) -> str:
    names = [f"out{i}" for i in range(outputs)]
    axes = {n: {0: "n", 2: "h", 3: "w"} for n in ["input", *names]} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # the TorchScript exporter's deprecation notice
        torch.onnx.export(net.eval(), torch.zeros(1, 3, *size), str(path), dynamo=False, input_names=["input"],
                          output_names=names, dynamic_axes=axes, opset_version=17)
    return str(path)


class Channels(nn.Module):
    """Logits = the normalised input's three channels (a 3-class model)."""

    def forward(self, x):
        return x * 1.0


class Ramp(nn.Module):
    """20 LIP logits that depend on the position only: Left-arm (14) = 4·(t − x/W), 0 for background,
    −0.01 for Right-arm, −10 elsewhere. Without flip averaging the columns left of t·W are 14, the
    rest background."""

    def __init__(self, t: float = 0.5) -> None:
        super().__init__()
        self.t = t

    def forward(self, x):
        ones = torch.ones_like(x[:, :1])
        r = torch.cumsum(ones, -1) / ones.sum(-1, keepdim=True)
        other = ones * -10.0
        chans = [ones * 0.0] + [other] * 13 + [4.0 * (self.t - r), ones * -0.01] + [other] * 4
        return torch.cat(chans, 1)


class Constant(nn.Module):
    def __init__(self, label: int, classes: int = 20, pool: int = 1) -> None:
        super().__init__()
        self.label, self.classes, self.pool = label, classes, pool

    def forward(self, x):
        ones = torch.ones_like(x[:, :1])
        if self.pool > 1:
            ones = nn.functional.avg_pool2d(ones, self.pool)
        return torch.cat([ones * (5.0 if c == self.label else 0.0) for c in range(self.classes)], 1)


class SchpLike(nn.Module):
    """SCHP's three outputs: parsing (says Hat), fusion at ¼ size (says Upper-clothes), edge (2 ch)."""

    def forward(self, x):
        return Constant(1)(x), Constant(5, pool=4)(x), Constant(1, classes=2)(x)


def test_channel_order_mean_std(tmp_path):
    model = export(Channels(), tmp_path / "c.onnx")
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (40, 3)).astype(np.uint8)
    img = np.repeat(colours[:, None, :], 8, 1)            # 40×8 photo, one colour per row
    cases = [dict(), dict(channel_order="rgb"), dict(mean=(0.2, 0.6, 0.4), std=(0.5, 0.1, 0.3))]
    got = []
    for kw in cases:
        cfg = ParserConfig(model=model, classes="atr", class_map=[0, 1, 2], input_size=(40, 8), **kw)
        labels = HumanParser(cfg).parse(img)
        px = colours.astype(np.float64) / 255
        if cfg.channel_order == "bgr":
            px = px[:, ::-1]
        want = ((px - np.array(cfg.mean)) / np.array(cfg.std)).argmax(1)
        np.testing.assert_array_equal(labels[:, 4], want)
        got.append(labels[:, 4])
    assert not np.array_equal(got[0], got[1]) and not np.array_equal(got[0], got[2])  # the options matter


def test_schp_defaults_and_lip_jumpsuit_map():
    cfg = ParserConfig()
    assert (cfg.classes, cfg.channel_order, cfg.keep_aspect, cfg.flip) == ("lip", "bgr", True, False)
    assert cfg.mean == (0.406, 0.456, 0.485) and cfg.std == (0.225, 0.224, 0.229)
    lut = cfg.label_map()
    assert lut[10] == 6 and all(lut[i] == i for i in range(20) if i != 10)
    assert list(ParserConfig(classes="atr").label_map()) == list(range(18))


def test_output_selection_and_class_map(tmp_path):
    img = np.full((48, 36, 3), 128, np.uint8)
    schp = export(SchpLike(), tmp_path / "schp.onnx", size=(32, 32), outputs=3)
    p = HumanParser(ParserConfig(model=schp, input_size=(32, 32)))
    out = p.parse(img)
    assert out.shape == (48, 36) and (out == 5).all()    # the fusion output, upsampled from 8×8
    assert (HumanParser(ParserConfig(model=schp, input_size=(32, 32), output_index=0)).parse(img) == 1).all()
    jump = export(Constant(10), tmp_path / "j.onnx")
    assert (HumanParser(ParserConfig(model=jump, input_size=(32, 32))).parse(img) == 6).all()
    ident = ParserConfig(model=jump, input_size=(32, 32), class_map=list(range(20)))
    assert (HumanParser(ident).parse(img) == 10).all()
    with pytest.raises(ValueError, match="class channels"):
        HumanParser(ParserConfig(model=schp, classes="atr", input_size=(32, 32)))


def test_flip_averaging_swaps_left_and_right(tmp_path):
    model = export(Ramp(0.5), tmp_path / "ramp.onnx")
    img = np.zeros((32, 32, 3), np.uint8)
    plain = HumanParser(ParserConfig(model=model, input_size=(32, 32))).parse(img)
    assert (plain[:, :15] == 14).all() and (plain[:, 17:] == 0).all()
    flip = HumanParser(ParserConfig(model=model, input_size=(32, 32), flip=True)).parse(img)
    assert (flip[:, :15] == 14).all() and (flip[:, 17:] == 15).all()    # the mirror's 14 comes back as 15
    noswap = HumanParser(ParserConfig(model=model, input_size=(32, 32), flip=True, flip_pairs=[])).parse(img)
    assert not (noswap == 15).any()           # without the swap nothing becomes Right-arm
    with pytest.raises(ValueError):
        ParserConfig(model=model, flip=True, output="labels")


@pytest.mark.parametrize("keep_aspect, boundary", [(True, 8), (False, 12)])
def test_back_to_the_photo_size(tmp_path, keep_aspect, boundary):
    """A 64×32 photo into a 32×32 input: padded to 64×64 (photo at columns 16..47) or stretched.
    The Ramp's edge at 3/8 of the input lands at photo column 24 − 16 = 8, or at 3/8 · 32 = 12."""
    model = export(Ramp(0.375), tmp_path / "ramp.onnx")
    out = HumanParser(ParserConfig(model=model, input_size=(32, 32), keep_aspect=keep_aspect)).parse(
        np.zeros((64, 32, 3), np.uint8))
    assert out.shape == (64, 32)
    col = out[32]
    assert (col[:boundary - 1] == 14).all() and (col[boundary + 1:] == 0).all(), col


def test_batch_path_one_run_for_a_dynamic_batch(tmp_path):
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (h, w, 3)).astype(np.uint8) for h, w in ((40, 30), (64, 48), (20, 20))]
    dyn = HumanParser(ParserConfig(model=export(Channels(), tmp_path / "d.onnx"), classes="atr",
                                   class_map=[0, 1, 2], input_size=(32, 32)))
    fixed = HumanParser(ParserConfig(model=export(Channels(), tmp_path / "f.onnx", dynamic=False), classes="atr",
                                     class_map=[0, 1, 2]))
    assert dyn.dynamic_batch and not fixed.dynamic_batch and fixed.input_size == (32, 32)
    runs = {"dyn": 0, "fixed": 0}
    for name, p in (("dyn", dyn), ("fixed", fixed)):
        real = p.session.run

        def counted(*a, _real=real, _name=name, **k):
            runs[_name] += 1
            return _real(*a, **k)

        p.session.run = counted
    a, b = dyn.parse_batch(imgs), fixed.parse_batch(imgs)
    assert runs == {"dyn": 1, "fixed": 3}
    for x, y, im in zip(a, b, imgs):
        assert x.shape == im.shape[:2] and np.array_equal(x, y)
    with pytest.raises(ValueError, match="takes"):
        HumanParser(ParserConfig(model=str(tmp_path / "f.onnx"), classes="atr", class_map=[0, 1, 2],
                                 input_size=(64, 64)))


def test_sidecar_contract_and_provenance(tmp_path):
    model = export(Channels(), tmp_path / "parser.onnx")
    side = {"classes": "gp29", "class_map": [0, 5, 14], "channel_order": "rgb", "mean": [0, 0, 0],
            "std": [1, 1, 1], "input_size": [16, 16]}
    (tmp_path / "parser.json").write_text(json.dumps(side))
    p = HumanParser(ParserConfig(model=model))
    assert p.scheme == "gp29" and p.input_size == (16, 16) and p.cfg.channel_order == "rgb"
    red = np.zeros((10, 10, 3), np.uint8)
    red[..., 0] = 200
    assert (p.parse(red) == 0).all()           # R is channel 0 in RGB order → label 0
    assert p.provenance.startswith("onnx-parser:gp29@") and len(p.provenance.split("@")[1]) == 12
    explicit = HumanParser(ParserConfig(model=model, channel_order="bgr"))   # the user's fields win
    assert explicit.cfg.channel_order == "bgr" and (explicit.parse(red) == 14).all()
    loaded = load_parser_config(str(tmp_path / "parser.json"))
    assert loaded.model == str(tmp_path / "parser.onnx") and loaded.classes == "gp29"


def test_no_parser_names_both_options(tmp_path):
    with pytest.raises(ValueError) as exc:
        HumanParser(ParserConfig())
    assert str(exc.value) == NO_PARSER_REASON
    assert "ONNX" in NO_PARSER_REASON and "gpvton train parser" in NO_PARSER_REASON
    with pytest.raises(FileNotFoundError, match="not found"):
        HumanParser(ParserConfig(model=str(tmp_path / "missing.onnx")))
    with pytest.raises(Exception):
        ParserConfig(model="x.onnx", colour="rgb")     # unknown keys are errors
