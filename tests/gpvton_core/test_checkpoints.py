import importlib.util
import json
from pathlib import Path

import pytest
import torch

from gpvton_core.checkpoints import (
    CheckpointError,
    build_from_checkpoint,
    build_model,
    detect_kind,
    load_official,
    load_safetensors,
    read_state_dict,
    save_safetensors,
)
from gpvton_core.generator import TryOnGenerator
from gpvton_core.warp import LFGPWarp

from .conftest import TINY

pytestmark = pytest.mark.usefixtures("single_thread")

KINDS = ["warp_vitonhd", "warp_dresscode", "generator"]


def _keys(spec_dir: Path, kind: str) -> dict:
    return json.loads((spec_dir / "checkpoints" / f"{kind}_keys.json").read_text())


def _fill(spec_dir: Path):
    spec = importlib.util.spec_from_file_location("fill_weights_t", spec_dir / "parity" / "fill_weights.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.fill_state_dict


@pytest.mark.parametrize("kind", KINDS)
def test_official_key_tables_load_strictly(spec_dir, kind, tmp_path):
    keys = _keys(spec_dir, kind)
    sd = _fill(spec_dir)(keys, 7)
    if kind != "generator":
        sd["aflow_net.weight"] = torch.zeros(4, 1, 3, 3)  # present in the released warp files
    path = tmp_path / "ckpt.pth"
    torch.save(sd, path)
    model = load_official(build_model(kind), path)
    got = model.state_dict()
    assert list(got) == list(keys)
    k = next(iter(keys))
    assert torch.equal(got[k], sd[k])
    assert detect_kind(sd) == (kind, 1.0)


def test_errors_name_the_key():
    model = LFGPWarp("vitonhd", TINY)
    sd = model.state_dict()
    key = "aflow_net.netSeg.4.6.weight"
    bad = dict(sd)
    bad[key] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match="netSeg.4.6.weight"):
        load_official(model, bad)
    missing = {k: v for k, v in sd.items() if k != key}
    with pytest.raises(CheckpointError, match="missing key 'aflow_net.netSeg.4.6.weight'"):
        load_official(model, missing)
    extra = dict(sd, **{"aflow_net.extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected key 'aflow_net.extra.weight'"):
        load_official(model, extra)
    # the released files' constant filter bank is tolerated; a DDP prefix is stripped
    load_official(model, {"module." + k: v for k, v in dict(sd, **{"aflow_net.weight": torch.zeros(4, 1, 3, 3)}).items()})


@pytest.mark.parametrize("payload", [
    {"state_dict": {"a": torch.zeros(1)}, "epoch": 3},
    [torch.zeros(1)],
    {"a": 1.0},
])
def test_non_plain_pickles_rejected(tmp_path, payload):
    path = tmp_path / "x.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError):
        load_official(TryOnGenerator(TINY), path)


class _Arbitrary:
    """Any class outside the weights_only allow-list."""


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"a": _Arbitrary()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(path)


@pytest.mark.parametrize("kind", KINDS)
def test_safetensors_roundtrip_small_width(tmp_path, kind):
    torch.manual_seed(0)
    model = build_model(kind, TINY)
    path = tmp_path / f"{kind}.safetensors"
    save_safetensors(model, path, {"resolution": [512, 384], "provenance": "test"})
    sd, meta = load_safetensors(path)
    assert meta["kind"] == kind and meta["width"] == TINY and meta["resolution"] == [512, 384]
    assert detect_kind(sd) == (kind, TINY)
    rebuilt, meta2 = build_from_checkpoint(path)
    assert meta2["provenance"] == "test"
    got = rebuilt.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(got[k], v)


def test_detect_kind_rejects_foreign_dict():
    with pytest.raises(CheckpointError):
        detect_kind({"fc.weight": torch.zeros(2, 2)})
