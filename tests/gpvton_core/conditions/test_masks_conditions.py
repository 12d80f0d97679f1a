import numpy as np
import pytest

from gpvton_core.conditions import masks as mk


def test_preserve_label_lists_per_dataset_category_stage():
    FULL = {1, 2, 3, 4, 7, 8, 9, 10, 12, 13, 14, 17, 18, 19, 20, 23, 26, 27, 28}
    assert mk.FULL == FULL
    assert mk.SHORT == FULL - {8, 9, 10, 13, 17, 18, 19, 20, 28}
    for stage in ("warp", "gen"):
        assert mk.preserve_labels("vitonhd", "upper", stage) == FULL
        assert mk.preserve_labels("dresscode", "upper", stage) == FULL
    assert mk.preserve_labels("dresscode", "dresses", "warp") == {1, 2, 3, 4, 12, 14, 23}
    assert mk.preserve_labels("dresscode", "dresses", "gen") == {1, 2, 3, 4, 12, 14, 23, 8, 19, 20}
    lower = {1, 2, 3, 4, 5, 6, 7, 11, 12, 14, 15, 16} | set(range(21, 29))
    assert mk.preserve_labels("dresscode", "lower", "warp") == lower
    assert mk.preserve_labels("dresscode", "lower", "gen") == lower | {8, 19, 20}
    assert mk.uses_palm("vitonhd", "upper") and mk.uses_palm("dresscode", "dresses")
    assert not mk.uses_palm("dresscode", "lower")
    assert mk.preserve_labels("vitonhd", "lower", "warp") == FULL     # one rule set for VITON-HD
    with pytest.raises(ValueError):
        mk.preserve_labels("dresscode", "shoes", "warp")


def _arm_scene(H=512, W=384):
    """A vertical left arm (label 15) from the shoulder (y=100) to a hand below the wrist."""
    p = np.zeros((H, W), np.uint8)
    p[100:400, 290:310] = 15
    k = np.zeros((25, 3), np.float32)
    k[5] = (300, 100, 0.9)   # LShoulder
    k[6] = (300, 200, 0.9)   # LElbow
    k[7] = (300, 300, 0.9)   # LWrist
    return p, k


def test_palm_rule_keeps_the_hand_only():
    p, k = _arm_scene()
    palm = mk.palm_mask(p, k)
    ys = np.nonzero(palm)[0]
    # forearm rectangle half-width 25 px, dilated 30×30 (anchor 15: rows up to wrist + 25 + 14)
    # the forearm rectangle ends at the wrist row (its half-width is perpendicular only); the
    # 30×30 dilation with anchor 15 reaches 15 rows further
    assert ys.min() == 300 + 15 + 1 and ys.max() == 399
    assert palm[316:400, 290:310].all()
    # a missing elbow → the upper mask is all ones → empty palm
    k2 = k.copy()
    k2[6, 2] = 0.05
    assert not mk.palm_mask(p, k2).any()
    # right arm uses label 16 and keypoints 2/3/4: nothing here
    p16 = np.where(p == 15, 16, 0).astype(np.uint8)
    assert not mk.palm_mask(p16, k).any()


def test_palm_kernels_scale_with_height():
    assert mk.palm_kernels(512) == (50, 30)
    assert mk.palm_kernels(1024) == (100, 60)


def test_dilate_uses_opencv_default_anchor():
    m = np.zeros((20, 20), bool)
    m[10, 10] = True
    d = mk.dilate(m, 4)          # anchor 2: the pixel spreads to rows/cols 9..12
    ys, xs = np.nonzero(d)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (9, 12, 9, 12)


def test_preserve_mask_composition():
    p, k = _arm_scene()
    p[0:50, :] = 2            # hair → preserved
    p[450:, :] = 9            # pants → preserved for upper, not for dresses warp
    m = mk.preserve_mask(p, k, "vitonhd", "upper", "warp")
    assert m.dtype == np.float32 and set(np.unique(m)) <= {0.0, 1.0}
    assert m[10, 10] == 1 and m[460, 10] == 1 and m[395, 300] == 1 and m[150, 300] == 0
    d = mk.preserve_mask(p, k, "dresscode", "dresses", "warp")
    assert d[460, 10] == 0
    lw = mk.preserve_mask(p, k, "dresscode", "lower", "warp")
    assert lw[150, 300] == 1      # whole arm preserved for lower (no palm rule)
    warped = np.zeros_like(p)
    warped[0:20] = 3
    g = mk.preserve_mask(p, k, "dresscode", "upper", "gen", warped_garment_mask=warped)
    assert g[10, 10] == 0 and g[30, 10] == 1


def test_skin_colour_median_rule_and_nan():
    img = np.zeros((4, 4, 3), np.uint8)
    parsing = np.zeros((4, 4), np.uint8)
    parsing[0, :] = 14        # face
    img[0, :, 0] = [10, 20, 30, 0]      # zero pixels excluded per channel
    img[0, :, 1] = [0, 0, 0, 0]         # channel with no positive pixel → NaN
    img[0, :, 2] = [200, 100, 50, 25]
    c = mk.skin_colour(img, parsing, "vitonhd")
    assert c[0] == pytest.approx(20 / 127.5 - 1)
    assert np.isnan(c[1])
    assert c[2] == pytest.approx(50 / 127.5 - 1)    # lower median of 4 values (torch.median)
    assert not mk.skin_colour_ok(c)
    empty = mk.skin_colour(img, np.zeros((4, 4), np.uint8), "vitonhd")
    assert np.isnan(empty).all()
    # Dress Code adds legs 17/18
    parsing2 = np.zeros((4, 4), np.uint8)
    parsing2[1, :] = 17
    img[1] = 100
    assert np.isnan(mk.skin_colour(img, parsing2, "vitonhd")).all()
    assert mk.skin_colour(img, parsing2, "dresscode")[0] == pytest.approx(100 / 127.5 - 1)
    assert mk.skin_colour_map(c, 2, 3).shape == (3, 2, 3)


def test_garment_labels_and_person_targets():
    parts = np.array([[0, 1, 2, 3]], np.uint8)
    assert mk.garment_label_map(parts, "vitonhd", "upper").tolist() == [[0, 1, 2, 3]]
    assert mk.garment_label_map(parts, "dresscode", "lower").tolist() == [[0, 4, 5, 6]]
    np.testing.assert_allclose(mk.garment_label_input(parts, "dresscode", "lower"), [[0, 4 / 6, 5 / 6, 1]])
    np.testing.assert_allclose(mk.garment_label_input(parts, "vitonhd", "upper"), [[0, 1 / 3, 2 / 3, 1]])
    pm = mk.garment_part_masks(parts)
    assert pm.shape == (3, 1, 4) and pm.sum() == 3
    assert mk.garment_type_value("lower") == pytest.approx(2 / 3)
    parsing = np.array([[21, 24, 5, 6, 22, 25, 15, 16, 11, 9, 13, 10]], np.uint8)
    assert mk.seg_target(parsing, "vitonhd", "upper").tolist() == [[1, 1, 2, 2, 3, 3, 4, 5, 6, 0, 0, 0]]
    assert mk.seg_target(parsing, "dresscode", "dresses").tolist() == [[1, 1, 2, 2, 3, 3, 7, 8, 9, 0, 0, 0]]
    assert mk.seg_target(parsing, "dresscode", "lower").tolist() == [[0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 5, 6]]
    np.testing.assert_allclose(mk.arms_neck_label(parsing, "vitonhd")[0, 6:9], [1 / 3, 2 / 3, 1])
    assert mk.person_part_masks(parsing, "upper")[1].sum() == 2


def test_fp64_label_channels_are_the_official_float32_values_widened():
    """The official loaders divide in float32; a float64 run must see those values, not k/3."""
    parts = np.array([[0, 1, 2, 3]], np.uint8)
    f32 = np.array([0, 1, 2, 3], np.float32) / np.float32(3)           # torch/numpy float32 division
    got = mk.garment_label_input(parts, "vitonhd", "upper", dtype=np.float64)
    assert got.dtype == np.float64 and np.array_equal(got[0], f32.astype(np.float64))
    exact = np.array([0, 1, 2, 3], np.float64) / 3
    assert got[0, 1] != exact[1] and got[0, 2] != exact[2]             # ~1e-8 off the exact fractions
    assert np.abs(got[0] - exact).max() < 3e-8
    lower = mk.garment_label_input(parts, "dresscode", "lower", dtype=np.float64)
    assert np.array_equal(lower[0], (np.array([0, 4, 5, 6], np.float32) / np.float32(6)).astype(np.float64))
    assert lower[0, 1] != 4 / 6
    # float32 output is unchanged by the dtype argument
    assert np.array_equal(mk.garment_label_input(parts, "vitonhd", "upper"), f32[None])
    parsing = np.array([[0, 15, 16, 11, 5]], np.uint8)
    arms = mk.arms_neck_label(parsing, "dresscode", dtype=np.float64)
    assert arms.dtype == np.float64 and np.array_equal(arms[0], np.append(f32, 0).astype(np.float64))
    assert arms[0, 1] != 1 / 3 and arms[0, 2] != 2 / 3
    assert mk.garment_type_value("upper") == float(np.float32(1) / np.float32(3)) != 1 / 3
    assert mk.garment_type_value("dresses") == 1.0
