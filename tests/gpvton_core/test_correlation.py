import pytest
import torch

from gpvton_core.correlation import correlation, correlation_reference

pytestmark = pytest.mark.usefixtures("single_thread")


def test_matches_literal_formula_float64():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(3, 10, 9, 7, generator=g, dtype=torch.float64)
    s = torch.randn(3, 10, 9, 7, generator=g, dtype=torch.float64)
    out = correlation(f, s)
    assert out.shape == (3, 49, 9, 7)
    assert torch.allclose(out, correlation_reference(f, s), atol=1e-14, rtol=0)


def test_displacement_order_x_fastest_and_zero_padding():
    # person features = garment features shifted by (dy, dx) = (1, -2): the peak must be at
    # k = 7*(dy+3) + (dx+3), and values that fall outside are zero (zero padding)
    f = torch.zeros(1, 4, 8, 8, dtype=torch.float64)
    f[0, :, 4, 4] = 2.0
    s = torch.zeros_like(f)
    s[0, :, 5, 2] = 3.0  # position (y+1, x-2)
    out = correlation(f, s)
    k = 7 * (1 + 3) + (-2 + 3)
    assert out[0, k, 4, 4] == pytest.approx(6.0)  # mean over 4 channels of 2*3
    out[0, k, 4, 4] = 0
    assert out.abs().max() == 0


def test_divides_by_actual_channel_count():
    f = torch.ones(1, 5, 6, 6)
    out = correlation(f, f)
    assert torch.allclose(out[0, 24], torch.ones(6, 6))  # zero displacement → mean of 1·1


def test_bfloat16_close_to_float32():
    g = torch.Generator().manual_seed(1)
    f, s = torch.randn(2, 2, 64, 16, 12, generator=g)
    ref = correlation(f, s)
    out = correlation(f.bfloat16(), s.bfloat16()).float()
    assert (out - ref).abs().max() < 0.05


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        correlation(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError):  # 3 rows cannot be split over 2 person rows
        correlation(torch.zeros(3, 2, 4, 4), torch.zeros(2, 2, 4, 4))


@pytest.mark.parametrize("n,b,w", [(6, 2, 12), (6, 1, 7), (3, 3, 17)])
def test_parts_share_the_person_rows(n, b, w):
    """Row i of the first input meets row i mod B of the second (parts stacked part-major)."""
    g = torch.Generator().manual_seed(2)
    f = torch.randn(n, 6, 5, w, generator=g, dtype=torch.float64)
    s = torch.randn(b, 6, 5, w, generator=g, dtype=torch.float64)
    out = correlation(f, s)
    assert torch.allclose(out, correlation_reference(f, s.repeat(n // b, 1, 1, 1)), atol=1e-14, rtol=0)
    assert out.is_contiguous(memory_format=torch.channels_last)  # what the next conv wants


def test_reduced_precision_returns_float32():
    f = torch.randn(2, 8, 6, 6).bfloat16()
    assert correlation(f, f).dtype == torch.float32  # the normalisation by C happens in float32
