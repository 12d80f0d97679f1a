"""Per-pair scores: definitions on hand-made tensors, thresholds → flags."""

from __future__ import annotations

import math

import torch

from gpvton_core.scores import (DEFAULT_THRESHOLDS, Threshold, compute_scores, judge, judge_batch,
                                masked_mean, parse_miou, ssim_map, warp_miou)


def _masks(h=32, w=24):
    left = torch.zeros(h, w)
    left[:, :8] = 1
    mid = torch.zeros(h, w)
    mid[:, 8:16] = 1
    right = torch.zeros(h, w)
    right[:, 16:] = 1
    return torch.stack((left, mid, right))


def test_warp_miou_agreement_and_disagreement():
    parts = _masks()[None]                       # 1×3×H×W
    seg = torch.zeros(1, 32, 24, dtype=torch.long)
    seg[0, :, :8], seg[0, :, 8:16], seg[0, :, 16:] = 1, 2, 3
    classes = torch.tensor([[1, 2, 3]])
    keep = torch.zeros(1, 1, 32, 24)
    assert float(warp_miou(parts, seg, classes, keep)) == 1.0
    swapped = parts[:, [2, 1, 0]]                # left and right flows swapped: only the middle agrees
    assert abs(float(warp_miou(swapped, seg, classes, keep)) - 1 / 3) < 1e-6
    # the preserve region is ignored on both sides
    pres = torch.zeros(1, 1, 32, 24)
    pres[..., :8] = 1
    pres[..., 16:] = 1                                        # only the middle is outside the preserve
    assert float(warp_miou(swapped, seg, classes, pres)) == 1.0  # undefined parts are skipped
    # nothing anywhere → NaN
    assert math.isnan(float(warp_miou(torch.zeros_like(parts), torch.zeros_like(seg), classes, keep)))


def test_preserve_ssim_is_ssim_averaged_over_the_mask():
    torch.manual_seed(0)
    photo = torch.rand(2, 3, 32, 24) * 2 - 1
    tryon = photo.clone()
    tryon[:, :, :, 12:] = torch.rand(2, 3, 32, 12) * 2 - 1     # right half changed
    s, smap = ssim_map(tryon, photo)
    assert smap.shape == (2, 32, 24)
    left = torch.zeros(2, 1, 32, 24)
    left[..., :6] = 1                                          # far from the change
    assert float(masked_mean(smap, left).min()) > 0.99
    right = 1 - left
    right[..., :14] = 0
    assert float(masked_mean(smap, right).max()) < 0.5
    assert math.isnan(float(masked_mean(smap, torch.zeros(2, 1, 32, 24))[0]))


def test_parse_miou_over_present_classes():
    a = torch.zeros(1, 8, 8, dtype=torch.long)
    a[0, :4] = 1
    b = a.clone()
    assert float(parse_miou(a, b)) == 1.0
    b[0, :2] = 2                                               # half of class 1 relabelled 2
    assert abs(float(parse_miou(a, b)) - 0.25) < 1e-6          # IoU(1)=0.5, IoU(2)=0


def test_compute_scores_paired_only_fields_and_flags():
    torch.manual_seed(0)
    b, h, w = 2, 32, 24
    photo = torch.rand(b, 3, h, w) * 2 - 1
    parts = _masks(h, w)[None].repeat(b, 1, 1, 1)
    seg = torch.zeros(b, h, w, dtype=torch.long)
    seg[:, :, :8], seg[:, :, 8:16], seg[:, :, 16:] = 1, 2, 3
    out = compute_scores(tryon=photo, photo=photo, preserve_gen=torch.ones(b, 1, h, w), part_warped=parts,
                         seg=seg, classes=torch.tensor([[1, 2, 3]] * b), preserve_warp=torch.zeros(b, 1, h, w),
                         label=seg, targets=seg, paired=torch.tensor([True, False]))
    assert set(out) == {"warp_miou", "preserve_ssim", "ssim", "parse_miou"}
    assert float(out["ssim"][0]) > 0.99 and math.isnan(float(out["ssim"][1]))
    assert float(out["parse_miou"][0]) == 1.0 and math.isnan(float(out["parse_miou"][1]))
    verdicts = judge_batch(out)
    assert [v.flag for v in verdicts] == ["ok", "ok"]


def test_judge_thresholds_and_reasons():
    assert judge({"warp_miou": 0.9, "preserve_ssim": 0.95}).flag == "ok"
    v = judge({"warp_miou": 0.4, "preserve_ssim": 0.95})
    assert v.flag == "warn" and v.reason.startswith("warp_miou=0.400<0.5")
    v = judge({"warp_miou": 0.1, "preserve_ssim": 0.7})
    assert v.flag == "fail" and "warp_miou=0.100<0.25" in v.reason and "preserve_ssim" in v.reason
    assert judge({"warp_miou": float("nan"), "ssim": None}).flag == "ok"
    custom = dict(DEFAULT_THRESHOLDS, warp_miou=Threshold(warn=0.05, fail=0.01))
    assert judge({"warp_miou": 0.1}, custom).flag == "ok"


def test_separable_ssim_equals_the_torchmetrics_definition():
    """The two 1-D Gaussian passes give torchmetrics' SSIM (map and per-image mean)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    g = torch.Generator().manual_seed(3)
    pred = torch.rand(3, 3, 40, 28, generator=g) * 2 - 1
    target = (pred + 0.3 * torch.randn(3, 3, 40, 28, generator=g)).clamp(-1, 1)
    s, m = ssim_map(pred, target)
    ref_s, ref_m = structural_similarity_index_measure((pred + 1) / 2, (target + 1) / 2, data_range=1.0,
                                                       reduction="none", return_full_image=True)
    assert m.shape == (3, 40, 28)
    assert torch.allclose(s, ref_s, atol=1e-5) and torch.allclose(m, ref_m.mean(1), atol=1e-5)
    assert float(ssim_map(pred, pred)[0].min()) > 0.9999       # identical images
