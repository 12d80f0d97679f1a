"""SetMetrics: known answers for SSIM, LPIPS, FID, KID and mIoU; SSIM against an independent
reference on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from gpvton_core.metrics.inception import FIDInceptionV3
from gpvton_core.metrics.lpips import LPIPS
from gpvton_core.metrics.set_metrics import SetMetrics, SharedFeatures, parse_metric_list, ssim_images


class TinyExtractor(nn.Module):
    """A small random feature extractor (what FID/KID see is any module with num_features)."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.Tanh(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten())
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.net(x.float())


def _reinit(net: nn.Module) -> nn.Module:
    """He-initialise a random network so its features are O(1) (default init shrinks them)."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.data = torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5
    return net


def test_torchmetrics_fid_and_kid_take_the_inception_module():
    """FID/KID run our 2048-d Inception (no dummy pass needed: it declares num_features).

    The 2048×2048 FID eigen-decomposition takes a minute on a busy 2-core machine, so the
    identical-sets answer (FID ≈ 0) is checked on a small extractor below; here the statistics
    that FID and KID accumulate through the Inception must agree for identical sets."""
    net = _reinit(FIDInceptionV3())
    torch.manual_seed(1)
    a = torch.rand(2, 3, 48, 32)
    m = SetMetrics(["fid", "kid"], inception=net, kid_subset_size=2, kid_subsets=2)
    m.update_real(a)
    m.update_fake(a.clone())
    fid = m._fid
    assert fid.real_features_sum.shape == (2048,) and int(fid.real_features_num_samples) == 2
    torch.testing.assert_close(fid.real_features_sum, fid.fake_features_sum)
    torch.testing.assert_close(fid.real_features_cov_sum, fid.fake_features_cov_sum)
    mean = fid.real_features_sum / 2
    spread = float(torch.diagonal(fid.real_features_cov_sum).sum() / 2 - (mean ** 2).sum())
    assert spread > 1e-3  # O(1) features: the agreement above means something
    torch.testing.assert_close(torch.cat(m._kid.real_features), fid.real_features_sum.new_tensor(
        torch.cat(m._kid.fake_features).double()).float(), check_dtype=False)
    kid = m.compute()["kid"]
    assert kid["subset_size"] == 2 and abs(kid["value"]) < 10 * spread


def test_fid_kid_share_one_feature_pass_and_rank_sets():
    ext = TinyExtractor()
    torch.manual_seed(2)
    real = torch.rand(12, 3, 32, 24)
    close = (real + 0.02 * torch.randn_like(real)).clamp(0, 1)
    far = torch.rand(12, 3, 32, 24) ** 3
    results = []
    for fake in (real, close, far):
        m = SetMetrics(["fid", "kid"], inception=ext, kid_subset_size=6, kid_subsets=10, seed=3)
        ext.calls = 0
        m.update_real(real)
        m.update_fake(fake)
        assert ext.calls == 2  # FID and KID fed each batch through one forward
        results.append(m.compute())
    fids = [r["fid"]["value"] for r in results]
    kids = [r["kid"]["value"] for r in results]
    assert abs(fids[0]) < 1e-6 and fids[0] < fids[1] < fids[2]
    assert abs(kids[0]) < 1e-4 and kids[1] < kids[2]
    assert results[2]["kid"]["subset_size"] == 6
    # seeded subsets: the same numbers twice
    m = SetMetrics(["kid"], inception=ext, kid_subset_size=6, kid_subsets=10, seed=3)
    m.update_real(real)
    m.update_fake(far)
    assert m.compute()["kid"]["value"] == kids[2]


def test_too_few_images_give_a_note_not_a_crash():
    m = SetMetrics(["fid", "kid", "ssim", "miou"], inception=TinyExtractor())
    m.update_real(torch.rand(1, 3, 16, 16))
    out = m.compute()
    assert out["fid"]["value"] is None and "at least 2" in out["fid"]["note"]
    assert out["kid"]["value"] is None
    assert out["ssim"]["value"] is None and out["miou"]["value"] is None


def test_ssim_and_lpips_of_identical_images():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 64, 64)
    m = SetMetrics(["ssim", "lpips"], lpips=LPIPS("alex"))
    m.update_pairs(x, x.clone())
    out = m.compute()
    assert out["ssim"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert out["lpips"]["value"] == pytest.approx(0.0, abs=1e-7)
    assert out["ssim"]["n"] == 3 and out["lpips"]["net"] == "alex"


def test_try_on_is_resized_to_the_reference():
    torch.manual_seed(0)
    real = torch.rand(1, 3, 64, 48)
    fake = torch.nn.functional.interpolate(real, size=(32, 24), mode="bilinear", antialias=True)
    m = SetMetrics(["ssim"])
    m.update_pairs(fake, real)
    assert 0.0 < m.compute()["ssim"]["value"] < 1.0


def test_miou_known_answer():
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]])
    pred = torch.tensor([[0, 0, 1, 0], [0, 0, 1, 1], [2, 2, 2, 255]])
    m = SetMetrics(["miou"], num_classes=29)
    m.update_labels(pred, target)
    out = m.compute()["miou"]
    # class 0: I=4, U=5; class 1: I=3, U=4; class 2: I=3, U=3 (255 >= num_classes is ignored)
    assert out["per_class"] == pytest.approx({"0": 0.8, "1": 0.75, "2": 1.0})
    assert out["value"] == pytest.approx((0.8 + 0.75 + 1.0) / 3)
    # summed over the set, not averaged per image
    m.update_labels(torch.zeros(1, 3, 4, dtype=torch.long), torch.zeros(1, 3, 4, dtype=torch.long))
    assert m.compute()["miou"]["per_class"]["0"] == pytest.approx(16 / 17)


def test_groups_split_the_same_values():
    torch.manual_seed(0)
    real = torch.rand(4, 3, 32, 32)
    fake = (real + 0.1 * torch.randn_like(real)).clamp(0, 1)
    m = SetMetrics(["ssim", "miou"], num_classes=4, miou_exclude=(0,))
    m.update_pairs(fake, real, groups=["a", "b", "a", "a"])
    per = ssim_images(fake, real)
    lab = torch.tensor([[0, 1], [2, 3]])
    m.update_labels(lab, lab, group="a")
    m.update_labels(torch.zeros(2, 2, dtype=torch.long), lab, group="b")
    out = m.compute()
    assert out["by_group"]["a"]["ssim"]["value"] == pytest.approx(float(per[[0, 2, 3]].mean()))
    assert out["by_group"]["b"]["ssim"] == {"value": pytest.approx(float(per[1])), "n": 1}
    assert out["ssim"]["value"] == pytest.approx(float(per.mean()))
    assert out["by_group"]["a"]["miou"]["value"] == 1.0
    assert out["by_group"]["b"]["miou"]["value"] == 0.0  # background excluded from the mean
    assert out["miou"]["value"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="group names"):
        m.update_pairs(fake, real, groups=["a"])


def test_parse_metric_list():
    assert parse_metric_list("ssim, fid,ssim") == ("ssim", "fid")
    with pytest.raises(ValueError, match="psnr"):
        parse_metric_list("ssim,psnr")


def test_shared_features_recomputes_for_new_tensors():
    ext = TinyExtractor()
    shared = SharedFeatures(ext)
    x = torch.rand(2, 3, 16, 16)
    shared(x), shared(x)
    assert ext.calls == 1
    x.add_(0.1)  # modified in place: new version, recompute
    shared(x)
    assert ext.calls == 2


# --- SSIM against an independent reference on real photos ---------------------------------------

def _gaussian_ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 SSIM in float64 NumPy: 11-tap Gaussian (σ 1.5) applied separably over the
    valid region, per channel, averaged over channels and pixels."""
    r = np.arange(11) - 5
    g = np.exp(-(r ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()

    def blur(x: np.ndarray) -> np.ndarray:  # x: (H, W); valid 2-D correlation with g ⊗ g
        win = np.lib.stride_tricks.sliding_window_view(x, 11, axis=0) @ g
        return np.lib.stride_tricks.sliding_window_view(win, 11, axis=1) @ g

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    maps = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        mx, my = blur(x), blur(y)
        sxx, syy, sxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
        maps.append(((2 * mx * my + c1) * (2 * sxy + c2))
                    / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2)))
    return float(np.mean(maps))


def test_ssim_matches_an_independent_reference_on_real_photos(vitonhd_root):
    paths = sorted((vitonhd_root / "test" / "image").glob("*.jpg"))[:2]
    assert len(paths) == 2
    # 256×192 keeps the pure-NumPy reference quick; the images stay real photos with flat studio
    # backgrounds (where float32 SSIM drifts by ~1e-4).
    imgs = [np.asarray(Image.open(p).convert("RGB").resize((192, 256), Image.BILINEAR),
                       dtype=np.float64) / 255.0 for p in paths]
    rng = np.random.default_rng(0)
    noisy = np.clip(imgs[0] + rng.normal(0, 0.05, imgs[0].shape), 0, 1)
    cases = [(imgs[0], imgs[1]), (imgs[0], noisy)]
    for a, b in cases:
        ref = _gaussian_ssim_reference(a, b)
        ta = torch.from_numpy(a).permute(2, 0, 1)[None].float()
        tb = torch.from_numpy(b).permute(2, 0, 1)[None].float()
        ours = float(ssim_images(ta, tb)[0])
        m = SetMetrics(["ssim"])
        m.update_pairs(tb, ta)
        assert ours == pytest.approx(ref, abs=1e-4)
        assert m.compute()["ssim"]["value"] == pytest.approx(ref, abs=1e-4)
        assert 0.05 < ref < 0.99  # a non-trivial comparison
