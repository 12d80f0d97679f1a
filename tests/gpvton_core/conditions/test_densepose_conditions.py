import glob

import numpy as np
import pytest
from PIL import Image

from gpvton_core.conditions import densepose as dp
from gpvton_core.conditions.resize import resize_labels, resize_rgb


def test_onehot_is_plus_one_exactly_once():
    idx = np.array([[0, 1], [24, 7]], np.uint8)
    oh = dp.densepose_onehot(idx)
    assert oh.shape == (25, 2, 2) and set(np.unique(oh)) == {-1.0, 1.0}
    assert ((oh == 1).sum(axis=0) == 1).all()
    assert oh[24, 1, 0] == 1 and oh[0, 0, 0] == 1
    with pytest.raises(ValueError):
        dp.densepose_onehot(np.array([[25]], np.uint8))


def test_inversion_of_clean_palette_is_exact():
    idx = np.repeat(np.repeat(np.array([[0, 2, 5], [10, 17, 24]], np.uint8), 8, 0), 8, 1)
    rgb = dp.RENDER_PALETTE[idx].astype(np.uint8)
    np.testing.assert_array_equal(dp.index_from_rendering(rgb, smooth=0), idx)
    np.testing.assert_array_equal(dp.index_from_rendering(rgb, smooth=5), idx)


def test_inversion_agreement_on_dresscode_pairs(dresscode_root):
    allp, fgp = [], []
    for f in sorted(glob.glob(str(dresscode_root / "*" / "dense" / "*_5.png"))):
        # at the working resolution, as the pipeline does it: rendering bicubic, index nearest
        ref = resize_labels(np.asarray(Image.open(f)), (512, 384))
        rgb = np.asarray(Image.open(f.replace("/dense/", "/image-densepose/").replace("_5.png", "_0.jpg")).convert("RGB"))
        rgb = resize_rgb(rgb, (512, 384))
        pred = dp.index_from_rendering(rgb)
        allp.append(dp.agreement(pred, ref))
        fgp.append(dp.agreement(pred, ref, foreground_only=True))
    assert len(allp) == 6
    print(f"densepose inversion agreement: all {np.mean(allp):.4f}, foreground {np.mean(fgp):.4f}")
    assert np.mean(allp) > 0.95 and np.mean(fgp) > 0.85
