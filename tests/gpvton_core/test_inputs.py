"""Shard-row arrays → PersonInputs / GarmentInputs per category and dataset variant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpvton_core import inputs as gi


def _person(h=64, w=48):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    parsing = np.zeros((h, w), np.uint8)
    parsing[:10] = 2                       # hair (preserved)
    parsing[10:14, 20:28] = 14             # face (skin, preserved)
    parsing[20:40, 12:36] = 5              # upper torso
    parsing[20:40, 4:12] = 21              # left sleeve
    parsing[20:40, 36:44] = 22             # right sleeve
    parsing[40:60, 10:38] = 9              # pants
    parsing[14:18, 20:28] = 11             # neck
    dp = np.zeros((h, w), np.uint8)
    dp[20:60, 10:38] = 2
    kp = np.zeros((25, 3), np.float32)
    kp[1] = (24, 16, 1)
    kp[2], kp[5] = (14, 20, 1), (34, 20, 1)
    return image, parsing, dp, kp


def test_person_inputs_vitonhd_upper():
    image, parsing, dp, kp = _person()
    p = gi.person_inputs("p1", image, parsing, dp, kp.reshape(-1), "upper", "vitonhd")
    assert p.image.shape == (3, 64, 48) and p.image.min() >= -1 and p.image.max() <= 1
    assert p.cond.shape == (51, 64, 48)
    assert set(torch.unique(p.cond[:50]).tolist()) <= {-1.0, 1.0}
    assert torch.equal(p.cond[50:51], p.preserve_warp)
    # hair and pants preserved, upper torso / sleeves / neck not (VITON-HD FULL set)
    assert p.preserve_warp[0, 5, 5] == 1 and p.preserve_warp[0, 50, 20] == 1
    assert p.preserve_warp[0, 30, 20] == 0 and p.preserve_warp[0, 30, 6] == 0 and p.preserve_warp[0, 15, 22] == 0
    assert (dp_one := p.cond[:25].argmax(0))[30, 20] == 2 and dp_one[0, 0] == 0
    assert p.pose[1].max() == 1 and p.pose[0].max() == -1        # keypoint 0 missing → empty channel
    assert torch.isfinite(p.skin).all()
    # person-side targets: left sleeve 1, torso 2, right sleeve 3, neck 6
    assert p.targets[30, 6] == 1 and p.targets[30, 20] == 2 and p.targets[30, 40] == 3 and p.targets[15, 22] == 6


def test_person_inputs_dresscode_lower_targets_and_preserve():
    image, parsing, dp, kp = _person()
    p = gi.person_inputs("p1", image, parsing, dp, kp, "lower", "dresscode")
    assert p.preserve_warp[0, 30, 20] == 1          # upper torso preserved for a lower garment
    assert p.preserve_warp[0, 50, 20] == 0          # the pants are replaced
    assert p.targets[50, 20] == 4                   # left pants → class 4


def test_garment_inputs_label_values_per_variant():
    h, w = 64, 48
    img = np.full((h, w, 3), 200, np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[10:50, 8:40] = 255
    parts = np.zeros((h, w), np.uint8)
    parts[10:50, 8:16], parts[10:50, 16:32], parts[10:50, 32:40] = 3, 2, 1
    g = gi.garment_inputs("g1", img, mask, parts, "upper", "vitonhd")
    assert g.garment_input.shape == (4, h, w) and g.part_masks.shape == (3, 1, h, w)
    assert torch.allclose(torch.unique(g.garment_input[3]), torch.tensor([0, 1 / 3, 2 / 3, 1.0]))
    assert g.image[:, 0, 0].abs().sum() == 0        # RGB · mask
    g = gi.garment_inputs("g1", img, mask, parts, "lower", "dresscode")
    assert torch.allclose(torch.unique(g.garment_input[3]), torch.tensor([0, 4 / 6, 5 / 6, 1.0]))
    assert g.type_value == pytest.approx(2 / 3)


def test_bad_rows_raise():
    image, parsing, dp, kp = _person()
    with pytest.raises(ValueError):
        gi.person_inputs("p1", image[:32], parsing, dp, kp, "upper", "vitonhd")
    with pytest.raises(ValueError):
        gi.person_inputs("p1", image, parsing, dp, kp[:10], "upper", "vitonhd")
    with pytest.raises(ValueError):
        gi.garment_inputs("g", image, parsing, parsing, "hats", "vitonhd")


def test_assembly_generator_input_and_composition_shapes():
    b, h, w = 2, 64, 48
    ident = torch.stack(torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")[::-1])
    flow = ident[None].repeat(3 * b, 1, 1, 1)
    seg = torch.zeros(b, 7, h, w)
    seg[:, 2] = 1                                   # everything "torso"
    garment = torch.rand(b, 3, h, w)
    pm = torch.zeros(b, 3, 1, h, w)
    pm[:, 1] = 1
    asm = gi.assemble(flow, seg, garment, pm, torch.zeros(b, 1, h, w), [(1, 2, 3)] * b, [(4, 5, 6)] * b)
    assert asm.cloth.shape == (b, 3, h, w) and asm.label.shape == (b, h, w)
    assert (asm.label == 2).float().mean() > 0.9
    x, gmask = gi.generator_input(torch.zeros(b, 3, h, w), asm.cloth, asm.label, torch.zeros(b, 3),
                                  torch.zeros(b, 25, h, w), [(1, 2, 3)] * b, [(4, 5, 6)] * b)
    assert x.shape == (b, 36, h, w) and gmask.shape == (b, 1, h, w)
    out = gi.compose(torch.zeros(b, 4, h, w), asm.cloth, gmask)
    assert out.shape == (b, 3, h, w) and torch.isfinite(out).all()


@pytest.fixture(scope="module")
def synthetic_rows(tmp_path_factory):
    import csv
    import json
    from pathlib import Path

    from PIL import Image

    from pipelines.synthetic import make_catalogue

    root = Path(tmp_path_factory.mktemp("syn"))
    make_catalogue(root, n_garments=9, n_persons=3, height=128, width=96, seed=0)
    load = lambda p, m: np.asarray(Image.open(root / p).convert(m))  # noqa: E731
    garments = {r["garment_id"]: (r["category"], load(r["image"], "RGB"), load(r["mask"], "L"), load(r["parts"], "L"))
                for r in csv.DictReader((root / "garments.csv").open())}
    persons = {r["person_id"]: (load(r["image"], "RGB"), load(r["parsing"], "L"), load(r["densepose"], "L"),
                                np.asarray(json.loads((root / r["keypoints"]).read_text())["people"][0]
                                           ["pose_keypoints_2d"], np.float32))
               for r in csv.DictReader((root / "persons.csv").open())}
    return persons, garments


@pytest.mark.parametrize("variant,category", [("vitonhd", "upper"), ("dresscode", "lower")])
def test_pair_forward_matches_the_core_pipeline(synthetic_rows, variant, category):
    """The render worker's batched path and gpvton_core.inference.TryOnPipeline give the same try-on."""
    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.inference import TryOnPipeline
    from gpvton_core.warp import LFGPWarp

    persons, garments = synthetic_rows
    torch.manual_seed(0)
    warp, gen = LFGPWarp(variant, 0.0625).eval(), TryOnGenerator(0.0625).eval()
    P = [gi.person_inputs(pid, *arrs, category, variant) for pid, arrs in sorted(persons.items())[:1]]
    G = [gi.garment_inputs(gid, *arrs[1:], category, variant)
         for gid, arrs in sorted(garments.items()) if arrs[0] == category][:2]
    pairs = [(i, j) for i in range(len(P)) for j in range(len(G))]
    Ps = gi.stack_persons([P[i] for i, _ in pairs])
    Gs = gi.stack_garments([G[j] for _, j in pairs])
    pipe = TryOnPipeline(warp, gen, resolution=(128, 96))
    gb = pipe.encode_garments(gi.core_garment_inputs(G))
    pb = pipe.encode_persons(gi.core_person_inputs(P))
    # same network inputs: the person condition exactly, the garment features exactly
    assert torch.equal(Ps["cond"], gi.core_person_inputs([P[i] for i, _ in pairs]).cond())
    tm = Gs["type_value"].view(-1, 1, 1, 1).expand(-1, 1, 128, 96) if variant == "dresscode" else None
    with torch.inference_mode():
        gf_ours = warp.encode_garment(Gs["garment_input"], tm)
    gsel, psel = [j for _, j in pairs], [i for i, _ in pairs]
    for a, b in zip(gf_ours.pyramid, gb.features.select(gsel).pyramid):
        assert torch.equal(a, b)
    # same decode → same assembly, generator input and composition
    ours = gi.pair_forward(warp, gen, gb.features.select(gsel), pb.features.select(psel), Ps, Gs, variant, category)
    core = pipe.run_pairs(gb, pb, gsel, psel, batch_size=2)
    assert torch.equal(ours["seg"], core.seg[:, 0])
    assert torch.equal(ours["label"], core.warped_label[:, 0])
    # the uint8 hand-over may flip a value at a rounding boundary: at most one level, on a few pixels
    for a, b in ((ours["cloth"], core.warped_cloth), (ours["tryon"], core.tryon)):
        d = (a - b).abs()
        assert float(d.max()) <= 1 / 127.5 + 1e-4 and float((d > 1e-4).float().mean()) < 1e-3
