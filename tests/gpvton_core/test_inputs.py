"""Shard-row arrays → core PersonInputs / GarmentInputs rows per category and dataset variant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpvton_core import assembly as asm, inputs as gi


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
    row = gi.person_inputs("p1", image, parsing, dp, kp.reshape(-1), "upper", "vitonhd")
    p, targets = row.inputs, row.targets[0]
    assert len(p) == 1 and p.category == ["upper"]
    assert p.image.shape == (1, 3, 64, 48) and p.image.min() >= -1 and p.image.max() <= 1
    cond, pres = p.cond()[0], p.preserve_warp[0]
    assert cond.shape == (51, 64, 48)
    assert set(torch.unique(cond[:50]).tolist()) <= {-1.0, 1.0}
    assert torch.equal(cond[50:51], pres)
    # hair and pants preserved, upper torso / sleeves / neck not (VITON-HD FULL set)
    assert pres[0, 5, 5] == 1 and pres[0, 50, 20] == 1
    assert pres[0, 30, 20] == 0 and pres[0, 30, 6] == 0 and pres[0, 15, 22] == 0
    assert (dp_one := cond[:25].argmax(0))[30, 20] == 2 and dp_one[0, 0] == 0
    assert p.pose[0, 1].max() == 1 and p.pose[0, 0].max() == -1        # keypoint 0 missing → empty channel
    assert torch.isfinite(p.skin).all()
    # person-side targets: left sleeve 1, torso 2, right sleeve 3, neck 6
    assert targets[30, 6] == 1 and targets[30, 20] == 2 and targets[30, 40] == 3 and targets[15, 22] == 6


def test_person_inputs_dresscode_lower_targets_and_preserve():
    image, parsing, dp, kp = _person()
    row = gi.person_inputs("p1", image, parsing, dp, kp, "lower", "dresscode")
    p = row.inputs
    assert p.preserve_warp[0, 0, 30, 20] == 1       # upper torso preserved for a lower garment
    assert p.preserve_warp[0, 0, 50, 20] == 0       # the pants are replaced
    assert row.targets[0, 50, 20] == 4              # left pants → class 4


def test_garment_inputs_label_values_per_variant():
    h, w = 64, 48
    img = np.full((h, w, 3), 200, np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[10:50, 8:40] = 255
    parts = np.zeros((h, w), np.uint8)
    parts[10:50, 8:16], parts[10:50, 16:32], parts[10:50, 32:40] = 3, 2, 1
    g = gi.garment_inputs("g1", img, mask, parts, "upper", "vitonhd")
    assert g.image.shape == (1, 3, h, w) and g.parts.shape == (1, 3, h, w) and g.category == ["upper"]
    # the part label the pipeline feeds the warp (assembly.garment_label)
    label = asm.garment_label(g.parts, "vitonhd", g.category)[0, 0]
    assert torch.allclose(torch.unique(label), torch.tensor([0, 1 / 3, 2 / 3, 1.0]))
    assert g.mask[0, 0, 0, 0] == 0 and (g.image * g.mask)[0, :, 0, 0].abs().sum() == 0   # RGB · mask
    g = gi.garment_inputs("g1", img, mask, parts, "lower", "dresscode")
    label = asm.garment_label(g.parts, "dresscode", g.category)[0, 0]
    assert torch.allclose(torch.unique(label), torch.tensor([0, 4 / 6, 5 / 6, 1.0]))
    assert float(asm.type_map(g.category, (h, w))[0, 0, 0, 0]) == pytest.approx(2 / 3)


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
    stacked = lambda x: x.transpose(0, 1).reshape(3 * b, *x.shape[2:])  # noqa: E731
    pc, ec = asm.class_table("vitonhd", ["upper"] * b)
    cloth, label, parts = asm.assemble_warp(stacked(garment[:, None] * pm), stacked(pm), flow, asm.seg_argmax(seg),
                                            torch.zeros(b, 1, h, w), pc, ec, return_part_masks=True)
    assert cloth.shape == (b, 3, h, w) and label.shape == (b, 1, h, w) and parts.shape == (b, 3, h, w)
    assert (label == 2).float().mean() > 0.9
    x, gmask = asm.generator_input(torch.zeros(b, 3, h, w), torch.ones(b, 1, h, w), cloth, label, torch.zeros(b, 3),
                                   torch.zeros(b, 25, h, w), "vitonhd")
    assert x.shape == (b, 36, h, w) and gmask.shape == (b, 1, h, w)
    out = asm.compose(torch.zeros(b, 4, h, w), cloth, gmask)[0]
    assert out.shape == (b, 3, h, w) and torch.isfinite(out).all()


@pytest.fixture(scope="module")
def synthetic_rows(tmp_path_factory):
    import csv
    import json
    from pathlib import Path

    from PIL import Image

    from pipelines.synthetic.catalogue import make_catalogue

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
def test_rows_feed_the_core_pipeline(synthetic_rows, variant, category):
    """Rows batch with PersonInputs.cat / GarmentInputs.cat and run through TryOnPipeline; the
    outputs carry what the scores need (warped part masks E_k, the applied generator preserve)."""
    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.inference import TryOnPipeline
    from gpvton_core.tryon_batches import GarmentInputs
    from gpvton_core.warp import LFGPWarp

    persons, garments = synthetic_rows
    torch.manual_seed(0)
    warp, gen = LFGPWarp(variant, 0.0625).eval(), TryOnGenerator(0.0625).eval()
    P = [gi.person_inputs(pid, *arrs, category, variant) for pid, arrs in sorted(persons.items())[:1]]
    G = [gi.garment_inputs(gid, *arrs[1:], category, variant)
         for gid, arrs in sorted(garments.items()) if arrs[0] == category][:2]
    pin, targets = gi.PersonRow.cat(P)
    assert targets.shape == (1, 128, 96) and pin.category == [category]
    pipe = TryOnPipeline(warp, gen, resolution=(128, 96))
    gb = pipe.encode_garments(GarmentInputs.cat(G))
    pb = pipe.encode_persons(pin)
    out = pipe.cross(gb, pb, batch_size=2)
    n = len(G)
    assert out.tryon.shape == (n, 3, 128, 96) and torch.isfinite(out.tryon).all()
    assert out.warped_part_masks.shape == (n, 3, 128, 96)
    assert set(torch.unique(out.warped_part_masks).tolist()) <= {0.0, 1.0}
    edge = ((out.warped_label >= 1) & (out.warped_label <= (3 if variant == "vitonhd" else 6))).float()
    expect = pin.preserve_gen.expand(n, -1, -1, -1) * ((1 - edge) if variant == "dresscode" else 1)
    assert torch.equal(out.preserve_gen, expect)
    # the label's garment classes come from the warped part masks chosen by the parsing
    cls = torch.as_tensor(asm.part_classes(variant, category)[0])
    for k in range(3):
        on = out.warped_label[:, 0] == cls[k]
        assert bool((out.warped_part_masks[:, k][on] == 1).all())
    # encoded rows select / cat back to the same batch
    again = type(gb).cat([gb.select([i]) for i in range(len(gb))])
    assert torch.equal(again.clothes, gb.clothes) and again.category == gb.category
    assert torch.equal(pipe.cross(again, type(pb).cat([pb.select([0])]), batch_size=2).tryon, out.tryon)


def _upscale(a: np.ndarray, f: int) -> np.ndarray:
    return np.repeat(np.repeat(a, f, 0), f, 1)


class _Captured(Exception):
    """Raised by a spy once it holds what the test needs (skips the network's forward)."""


@pytest.mark.parametrize("variant,category", [("vitonhd", "upper"), ("dresscode", "lower")])
def test_fp64_pipeline_at_1024_sees_the_official_float32_labels(variant, category):
    """1024×768 rows in a float64 pipeline: the half-resolution warp's part label and type map and
    the generator's arms/neck channel are the official float32 fractions widened
    (conditions.masks), not exact float64 fractions."""
    from gpvton_core.conditions import masks as cm
    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.inference import TryOnPipeline
    from gpvton_core.warp import LFGPWarp

    f, h, w = 16, 1024, 768
    parts = np.zeros((64, 48), np.uint8)
    parts[10:50, 8:16], parts[10:50, 16:32], parts[10:50, 32:40] = 3, 2, 1
    parts = _upscale(parts, f)
    g = gi.garment_inputs("g", np.full((h, w, 3), 200, np.uint8), (parts > 0).astype(np.uint8) * 255, parts,
                          category, variant)
    pipe = TryOnPipeline(LFGPWarp(variant, 1 / 16), TryOnGenerator(1 / 16), resolution=(h, w), precision="fp64")
    seen = {}

    def encode_spy(x, tm=None):
        seen["label"], seen["type"] = x[:, 3:4].clone(), tm
        raise _Captured

    pipe.warp.encode_garment = encode_spy
    with pytest.raises(_Captured):
        pipe.encode_garments(g)
    assert seen["label"].dtype == torch.float64 and seen["label"].shape[-2:] == (h // 2, w // 2)
    want = torch.from_numpy(cm.garment_label_input(parts, variant, category, dtype=np.float64))
    assert torch.equal(seen["label"][0, 0], want[::2, ::2])        # ×0.5 nearest of the official label
    if variant == "dresscode":
        assert torch.equal(seen["type"], torch.full_like(seen["type"], cm.garment_type_value(category)))
    # generator channel 7 from the assembled label map (arms / neck classes → 1/3, 2/3, 1)
    extras = 4 if variant == "vitonhd" else 7
    lab = torch.zeros(1, 1, h, w, dtype=torch.float64)
    lab[..., :10, :] = extras
    lab[..., 10:20, :] = extras + 1
    lab[..., 20:30, :] = extras + 2
    lab[..., 30:40, :] = 1
    z = torch.zeros(1, 3, h, w, dtype=torch.float64)
    x, _ = asm.generator_input(z, torch.ones(1, 1, h, w, dtype=torch.float64), z, lab, torch.zeros(1, 3),
                               torch.zeros(1, 25, h, w), variant)
    idx = (lab[0, 0] - extras + 1).clamp(0, 3).where(lab[0, 0] >= extras, torch.zeros(()))
    assert torch.equal(x[0, 7], torch.from_numpy(cm.label_fraction(idx.numpy(), 3, np.float64)))
