"""The float64 convolution of the parity runs equals torch's, and only the covered convolutions take it."""

import pytest
import torch
import torch.nn.functional as F

from gpvton_core import float64_conv
from gpvton_core.float64_conv import ShiftedFloat64Convolutions, shifted_conv2d


@pytest.mark.parametrize("c_in, c_out, k, padding, bias", [
    (3, 5, 3, (1, 1), True),
    (4, 2, 3, (0, 0), False),
    (2, 3, 5, (2, 1), True),
    (6, 4, (3, 1), (1, 0), True),
])
def test_shifted_conv2d_equals_torch(c_in, c_out, k, padding, bias):
    g = torch.Generator().manual_seed(0)
    kh, kw = (k, k) if isinstance(k, int) else k
    x = torch.randn(2, c_in, 13, 9, generator=g, dtype=torch.float64)
    w = torch.randn(c_out, c_in, kh, kw, generator=g, dtype=torch.float64)
    b = torch.randn(c_out, generator=g, dtype=torch.float64) if bias else None
    got = shifted_conv2d(x, w, b, padding)
    want = F.conv2d(x, w, b, padding=padding)
    assert got.shape == want.shape and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_the_mode_takes_exactly_the_covered_convolutions(monkeypatch):
    calls = []
    real = float64_conv.shifted_conv2d
    monkeypatch.setattr(float64_conv, "shifted_conv2d", lambda *a: calls.append(a[1].shape) or real(*a))
    x = torch.randn(1, 3, 8, 6, dtype=torch.float64)
    covered = torch.nn.Conv2d(3, 4, 3, padding=1).double()
    others = [
        (torch.nn.Conv2d(3, 4, 3, padding=1), x.float()),  # float32
        (torch.nn.Conv2d(3, 4, 3, stride=2, padding=1).double(), x),
        (torch.nn.Conv2d(3, 4, 1).double(), x),  # 1×1: torch is fast
        (torch.nn.Conv2d(3, 3, 3, padding=1, groups=3).double(), x),
        (torch.nn.Conv2d(3, 4, 3, padding="same").double(), x),
    ]
    want = covered(x)
    with torch.inference_mode(), ShiftedFloat64Convolutions():
        got = covered(x)
        for module, inp in others:
            assert torch.equal(module(inp), module(inp))
    assert calls == [covered.weight.shape]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
