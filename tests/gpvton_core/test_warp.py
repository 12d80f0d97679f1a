import json
from pathlib import Path

import pytest
import torch

from gpvton_core import flow as fl
from gpvton_core.warp import LFGPWarp, stack_parts

from .conftest import TINY

pytestmark = pytest.mark.usefixtures("single_thread")

KEYS = Path(__file__).resolve().parents[3] / "shared" / "spec" / "checkpoints"


def _args(variant: str, b: int, h: int, w: int, seed: int = 0, dtype=torch.float64) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cond = torch.where(torch.rand(b, 51, h, w, generator=g) < 0.1, 1.0, -1.0)
    cond[:, 50:] = (torch.rand(b, 1, h, w, generator=g) < 0.2).float()
    color = torch.rand(b, 3, h, w, generator=g) * 2 - 1
    masks = [(torch.rand(b, 1, h, w, generator=g) < 0.3).float() for _ in range(3)]
    edge = torch.clamp(masks[0] + masks[1] + masks[2], max=1)
    clothes = color * edge
    label = (masks[0] + 2 * masks[1] + 3 * masks[2]) / 3
    args = [cond, clothes, edge, label, *(clothes * m for m in masks), *masks, cond[:, 50:]]
    if variant == "dresscode":
        args.append(torch.tensor([1 / 3, 2 / 3, 1.0])[torch.arange(b) % 3].view(b, 1, 1, 1).expand(b, 1, h, w))
    return [a.to(dtype).contiguous() for a in args]


def _model(variant: str, seed: int = 0, width: float = TINY) -> LFGPWarp:
    torch.manual_seed(seed)
    return LFGPWarp(variant, width).double()


@pytest.mark.parametrize("variant", ["vitonhd", "dresscode"])
def test_keys_identical_at_any_width(variant):
    small = LFGPWarp(variant, 0.125).state_dict()
    path = KEYS / f"warp_{variant}_keys.json"
    if path.is_file():
        assert list(small) == list(json.loads(path.read_text()))
    assert list(small) == list(LFGPWarp(variant, 1 / 32).state_dict())
    assert "aflow_net.weight" not in small and "aflow_net.second_diff" not in small


def test_small_heads_keep_a_channel_floor():
    """Scaled linearly, width 1/16 would leave the 10-class parsing head 2 channels wide."""
    from gpvton_core.blocks import HEAD_HIDDEN, HEAD_MIN_HIDDEN

    small = LFGPWarp("dresscode", 1 / 16).aflow_net.netSeg[-1]
    convs = [m for m in small if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [HEAD_MIN_HIDDEN] * 3 + [10]
    official = LFGPWarp("dresscode", 1.0).aflow_net.netSeg[-1]
    assert [m.out_channels for m in official if isinstance(m, torch.nn.Conv2d)] == [*HEAD_HIDDEN, 10]


@pytest.mark.parametrize("variant", ["vitonhd", "dresscode"])
def test_split_api_equals_monolithic_forward(variant):
    b, h, w = 3, 64, 64
    m = _model(variant)
    args = _args(variant, b, h, w)
    with torch.no_grad():
        full = m(*args)  # official forward, all outputs
        inf = m(*args, mode="inference")
        assert torch.equal(inf.last_flow, full.last_flow) and torch.equal(inf.seg_logits, full.seg_logits)
        assert inf.flows == [] and inf.segs == []
        # cross product style: encode each side once, gather rows per pair
        cond, clothes, edge, label = args[:4]
        tm = args[11] if variant == "dresscode" else None
        gf = m.encode_garment(torch.cat((clothes, label), 1), tm)
        pf = m.encode_person(cond)
        order = torch.tensor([2, 0, 1])
        gsel, psel = gf.select(order), pf.select(order)
        masks = stack_parts(*(a[order] for a in args[7:10]))
        out = m.decode(gsel, psel, masks, args[10][order], mode="inference")
    ref_flow = full.last_flow.view(3, b, 2, h, w)[:, order].reshape(3 * b, 2, h, w)
    assert torch.allclose(out.last_flow, ref_flow, atol=1e-12, rtol=0)
    assert torch.allclose(out.seg_logits, full.seg_logits[order], atol=1e-12, rtol=0)


def test_features_cat_and_select_roundtrip():
    m = _model("vitonhd")
    args = _args("vitonhd", 2, 64, 64)
    with torch.no_grad():
        pf = m.encode_person(args[0])
    both = type(pf).cat([pf.select([1]), pf.select([0])])
    assert len(both) == 2
    assert all(torch.equal(a, b) for a, b in zip(both.pyramid, pf.select([1, 0]).pyramid))


@pytest.mark.parametrize("variant", ["vitonhd", "dresscode"])
def test_training_outputs_match_official_structure(variant):
    b, h, w = 2, 64, 64
    m = _model(variant)
    with torch.no_grad():
        out = m(*_args(variant, b, h, w))
    c = 7 if variant == "vitonhd" else 10
    t = out.as_tuple()
    assert len(t) == 11
    assert out.last_flow.shape == (3 * b, 2, h, w) and out.seg_logits.shape == (b, c, h, w)
    assert len(out.deltas) == 10 and all(len(x) == 5 for x in t[1:2] + t[3:])
    for i in range(5):
        s = h // 2 ** (4 - i)
        assert out.flows[i].shape == (3 * b, 2, s, s)
        assert out.deltas[2 * i].shape == (3 * b, 2, s // 2, s // 2)
        assert out.part_images[i].shape == (3 * b, 3, s, s)
        assert out.part_masks[i].shape == (3 * b, 1, s, s)
        assert out.delta_x[i].shape == (3 * b, 4, s - 2, s - 2)
        assert out.full_images[i].shape == (b, 3, s, s) and out.full_masks[i].shape == (b, 1, s, s)
        assert out.attention[i].shape == (b, 3, s, s)
        assert out.segs[i].shape == (b, c, s, s)
    assert torch.allclose(out.attention[0].sum(1), torch.ones(1, dtype=torch.float64))
    assert out.seg_logits.abs().max() < 1


def test_batch_invariance():
    m = _model("dresscode")
    args = _args("dresscode", 3, 64, 64)
    with torch.no_grad():
        full = m(*args, mode="inference")
        one = m(*[a[1:2] for a in args], mode="inference")
    assert torch.allclose(one.seg_logits, full.seg_logits[1:2], atol=1e-12)
    assert torch.allclose(one.last_flow, full.last_flow.view(3, 3, 2, 64, 64)[:, 1], atol=1e-12)


def test_zero_offset_is_not_identity():
    # the official normalisation: x → 2x/(w−1) − 1, consumed with align_corners=False
    grid = fl.offset_to_grid(torch.zeros(1, 2, 4, 5, dtype=torch.float64))
    assert grid[0, 0, 0].tolist() == pytest.approx([-1, -0.5, 0, 0.5, 1])
    assert grid[0, 1, :, 0].tolist() == pytest.approx([-1, -1 / 3, 1 / 3, 1])


def test_second_difference_bank():
    k = fl.second_difference_bank()
    assert k.shape == (4, 1, 3, 3) and torch.all(k.sum((1, 2, 3)) == 0)
    ramp = torch.arange(20.0).view(1, 1, 4, 5)
    dx, _ = fl.second_differences(torch.cat([ramp, ramp], 1), k)
    assert torch.all(dx == 0)  # linear flow has no curvature


def test_bf16_weights_run_and_keep_float32_flows():
    m = LFGPWarp("vitonhd", TINY).to(torch.bfloat16)
    args = [a.to(torch.bfloat16) for a in _args("vitonhd", 1, 64, 64)]
    with torch.no_grad():
        out = m(*args, mode="inference")
    assert out.last_flow.dtype == torch.float32 and torch.isfinite(out.last_flow).all()
    assert out.seg_logits.dtype == torch.bfloat16


def test_invalid_variant_and_mode():
    with pytest.raises(ValueError):
        LFGPWarp("nope")  # type: ignore[arg-type]
    m = _model("vitonhd")
    with pytest.raises(ValueError):
        m(*_args("vitonhd", 1, 64, 64), mode="eval")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        m.encode_garment(torch.zeros(1, 4, 64, 64)) if False else LFGPWarp("dresscode", TINY).encode_garment(
            torch.zeros(1, 4, 64, 64))
