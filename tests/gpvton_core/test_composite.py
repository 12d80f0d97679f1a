"""Paste-back composition and placing a try-on back into the original photo."""

import numpy as np
import torch

from gpvton_core import composite as cp


def _scene(h=64, w=48):
    g = torch.Generator().manual_seed(0)
    photo = torch.rand(1, 3, h, w, generator=g)
    tryon = (photo + 0.2 * torch.randn(1, 3, h, w, generator=g)).clamp(0, 1)   # a softer redraw
    preserve = torch.zeros(1, 1, h, w)
    preserve[..., :16, :] = 1                      # head
    background = torch.zeros(1, 1, h, w)
    background[..., :, :6] = 1                     # a strip of background
    garment = torch.zeros(1, 1, h, w)
    garment[..., 20:50, 10:40] = 1
    return photo, tryon, preserve, background, garment


def test_paste_back_is_the_photo_outside_the_band_and_the_tryon_outside_the_region():
    photo, tryon, preserve, background, garment = _scene()
    keep = cp.keep_region(preserve, background, garment, clearance=2)
    assert keep[..., 22:48, 12:38].sum() == 0            # never over the new garment
    band = cp.band_width(64)
    alpha = cp.feather(keep, band)
    out = cp.paste_back(tryon, photo, alpha)
    deep = cp._erode(keep, 2 * band + 1) > 0.5            # farther than the band from the boundary
    assert deep.any()
    assert torch.equal(out[deep.expand_as(out)], photo[deep.expand_as(photo)])
    outside = keep < 0.5
    assert torch.equal(out[outside.expand_as(out)], tryon[outside.expand_as(tryon)])
    ramp = (alpha > 0) & (alpha < 1)
    assert ramp.any() and bool((ramp <= (keep > 0.5)).all())   # the ramp lies inside the region


def test_feathered_seam_is_no_worse_than_a_hard_one():
    _, _, preserve, background, garment = _scene()
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 48), indexing="ij")
    photo = torch.stack([yy, xx, 0.5 * (yy + xx)])[None] * 0.6
    tryon = photo + 0.3                                      # the generator shifted the colours
    keep = cp.keep_region(preserve, background, garment, clearance=2)
    hard = cp.paste_back(tryon, photo, keep)
    soft = cp.paste_back(tryon, photo, cp.feather(keep, 4))
    assert cp.seam_energy(soft, keep) <= cp.seam_energy(hard, keep)


def test_place_in_photo_keeps_full_resolution_pixels_and_drops_padding():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (300, 500, 3), dtype=np.uint8)
    tryon = np.full((64, 48, 3), 7, np.uint8)
    box = [200, -20, 425, 280]                             # 3:4, padded above the photo
    out = cp.place_in_photo(tryon, photo, box)
    assert out.shape == photo.shape
    assert np.array_equal(out[:, :200], photo[:, :200]) and np.array_equal(out[:, 425:], photo[:, 425:])
    assert (out[5:275, 205:420] == 7).all()
    alpha = np.zeros((64, 48), np.float32)
    alpha[:, :24] = 1.0                                    # left half keeps the photo
    out = cp.place_in_photo(tryon, photo, box, alpha)
    assert np.array_equal(out[10:270, 200:300], photo[10:270, 200:300])
    assert (out[10:270, 330:420] == 7).all()
    whole = cp.place_in_photo(tryon, photo, None)
    assert (whole == 7).all()


def test_seam_deviation_is_zero_for_the_photo_and_grows_with_a_seam():
    _, _, preserve, background, garment = _scene()
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 48), indexing="ij")
    photo = torch.stack([yy, xx, 0.5 * (yy + xx)])[None] * 0.6
    keep = cp.keep_region(preserve, background, garment, clearance=2)
    assert float(cp.seam_deviation(photo, photo, keep)) == 0.0
    shifted = photo + 0.3
    hard = cp.paste_back(shifted, photo, keep)
    soft = cp.paste_back(shifted, photo, cp.feather(keep, 4))
    assert cp.seam_deviation(hard, photo, keep) > cp.seam_deviation(soft, photo, keep) > 0
