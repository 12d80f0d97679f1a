import numpy as np
import pytest

from gpvton_core.conditions import garment as gm
from gpvton_core.conditions import ratio as rt


def _tshirt(sleeves=True, H=512, W=384):
    m = np.zeros((H, W), bool)
    m[60:460, 120:264] = True               # torso
    if sleeves:
        m[70:200, 60:120] = True            # image-left sleeve = wearer's right
        m[70:200, 264:324] = True           # image-right sleeve = wearer's left
    return m


def test_tshirt_parts():
    m = _tshirt()
    p = gm.garment_parts(m, "upper")
    assert ((p > 0) == m).all()
    assert (p[100:190, 275:320] == 1).all()   # wearer's left on the image right
    assert (p[100:190, 65:110] == 3).all()
    assert (p[300, 130:250] == 2).all()


def test_long_sleeves_hanging_separately():
    m = np.zeros((512, 384), bool)
    m[60:460, 120:264] = True
    m[70:470, 80:112] = True                  # long sleeves with a gap to the torso
    m[70:470, 272:304] = True
    m[70:90, 80:304] = True                   # joined at the shoulders
    p = gm.garment_parts(m, "upper")
    assert (p[300, 275:300] == 1).all() and (p[300, 85:110] == 3).all() and (p[300, 125:260] == 2).all()


def test_sleeveless_has_empty_sleeves():
    p = gm.garment_parts(_tshirt(sleeves=False), "upper")
    assert set(np.unique(p)) == {0, 2}
    d = np.zeros((512, 384), bool)
    d[60:250, 130:254] = True
    d[250:480, 90:294] = True                # a flared skirt is not a sleeve
    pd = gm.garment_parts(d, "dresses")
    assert set(np.unique(pd)) == {0, 2}


def test_pants_and_skirt_parts():
    m = np.zeros((512, 384), bool)
    m[40:200, 100:284] = True                # waist + hips
    m[200:480, 100:185] = True               # right leg (image left)
    m[200:480, 199:284] = True               # left leg (image right)
    p = gm.garment_parts(m, "lower")
    assert ((p > 0) == m).all()
    assert (p[100, 110:270] == 2).all()
    assert (p[300:470, 205:280] == 1).all() and (p[300:470, 105:180] == 3).all()
    s = np.zeros((512, 384), bool)
    s[40:400, 100:284] = True
    assert set(np.unique(gm.garment_parts(s, "lower"))) == {0, 2}
    with pytest.raises(gm.GarmentError):
        gm.garment_parts(s, "shoes")
    with pytest.raises(gm.GarmentError):
        gm.garment_parts(np.zeros((8, 8), bool), "upper")


def test_mask_from_white_background_keeps_white_prints():
    img = np.full((512, 384, 3), 250, np.uint8)
    img[100:400, 100:284] = (30, 60, 90)
    img[200:260, 150:230] = 255               # a white print inside the garment
    m = gm.mask_from_white_background(img)
    assert m[230, 190] and m[150, 150] and not m[10, 10] and not m[450, 190]
    assert m.sum() == 300 * 184
    with pytest.raises(gm.GarmentError):
        gm.mask_from_white_background(np.full((64, 48, 3), 255, np.uint8))


def test_pc_ratio_tucked_vs_loose():
    parts = gm.garment_parts(_tshirt(), "upper")
    k = np.zeros((25, 3), np.float32)
    k[2], k[5] = (150, 100, 1), (250, 100, 1)
    person = np.zeros((512, 384), np.uint8)
    person[100:380, 140:260] = 5
    loose = rt.pc_ratio(person, k, parts, "upper")
    person[300:380] = 9                        # the lower part goes under the trousers
    tucked = rt.pc_ratio(person, k, parts, "upper")
    assert tucked < loose
    assert rt.pc_ratio(person, k, parts, "lower") is None
    assert rt.pc_ratio(person, np.zeros((25, 3)), parts, "upper") is None


def _shot(bg: int, shadow: bool = False) -> tuple[np.ndarray, np.ndarray]:
    img = np.full((120, 90, 3), bg, np.uint8)
    truth = np.zeros((120, 90), bool)
    truth[20:100, 25:65] = True
    if shadow:   # a soft shadow right of and below the garment, 15 % darker, unsaturated
        img[28:108, 33:73] = np.uint8(bg * 0.85)
    img[truth] = (180, 30, 40)
    return img, truth


def test_plain_light_backgrounds_with_soft_shadows():
    for bg, shadow in ((255, False), (228, False), (235, True), (200, True)):
        img, truth = _shot(bg, shadow)
        m = gm.mask_from_plain_background(img)
        iou = (m & truth).sum() / (m | truth).sum()
        assert iou > 0.97, (bg, shadow, iou)


def test_busy_background_cannot_be_separated_and_says_what_to_do():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)
    with pytest.raises(gm.GarmentError, match="matting"):
        gm.mask_from_plain_background(img)
    dark = np.full((120, 90, 3), 40, np.uint8)          # plain but dark: not a light background
    with pytest.raises(gm.GarmentError, match="not plain and light"):
        gm.mask_from_plain_background(dark)
