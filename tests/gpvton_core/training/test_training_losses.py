"""Loss building blocks, VGG-19 definition and loading, the discriminator, DGT rules and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpvton_core.training import dgt, losses as L
from gpvton_core.training.discriminator import SpectralDiscriminator
from gpvton_core.training.vgg import VGG19Features, VGGLoss


def test_vgg_keys_match_torchvision_and_load(tmp_path):
    v = VGG19Features()
    keys = list(v.state_dict())
    convs = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28]
    assert keys == [f"features.{i}.{p}" for i in convs for p in ("weight", "bias")]
    # a torchvision-style file: all 16 convs plus the classifier, loaded with weights_only=True
    torch.manual_seed(0)
    full = {**{k: torch.randn_like(t) for k, t in v.state_dict().items()},
            "features.30.weight": torch.randn(512, 512, 3, 3), "features.30.bias": torch.randn(512),
            "classifier.0.weight": torch.randn(8, 8), "classifier.0.bias": torch.randn(8)}
    path = tmp_path / "vgg19-test.pth"
    torch.save(full, path)
    v2 = VGG19Features().load_weights(path)
    assert torch.equal(v2.features[28].weight, full["features.28.weight"])
    assert all(not p.requires_grad for p in v2.parameters())
    feats = v2(torch.zeros(1, 3, 64, 48))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in feats] == [48, 24, 12, 6, 3]
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert float(VGGLoss(v2)(x, x)) == 0.0
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError):
        VGG19Features().load_weights(tmp_path / "bad.pth")


def test_discriminator_shapes():
    d = SpectralDiscriminator(59, width=0.125)
    y = d(torch.randn(2, 59, 128, 96))
    assert y.shape == (2, 1, 14, 10)  # 3 stride-2 convs then two 4×4 stride-1 convs (padding 1)
    names = [n for n, _ in d.named_parameters()]
    assert any(n.endswith("weight_orig") for n in names)  # spectral norm


def test_second_order_middle_weight_and_pmask():
    b = 1
    dx = torch.zeros(3 * b, 4, 5, 5)
    dy = torch.zeros(3 * b, 4, 5, 5)
    pm = torch.ones(3 * b, 1, 1, 1)
    base = float(L.second_order(dx, dy, pm))
    dx[1] = 1.0  # middle part
    mid = float(L.second_order(dx, dy, pm)) - base
    dx.zero_()
    dx[0] = 1.0  # left part
    left = float(L.second_order(dx, dy, pm)) - base
    assert mid == pytest.approx(40 * left, rel=1e-4)
    pm[0] = 0  # an absent part adds nothing
    assert float(L.second_order(dx, dy, pm)) == pytest.approx(float(L.second_order(dx * 0, dy, pm)))


def test_part_presence_order():
    parts = torch.zeros(2, 3, 1, 4, 4)
    parts[0, 0, 0, 0, 0] = 1          # sample 0 has a left part only
    parts[1, 1:, 0, 1, 1] = 1         # sample 1 has middle and right
    assert L.part_presence(parts).flatten().tolist() == [1, 0, 0, 1, 0, 1]


def test_lsgan():
    p = torch.full((2, 1, 3, 3), 0.5)
    assert float(L.lsgan(p, True)) == pytest.approx(0.25)
    assert float(L.lsgan(p, False)) == pytest.approx(0.25)


def test_choose_region_thresholds():
    rng = np.random.default_rng(0)
    n = 4000

    def frac_short(r, variant="vitonhd"):
        return np.mean([dgt.choose_region(r, variant, "upper", rng) == "short" for _ in range(n)])

    assert frac_short(0.5) == 0 and frac_short(0.899) == 0
    assert frac_short(0.92) == pytest.approx(0.5, abs=0.05)
    assert frac_short(0.97) == pytest.approx(0.9, abs=0.03)
    assert frac_short(0.97, "dresscode") == pytest.approx(0.5, abs=0.05)
    assert frac_short(1.2, "dresscode") == pytest.approx(0.9, abs=0.03)
    assert dgt.choose_region(None, "vitonhd", "upper", rng) == "full"
    assert dgt.choose_region(float("nan"), "vitonhd", "upper", rng) == "full"
    assert dgt.choose_region(1.5, "vitonhd", "upper", rng, dynamic=False) == "full"
    assert dgt.choose_region(1.5, "dresscode", "lower", rng) == "fixed"
    assert not dgt.active(70, 70) and dgt.active(71, 70)


def _toy_batch():
    B, H, W = 1, 8, 8
    z = lambda: torch.zeros(B, 1, H, W)  # noqa: E731
    b = {k: z() for k in ("region_full", "region_short", "palm", "arms", "legs_shoes", "pants_left", "pants_right")}
    b["region_full"][..., 0, :] = 1; b["region_short"][..., 1, :] = 1
    b["palm"][..., 2, 0] = 1; b["arms"][..., 3, :] = 1
    pp = torch.zeros(B, 3, 1, H, W)
    pp[:, 0, :, 4, 6:] = 1; pp[:, 1, :, 4, 2:6] = 1; pp[:, 2, :, 4, :2] = 1
    b["person_parts"] = pp
    b["category"] = ["upper"]
    b["skirt_dominant"] = torch.zeros(B)
    return b


def test_loss_and_truncation_masks():
    b = _toy_batch()
    pm1, pm2 = dgt.loss_masks(b, ["full"], "vitonhd")
    assert pm1[0, 0, 0].all() and pm1[0, 0, 2, 0] == 1 and not pm1[0, 0, 3].any()
    assert pm2[0, 0, 3].all() and pm2[0, 0, 2, 0] == 0
    pm1s, _ = dgt.loss_masks(b, ["short"], "vitonhd")
    assert pm1s[0, 0, 1].all() and not pm1s[0, 0, 0].any()
    tp, tf = dgt.truncation_masks(b, pm1, pm2, "vitonhd")
    assert tp.shape == (3, 1, 8, 8) and torch.equal(tf, pm2)
    # left / right sleeves may go over the torso; the torso over both sleeves
    assert tp[0, 0, 4, 2:6].all() and not tp[0, 0, 4, 6:].any()
    assert tp[1, 0, 4, 6:].all() and tp[1, 0, 4, :2].all() and not tp[1, 0, 4, 2:6].any()
    small = dgt.at_level(tp, (4, 4))
    assert set(small.unique().tolist()) <= {0.0, 1.0}
