import pytest
import torch

from gpvton_core import assembly as asm
from gpvton_core.generator import TryOnGenerator
from gpvton_core.inference import TryOnPipeline
from gpvton_core.warp import LFGPWarp

from .conftest import TINY, make_inputs

pytestmark = pytest.mark.usefixtures("single_thread")

H, W = 64, 64


def _pipe(variant="vitonhd", resolution=(H, W), **kw) -> TryOnPipeline:
    torch.manual_seed(0)
    gen = TryOnGenerator(TINY)
    for m in gen.modules():  # non-trivial BN statistics: batch dependence would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return TryOnPipeline(LFGPWarp(variant, TINY), gen, resolution=resolution, **kw)


def _monolithic(pipe: TryOnPipeline, person, garment, pi: int, gi: int) -> torch.Tensor:
    """Official-style single pair: warp forward (11/12 args) → assembly → generator."""
    v = pipe.variant
    cat = [garment.category[gi]]
    dt = pipe.out_dtype
    p = lambda t: t[pi:pi + 1].to(dt)  # noqa: E731
    g = lambda t: t[gi:gi + 1].to(dt)  # noqa: E731
    clothes = g(garment.image) * g(garment.mask)
    parts = g(garment.parts)
    L, M, R = parts[:, 0:1], parts[:, 1:2], parts[:, 2:3]
    label = asm.garment_label(parts, v, cat)
    cond = torch.cat([torch.nn.functional.one_hot(p(person.densepose)[:, 0].long(), 25).permute(0, 3, 1, 2).to(dt) * 2 - 1,
                      p(person.pose), p(person.preserve_warp)], 1)
    args = [cond, clothes, g(garment.mask), label, clothes * L, clothes * M, clothes * R, L, M, R,
            p(person.preserve_warp)]
    if v == "dresscode":
        args.append(asm.type_map(cat, (H, W), dt))
    with torch.no_grad():
        out = pipe.warp(*args, mode="training")
        pc, ec = asm.class_table(v, cat)
        cloth, lab = asm.assemble_warp(torch.cat([clothes * L, clothes * M, clothes * R]), torch.cat([L, M, R]),
                                       out.last_flow, asm.seg_argmax(out.seg_logits), p(person.preserve_warp), pc, ec)
        if pipe.quantize:
            cloth = asm.quantize_uint8(cloth)
        x, edge = asm.generator_input(p(person.image), p(person.preserve_gen), cloth, lab, p(person.skin),
                                      p(person.pose), v)
        pipe.generator.train()  # infer() must switch it back to eval itself
        raw = pipe.generator.infer(x)
        return asm.compose(raw, cloth, edge)[0]


@pytest.mark.parametrize("variant,cats", [("vitonhd", ["upper"] * 3), ("dresscode", ["upper", "lower", "dresses"])])
def test_cross_product_matches_monolithic(variant, cats):
    # float64: the Dress Code decoder (instance norm in every head layer) amplifies float32
    # rounding noise at random init; uint8 truncation would turn ulp noise into 1/255 steps
    pipe = _pipe(variant, quantize=False, precision="fp64")
    person, garment = make_inputs(2, 3, H, W, cats)
    gb, pb = pipe.encode_garments(garment), pipe.encode_persons(person)
    out = pipe.cross(gb, pb, batch_size=4)
    assert out.tryon.shape == (6, 3, H, W) and out.warped_label.dtype == torch.long
    for n in (0, 4, 5):
        pi, gi = divmod(n, 3)
        ref = _monolithic(pipe, person, garment, pi, gi)
        assert torch.allclose(out.tryon[n:n + 1], ref, atol=1e-10), n


def test_output_independent_of_batch_size_and_neighbours():
    pipe = _pipe()
    person, garment = make_inputs(3, 2, H, W, seed=1)
    gb, pb = pipe.encode_garments(garment), pipe.encode_persons(person)
    gi, pi = [0, 1, 1, 0, 1], [0, 0, 2, 1, 1]
    big = pipe.run_pairs(gb, pb, gi, pi, batch_size=5)
    one = pipe.run_pairs(gb, pb, gi, pi, batch_size=1)
    rev = pipe.run_pairs(gb, pb, gi[::-1], pi[::-1], batch_size=2)
    assert torch.allclose(big.tryon, one.tryon, atol=1e-5)
    assert torch.allclose(big.tryon, rev.tryon.flip(0), atol=1e-5)
    assert torch.equal(big.warped_label, one.warped_label)


def test_paired_call_and_validation():
    pipe = _pipe("dresscode")
    person, garment = make_inputs(2, 2, H, W, ["upper", "lower"])
    out = pipe(person, garment)
    assert out.tryon.shape == (2, 3, H, W) and out.tryon.abs().max() <= 1
    assert set(out.warped_label.unique().tolist()) <= set(range(10))
    person.category = ["upper", "upper"]
    pb, gb = pipe.encode_persons(person), pipe.encode_garments(garment)
    with pytest.raises(ValueError, match="category mismatch"):
        pipe.run_pairs(gb, pb, [1], [0])
    with pytest.raises(ValueError):
        pipe.encode_persons(make_inputs(1, 1, 32, 32)[0])  # wrong resolution


def test_1024_path_warps_at_half_resolution():
    h, w = 1024, 768
    pipe = _pipe("vitonhd", resolution=(h, w))
    person, garment = make_inputs(1, 1, h, w, seed=3)
    gb, pb = pipe.encode_garments(garment), pipe.encode_persons(person)
    assert pipe.half_res_warp and gb.features.pyramid[0].shape[-2:] == (h // 4, w // 4)
    assert pb.preserve_warp_lr.shape[-2:] == (h // 2, w // 2)
    out = pipe.cross(gb, pb, batch_size=2)
    assert out.tryon.shape == (1, 3, h, w) and out.seg.shape == (1, 1, h, w)
    assert out.warped_label.shape == (1, 1, h, w) and torch.isfinite(out.tryon).all()
    # the argmax is upsampled ×2 nearest: every 2×2 block is constant
    s = out.seg[:, 0]
    assert torch.equal(s[:, ::2, ::2], s[:, 1::2, 1::2])


@pytest.mark.filterwarnings("ignore:precision='bf16' on a CPU")
def test_bf16_pipeline_runs_and_stays_close(monkeypatch):
    """The bf16 mix against fp32: try-on SSIM ≥ 0.996 (the README's bound; measured 1.000 here,
    mean |diff| 0.0004), and every flow, grid and feature sample of the decoder stays float32."""
    from torchmetrics.functional import structural_similarity_index_measure as ssim

    from gpvton_core import flow as fl

    seen: dict[str, set] = {}

    def spy(name):
        real = getattr(fl, name)

        def wrapped(*args, **kw):
            out = real(*args, **kw)
            flows = [a for a in args[1:] if isinstance(a, torch.Tensor) and a.is_floating_point()]
            for t in [out, *flows] if isinstance(out, torch.Tensor) else flows:
                seen.setdefault(name, set()).add(t.dtype)
            return out
        monkeypatch.setattr(fl, name, wrapped)

    person, garment = make_inputs(1, 2, H, W, seed=4)
    p32 = _pipe()
    p16 = _pipe(precision="bf16")
    gb32, pb32 = p32.encode_garments(garment), p32.encode_persons(person)
    gb16, pb16 = p16.encode_garments(garment), p16.encode_persons(person)
    a = p32.cross(gb32, pb32)
    for name in ("offset_to_grid", "compose", "warp", "up2", "sample_rows", "sample_rows_up2"):
        spy(name)
    b = p16.cross(gb16, pb16)
    assert b.tryon.dtype == torch.float32 and torch.isfinite(b.tryon).all()
    assert float(ssim(b.tryon, a.tryon, data_range=2.0)) >= 0.996
    assert {"offset_to_grid", "compose", "sample_rows"} <= set(seen), seen     # the decoder went through them
    assert all(d == {torch.float32} for d in seen.values()), seen


def test_channels_last_matches_nchw():
    person, garment = make_inputs(2, 2, H, W, seed=5)
    outs = []
    for cl in (True, False):
        pipe = _pipe(channels_last=cl)
        outs.append(pipe.cross(pipe.encode_garments(garment), pipe.encode_persons(person)))
    a, b = outs
    assert (a.tryon - b.tryon).abs().max() < 1e-4 and torch.equal(a.warped_label, b.warped_label)
    assert a.tryon.is_contiguous()  # outputs are plain NCHW for the consumers


@pytest.mark.filterwarnings("ignore:precision='bf16' on a CPU")
def test_mixed_policy_puts_each_group_in_its_dtype():
    from gpvton_core.precision import MIXED

    pipe = _pipe(precision="bf16")
    dec = pipe.warp.aflow_net
    assert pipe.precision == "bf16" and pipe.policy == MIXED
    assert pipe.warp.image_features.encoders[0][0].block[2].weight.dtype == torch.float32  # encoders: fp32
    assert dec.netLeftRefine[4][0].weight.dtype == torch.float32  # flow heads: fp32
    assert dec.netPartFusion[4][1].block[2].weight.dtype == torch.bfloat16  # full-resolution fusion: bf16
    seg = dec.netSeg[4]
    assert seg[0].weight.dtype == torch.bfloat16 and seg[-2].weight.dtype == torch.float32  # logits conv: fp32
    gen_convs = [m for m in pipe.generator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert gen_convs[0].weight.dtype == torch.bfloat16 and gen_convs[-1].weight.dtype == torch.float32
    bn = next(m for m in pipe.generator.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.running_var.dtype == torch.float32  # statistics stay fp32 (BatchNorm runs mixed)
    info = pipe.precision_info()
    assert info["resolved"] == "bf16" and info["policy"]["encoders"] is False and "cpu_flags" in info


def test_auto_precision_follows_the_hardware():
    from gpvton_core.precision import native_bf16

    pipe = _pipe(precision="auto")
    assert pipe.precision == ("bf16" if native_bf16("cpu")[0] else "fp32")
    assert pipe.precision_info()["requested"] == "auto" and pipe.precision_reason.startswith("auto:")
    with pytest.raises(ValueError):
        _pipe(precision="int8")  # type: ignore[arg-type]
