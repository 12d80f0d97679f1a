import json

import pytest
import torch

from gpvton_core import flow as fl
from gpvton_core.warp import LFGPWarp, stack_parts

from .conftest import TINY

pytestmark = pytest.mark.usefixtures("single_thread")


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
    assert list(small) == list(LFGPWarp(variant, 1 / 32).state_dict())
    assert "aflow_net.weight" not in small and "aflow_net.second_diff" not in small


@pytest.mark.parametrize("variant", ["vitonhd", "dresscode"])
def test_keys_match_the_official_table(spec_dir, variant):
    """The official checkpoints' key tables (shared data: skips locally when absent, fails under CI=true)."""
    table = spec_dir / "checkpoints" / f"warp_{variant}_keys.json"
    assert list(LFGPWarp(variant, 0.125).state_dict()) == list(json.loads(table.read_text()))


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
        inf = m(*args, mode="inference")  # reordered linear algebra: equal up to float64 rounding
        assert torch.allclose(inf.last_flow, full.last_flow, atol=1e-10, rtol=0)
        assert torch.allclose(inf.seg_logits, full.seg_logits, atol=1e-9, rtol=0)
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
    assert torch.allclose(out.last_flow, ref_flow, atol=1e-10, rtol=0)
    assert torch.allclose(out.seg_logits, full.seg_logits[order], atol=1e-9, rtol=0)


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
    assert out.seg_logits.dtype == torch.float32  # inference outputs come back in the flow dtype


def test_invalid_variant_and_mode():
    with pytest.raises(ValueError):
        LFGPWarp("nope")  # type: ignore[arg-type]
    m = _model("vitonhd")
    with pytest.raises(ValueError):
        m(*_args("vitonhd", 1, 64, 64), mode="eval")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        m.encode_garment(torch.zeros(1, 4, 64, 64)) if False else LFGPWarp("dresscode", TINY).encode_garment(
            torch.zeros(1, 4, 64, 64))


@pytest.mark.parametrize("gather", [True, False], ids=["gather", "grid_sample"])
def test_sampling_equals_grid_sample(monkeypatch, gather):
    """Both implementations (CPU gather, GPU grid_sample) of the inference samplers, against the official ops."""
    import torch.nn.functional as F

    monkeypatch.setattr(fl, "GATHER_DEVICES", {"cpu"} if gather else set())
    g = torch.Generator().manual_seed(3)
    r, c, h, w, k, b = 3, 5, 6, 8, 3, 4
    feats = torch.randn(r, c, h, w, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    rows = torch.tensor([2, 0, 1, 2])
    flow = torch.rand(b, 2, h, w, generator=g, dtype=torch.float64) * 2.6 - 1.3  # some outside: border padding
    ref = F.grid_sample(feats[rows], flow.permute(0, 2, 3, 1), padding_mode="border", align_corners=False)
    out = fl.sample_rows(feats, rows, flow)
    assert torch.allclose(out, ref, atol=1e-13, rtol=0) and out.is_contiguous(memory_format=torch.channels_last)
    # last level: Σ_k scale_k · warp(up2(part k), flow_k), parts as channel blocks of one table
    parts = torch.randn(k, r, c, h, w, generator=g, dtype=torch.float64)
    table = parts.permute(1, 0, 2, 3, 4).reshape(r, k * c, h, w).contiguous(memory_format=torch.channels_last)
    flows = torch.rand(k * b, 2, 2 * h, 2 * w, generator=g, dtype=torch.float64) * 2.6 - 1.3
    scale = torch.rand(k * b, 1, 2 * h, 2 * w, generator=g, dtype=torch.float64)
    ref = sum(fl.warp(fl.up2(parts[j][rows]), flows[j * b:(j + 1) * b], padding="border") * scale[j * b:(j + 1) * b]
              for j in range(k))
    out = fl.sample_rows_up2(table, rows, flows, scale)
    assert torch.allclose(out, ref, atol=1e-13, rtol=0) and out.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_instance_norm_is_accurate():
    """GroupNorm's channels-last kernel loses ~3 digits at this size; ours must match instance_norm."""
    from gpvton_core.blocks import _in

    x = torch.randn(2, 16, 128, 96, dtype=torch.float64) * 0.3 + 2.0  # offset mean: cancellation-prone
    ref = torch.nn.functional.instance_norm(x, eps=1e-5)
    out = _in(x.float().contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert (out.double() - ref).abs().max() < 1e-5
    assert (_in(x.bfloat16().contiguous(memory_format=torch.channels_last)).double() - ref).abs().max() < 0.1


@pytest.mark.parametrize("variant", ["vitonhd", "dresscode"])
def test_decode_pairs_reads_rows_in_place(variant):
    """Pairs index encoded rows directly (any order, repeats, one shared person) = decoding selected rows."""
    b, h, w = 3, 64, 64
    m = _model(variant)
    args = _args(variant, b, h, w, seed=5)
    cond, clothes, _, label = args[:4]
    with torch.no_grad():
        gf = m.encode_garment(torch.cat((clothes, label), 1), args[11] if variant == "dresscode" else None)
        pf = m.encode_person(cond)
        for gi, pi in (([2, 0, 2, 1], [1, 1, 1, 1]), ([1, 2, 0], [2, 0, 0])):
            gi, pi = torch.tensor(gi), torch.tensor(pi)
            masks = stack_parts(*(a[gi] for a in args[7:10]))
            flow, seg = m.decode_pairs(gf, pf, gi, pi, masks, args[10][pi])
            ref = m.decode(gf.select(gi), pf.select(pi), masks, args[10][pi], mode="inference")
            assert torch.allclose(flow, ref.last_flow, atol=1e-10, rtol=0)
            assert torch.allclose(seg, ref.seg_logits, atol=1e-9, rtol=0)
