"""Inception (FID) and LPIPS networks: key layout, loading by key, clear errors."""

from __future__ import annotations

import pytest
import torch

from gpvton_core.metrics.inception import (FID_WEIGHTS_NAME, FIDInceptionV3, WeightFileError,
                                           load_fid_inception)
from gpvton_core.metrics.lpips import LPIPS, load_lpips

# Keys and shapes of the published pt_inception-2015-12-05 state dict (pytorch-fid layout).
INCEPTION_KEYS = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_4a_3x3.bn.running_var": (192,),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.bn.running_mean": (192,),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


def _fake_state(module_state: dict) -> dict:
    g = torch.Generator().manual_seed(1)
    out = {}
    for k, v in module_state.items():
        if k.endswith("num_batches_tracked"):
            continue  # the published file predates this buffer
        t = torch.rand(v.shape, generator=g, dtype=torch.float32)
        out[k] = t + 0.5 if k.endswith("running_var") else t * 0.1
    return out


def test_inception_key_layout():
    sd = FIDInceptionV3().state_dict()
    for key, shape in INCEPTION_KEYS.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.startswith("AuxLogits") for k in sd)
    n_params = sum(p.numel() for p in FIDInceptionV3().parameters())
    assert n_params == 23_850_960  # torchvision Inception-v3 without aux head, 1008 classes


def test_inception_features_and_input_types():
    torch.manual_seed(0)
    net = FIDInceptionV3()
    imgs = torch.randint(0, 256, (2, 3, 64, 48), dtype=torch.uint8)
    x_uint8 = FIDInceptionV3.preprocess(imgs)
    x_float = FIDInceptionV3.preprocess(imgs.float() / 255.0)
    torch.testing.assert_close(x_uint8, x_float)
    assert x_uint8.shape == (2, 3, 299, 299) and x_uint8.min() >= -1 and x_uint8.max() <= 1
    # the documented resize: bilinear, align_corners=False, no antialias, then [-1, 1]
    ref = torch.nn.functional.interpolate(imgs.float() / 255, size=(299, 299), mode="bilinear",
                                          align_corners=False) * 2 - 1
    torch.testing.assert_close(x_uint8, ref)
    # (the full forward pass, (N,2048) features, runs in test_set_metrics' FID/KID test: at
    # 299×299 it is the slowest thing here on a busy 2-core machine, so it runs once)
    net.train()
    assert not net.training  # BatchNorm never leaves eval mode


def test_inception_loads_weights_by_key(tmp_path):
    state = _fake_state(FIDInceptionV3().state_dict())
    path = tmp_path / FID_WEIGHTS_NAME
    torch.save(state, path)
    loaded = load_fid_inception(path).state_dict()
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k


def test_inception_wrong_or_missing_weights(tmp_path):
    with pytest.raises(WeightFileError, match="not found"):
        load_fid_inception(tmp_path / "absent.pth")
    state = _fake_state(FIDInceptionV3().state_dict())
    state.pop("Mixed_7c.branch1x1.conv.weight")
    state["AuxLogits.fc.weight"] = torch.zeros(3)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(WeightFileError, match="Mixed_7c.branch1x1.conv.weight") as err:
        load_fid_inception(bad)
    assert "AuxLogits.fc.weight" in str(err.value)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightFileError, match="cannot read"):
        load_fid_inception(junk)


@pytest.mark.parametrize("net,trunk_keys,lin_channels", [
    ("alex", {"features.0.weight": (64, 3, 11, 11), "features.10.weight": (256, 256, 3, 3)},
     (64, 192, 384, 256, 256)),
    ("vgg", {"features.0.weight": (64, 3, 3, 3), "features.28.weight": (512, 512, 3, 3)},
     (64, 128, 256, 512, 512)),
])
def test_lpips_key_layout(net, trunk_keys, lin_channels):
    m = LPIPS(net)
    trunk, lin = m.trunk_state_dict(), m.lin_state_dict()
    for k, shape in trunk_keys.items():
        assert tuple(trunk[k].shape) == shape
    assert [tuple(lin[f"lin{i}.model.1.weight"].shape) for i in range(5)] == \
        [(1, c, 1, 1) for c in lin_channels]


def test_lpips_mechanics():
    torch.manual_seed(0)
    m = LPIPS("alex")
    for lin in m.lins:  # calibrated weights are non-negative
        lin.model[1].weight.data.abs_()
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    assert torch.all(m(a, a, normalize=True) == 0)
    d_ab, d_ba = m(a, b, normalize=True), m(b, a, normalize=True)
    torch.testing.assert_close(d_ab, d_ba)
    assert torch.all(d_ab > 0)
    torch.testing.assert_close(m(2 * a - 1, 2 * b - 1), d_ab)


def test_lpips_loads_directory_combined_and_package_layout(tmp_path):
    ref = LPIPS("alex")
    trunk = {k: torch.randn(v.shape) for k, v in ref.trunk_state_dict().items()}
    trunk["classifier.1.weight"] = torch.zeros(4096, 9216)  # torchvision files carry the classifier
    lin = {k: torch.rand(v.shape) for k, v in ref.lin_state_dict().items()}
    torch.save(trunk, tmp_path / "alexnet-owt-7be5be79.pth")
    torch.save(lin, tmp_path / "alex.pth")
    m = load_lpips(tmp_path, "alex")
    torch.testing.assert_close(m.features[3].weight, trunk["features.3.weight"])
    torch.testing.assert_close(m.lins[4].model[1].weight, lin["lin4.model.1.weight"])

    combined = tmp_path / "combined.pth"
    torch.save({**trunk, **lin}, combined)
    m2 = load_lpips(combined, "alex")
    torch.testing.assert_close(m2.features[10].bias, trunk["features.10.bias"])

    # the lpips package's own full state dict: trunk under net.sliceK.N.*
    slice_of = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    pkg = {f"net.slice{slice_of[int(k.split('.')[1])]}.{k.split('.', 1)[1]}": v
           for k, v in trunk.items() if k.startswith("features.")}
    pkg.update(lin)
    pkg_file = tmp_path / "lpips_full.pth"
    torch.save(pkg, pkg_file)
    m3 = load_lpips(pkg_file, "alex")
    torch.testing.assert_close(m3.features[6].weight, trunk["features.6.weight"])


def test_lpips_missing_weights_are_clear(tmp_path):
    with pytest.raises(WeightFileError, match="alexnet-owt-7be5be79.pth"):
        load_lpips(tmp_path, "alex")  # empty directory: names the expected files
    with pytest.raises(WeightFileError, match="not found"):
        load_lpips(tmp_path / "nope.pth", "vgg")
    only_lin = tmp_path / "lin_only.pth"
    torch.save(LPIPS("vgg").lin_state_dict(), only_lin)
    with pytest.raises(WeightFileError, match="trunk: 26 missing keys"):
        load_lpips(only_lin, "vgg")
