import json

import numpy as np
import pytest
from PIL import Image

from gpvton_core.conditions import parsing as ps
from gpvton_core.conditions import parsing_checks
from gpvton_core.conditions.pose import body25_from_openpose, coco18_to_body25, scale_keypoints


def _body(H=512, W=384):
    k = np.zeros((25, 3), np.float32)
    k[1] = (192, 100, 1)                     # neck
    k[2], k[5] = (142, 100, 1), (242, 100, 1)   # R/L shoulder (L on the image right)
    k[3], k[6] = (100, 170, 1), (284, 170, 1)   # elbows, arms spread outwards
    k[4], k[7] = (80, 240, 1), (304, 240, 1)
    k[8] = (192, 280, 1)
    k[9], k[12] = (162, 280, 1), (222, 280, 1)
    k[10], k[13] = (160, 380, 1), (224, 380, 1)
    k[0] = (192, 50, 1)
    return k


def test_split_sleeves_synthetic_tshirt_and_sleeveless():
    k = _body()
    H, W = 512, 384
    torso = np.zeros((H, W), bool)
    torso[95:280, 142:243] = True
    yy, xx = np.mgrid[0:H, 0:W]
    left_sleeve = (np.abs((xx - 242) * 70 - (yy - 100) * 42) / np.hypot(70, 42) < 18) & (yy > 100) & (yy < 165) & (xx > 243)
    right_sleeve = np.fliplr(left_sleeve)
    region = torso | left_sleeve | right_sleeve
    t, l, r = ps.split_sleeves(region, k)
    assert not (t & l).any() and not (t & r).any() and not (l & r).any()
    assert ((t | l | r) == region).all()
    assert (l & left_sleeve).sum() > 0.8 * left_sleeve.sum()    # person's left = image right
    assert (r & right_sleeve).sum() > 0.8 * right_sleeve.sum()
    assert (t & torso).sum() > 0.95 * torso.sum()
    # sleeveless: the upper-arm bones are not covered → empty sleeves
    t2, l2, r2 = ps.split_sleeves(torso, k)
    assert not l2.any() and not r2.any() and (t2 == torso).all()
    # no shoulders → no split possible
    k2 = k.copy()
    k2[2] = 0
    t3, l3, r3 = ps.split_sleeves(region, k2)
    assert (t3 == region).all() and not l3.any()


def test_split_sleeves_follows_the_arm_to_the_hand_past_a_misplaced_wrist():
    """A low-confidence wrist above the real one: the arm skin beyond it extends the chain."""
    k = _body()
    k[6], k[7] = (250, 190, 1), (252, 230, 0.1)     # left arm hanging; the hand is at y≈300
    H, W = 512, 384
    torso = np.zeros((H, W), bool)
    torso[95:280, 142:243] = True
    sleeve = np.zeros((H, W), bool)
    sleeve[100:285, 243:264] = True
    hand = np.zeros((H, W), bool)
    hand[285:312, 242:264] = True
    below_wrist = sleeve.copy()
    below_wrist[:245] = False
    _, l0, _ = ps.split_sleeves(torso | sleeve, k)
    assert (l0 & below_wrist).sum() < 0.5 * below_wrist.sum()   # without the hand: cut short
    t, l, r = ps.split_sleeves(torso | sleeve, k, arm_skin=(hand, np.zeros_like(hand)))
    assert (l & sleeve).sum() > 0.99 * sleeve.sum() and not r.any()
    assert (t & torso).sum() > 0.95 * torso.sum()


def test_split_sleeves_limits_the_inner_side_to_the_outer_half_width(monkeypatch):
    """A loose shirt fills the gap between a hanging arm and the torso: beyond the sleeve's outer
    half-width (the tube mirrored to the torso side) the garment stays torso."""
    k = _body()
    k[6], k[7] = (262, 180, 1), (262, 250, 1)       # left arm hanging beside the body
    H, W = 512, 384
    yy, xx = np.mgrid[0:H, 0:W]
    region = np.zeros((H, W), bool)
    region[95:280, 142:243] = True                   # torso
    region[100:250, 243:275] = True                  # garment out to 12 px past the arm bone x = 262
    px, py = xx + 0.5, yy + 0.5
    d_bone = np.abs(px - 262)
    t, l, r = ps.split_sleeves(region, k)
    assert not r.any() and ((t | l) == region).all()
    outer = region & (px > 262) & (yy > 190) & (yy < 245)
    assert (l & outer).sum() > 0.95 * outer.sum()
    far_inner = region & (px > 244) & (px < 262) & (d_bone > 14) & (yy > 200) & (yy < 245)
    assert far_inner.any() and not (l & far_inner).any()
    # the same garment without the limit (no outer samples count): the inner pixels become sleeve
    monkeypatch.setattr(ps, "ARM_WIDTH_MAX", 0.0)
    _, l0, _ = ps.split_sleeves(region, k)
    assert (l0 & far_inner).sum() > 0.3 * far_inner.sum()


def test_split_legs_at_the_crotch_gap():
    """Hips only: rows below the hips that a midline gap cuts in two give one leg per side."""
    k = _body()
    k[10] = k[13] = 0
    pants = np.zeros((512, 384), bool)
    pants[280:400, 140:231] = True
    pants[400:500, 140:181] = True       # person's right leg (image left)
    pants[400:500, 185:231] = True       # person's left leg, reaching past the mid-hip x = 192
    left, right = ps.split_left_right_legs(pants, k)
    assert not (left & right).any() and ((left | right) == pants).all()
    assert left[400:500, 185:231].all() and right[400:500, 140:181].all()
    assert left[350, 200] and right[350, 180]          # above the gap: the mid-hip line
    back = k.copy()
    back[9], back[12] = k[12].copy(), k[9].copy()       # back view: the left hip on the image left
    left, right = ps.split_left_right_legs(pants, back)
    assert right[400:500, 185:231].all() and left[400:500, 140:181].all()


def test_split_legs_above_the_crotch_follows_the_fly_line():
    """Above an off-centre crotch the split is the straight line from the waist's mid-hip x to it,
    not the bisector of the leg chains (x = 192 here)."""
    k = _body()
    pants = np.zeros((512, 384), bool)
    pants[270:400, 140:245] = True
    pants[400:500, 140:198] = True       # person's right leg (image left)
    pants[400:500, 204:245] = True       # person's left leg; gap x 198..203, crotch centre x = 201
    left, right = ps.split_left_right_legs(pants, k)
    assert not (left & right).any() and ((left | right) == pants).all()
    assert left[400:500, 204:245].all() and right[400:500, 140:198].all()
    assert right[395, 197] and left[395, 203]        # just above the crotch: the line is at x ≈ 201
    assert right[271, 190] and left[271, 194]        # at the waist: the mid-hip x = 192
    cut = 192 + (201 - 192) * (330.5 - 270.5) / (400.5 - 270.5)
    assert right[330, int(cut) - 2] and left[330, int(cut) + 2]
    # no gap in any row: the leg chains alone decide, the fly line is not drawn
    solid = np.zeros_like(pants)
    solid[270:500, 140:245] = True
    left, _ = ps.split_left_right_legs(solid, k)
    assert left[395, 195]


def test_lip_and_atr_conversion_tables():
    k = _body()
    lip = np.zeros((512, 384), np.uint8)
    lip[10:40, 150:230] = 13      # face
    lip[60:95, 170:210] = 10      # neck skin
    lip[200:250, 300:320] = 14    # LIP left arm
    lip[200:250, 60:80] = 15
    lip[300:500, 150:190] = 9     # pants (right leg side, image left)
    lip[300:500, 200:240] = 9
    gp = ps.from_lip(lip, k)
    assert gp[20, 200] == 14 and gp[70, 190] == 11 and gp[220, 310] == 15 and gp[220, 70] == 16
    assert gp[400, 160] == 10 and gp[400, 230] == 9   # person's left pants = image right
    atr = np.zeros((512, 384), np.uint8)
    atr[20:95, 160:220] = 11      # head incl. neck
    atr[200:250, 300:320] = 14
    atr[300:500, 200:240] = 12
    atr[500:510, 200:240] = 9
    gp = ps.from_atr(atr, k)
    chin = 50 + ps.CHIN_RATIO * 50
    assert gp[int(chin) - 2, 190] == 14 and gp[int(chin) + 2, 190] == 11
    assert gp[220, 310] == 15 and gp[400, 220] == 17 and gp[505, 220] == 19
    with pytest.raises(ps.ParsingError):
        ps.from_atr(np.full((4, 4), 18, np.uint8), k)
    with pytest.raises(ps.ParsingError):
        ps.from_lip(np.full((4, 4), 20, np.uint8), k)


def test_class_iou():
    a = np.array([[5, 5, 21, 0]])
    b = np.array([[5, 21, 21, 0]])
    iou = parsing_checks.class_iou(a, b, (5, 21, 22))
    assert iou == {5: 0.5, 21: 0.5}
    assert parsing_checks.mean_iou(iou) == 0.5


def test_derived_parsing_vs_gpvton_release(vitonhd_root):
    """Derived 29-label parsing (LIP + pose) scored against GP-VTON's parse-bytedance_512."""
    per = {}
    root = vitonhd_root / "test"
    ids = sorted(p.stem for p in (root / "parse-bytedance_512").glob("*.png"))
    assert len(ids) == 6
    for i in ids:
        ref = np.asarray(Image.open(root / "parse-bytedance_512" / f"{i}.png"))[..., 0]
        lip = np.asarray(Image.open(root / "image-parse-v3" / f"{i}.png").resize((384, 512), Image.NEAREST))
        k = body25_from_openpose(json.loads((root / "openpose_json" / f"{i}_keypoints.json").read_text()))
        k = scale_keypoints(k, (1024, 768), (512, 384))
        gp = ps.from_lip(lip, k)
        for p in (gp, ref):   # both parsings see an upper garment (same garment type)
            assert np.isin(p, (5, 21, 22)).sum() > 0.9 * np.isin(p, (5, 6, 7, 21, 22, 24, 25, 26, 27)).sum()
        for c, v in parsing_checks.class_iou(gp, ref).items():
            per.setdefault(c, []).append(v)
    ious = {c: float(np.mean(v)) for c, v in sorted(per.items())}
    miou = parsing_checks.mean_iou(ious)
    print("derived parsing IoU vs parse-bytedance_512:", {c: round(v, 3) for c, v in ious.items()},
          f"mIoU {miou:.3f}")
    # bench/eval_parsing.py, derivation 1.2.0: mIoU 0.834, sleeves 0.775 / 0.732, pants 0.869 / 0.895
    assert miou > 0.832
    assert ious[5] > 0.9 and ious[11] > 0.89 and ious[21] > 0.77 and ious[22] > 0.725
    assert ious[9] > 0.865 and ious[10] > 0.89


def test_dresscode_keypoints_map_onto_parsing(dresscode_root):
    """COCO → BODY_25 puts LShoulder on the image right, where ATR's left arm is."""
    d = dresscode_root / "upper_body"
    k = coco18_to_body25(json.loads((d / "keypoints" / "000000_2.json").read_text())["keypoints"])
    atr = np.asarray(Image.open(d / "label_maps" / "000000_4.png").resize((384, 512), Image.NEAREST))
    gp = ps.from_atr(atr, k)
    assert k[5, 0] > k[2, 0]
    xs = np.nonzero(gp == 15)[1]
    assert xs.mean() > 192 and set(np.unique(gp)) <= set(range(29))
