"""BlazePose-33 / COCO-17 → BODY_25 mapping, calibration, missing joints and the PCK helper."""

from __future__ import annotations

import numpy as np
import pytest

from gpvton_core.conditions import pose_mapping as pm
from gpvton_core.conditions.labels import BODY_25

H, W = 1000, 800


def frontal_landmarks() -> np.ndarray:
    """33 BlazePose landmarks (normalised x, y, z, visibility) of a frontal person, all distinct."""
    lm = np.zeros((33, 4))
    lm[:, 3] = 1.0
    pts = {0: (400, 150), 2: (415, 135), 5: (385, 135), 7: (440, 145), 8: (360, 145),
           11: (500, 300), 12: (300, 300), 13: (540, 450), 14: (260, 450), 15: (560, 580),
           16: (240, 580), 23: (460, 600), 24: (340, 600), 25: (470, 780), 26: (330, 780),
           27: (475, 940), 28: (325, 940), 29: (470, 960), 30: (330, 960), 31: (500, 975),
           32: (300, 975)}
    for i in range(33):                        # the rest: distinct filler inside the image
        x, y = pts.get(i, (100 + 10 * i, 50 + 5 * i))
        lm[i, :2] = (x / W, y / H)
    return lm


def test_blazepose_table_uncalibrated() -> None:
    lm = frontal_landmarks()
    out = pm.body25_from_blazepose(lm, (H, W), calibrate=False)
    assert out.shape == (25, 3) and out.dtype == np.float32
    px = lm[:, :2] * (W, H)
    for j, src in enumerate(pm.BLAZEPOSE_TO_BODY25):
        if src >= 0:
            np.testing.assert_allclose(out[j, :2], px[src], atol=1e-3, err_msg=BODY_25[j])
    np.testing.assert_allclose(out[1, :2], (px[11] + px[12]) / 2, atol=1e-3)     # Neck
    np.testing.assert_allclose(out[8, :2], (px[23] + px[24]) / 2, atol=1e-3)     # MidHip
    assert np.all(out[[20, 23]] == 0)                                            # small toes: no source
    # OpenPose's right side is the person's right: image left for a frontal person.
    assert out[BODY_25.index("RShoulder"), 0] < out[BODY_25.index("LShoulder"), 0]
    assert out[BODY_25.index("RWrist"), 0] < out[BODY_25.index("LWrist"), 0]


def test_hip_calibration_moves_hips_apart_by_a_body_fraction() -> None:
    lm = frontal_landmarks()
    raw = pm.body25_from_blazepose(lm, (H, W), calibrate=False)
    cal = pm.body25_from_blazepose(lm, (H, W))
    torso = np.linalg.norm(raw[8, :2] - raw[1, :2])                               # 300 px here
    shift = pm.HIP_OUTWARD * torso
    assert shift > 1.0
    np.testing.assert_allclose(cal[9, :2], raw[9, :2] + (-shift, 0), atol=1e-3)   # RHip: image left
    np.testing.assert_allclose(cal[12, :2], raw[12, :2] + (shift, 0), atol=1e-3)
    np.testing.assert_allclose(cal[8], raw[8], atol=1e-3)                         # MidHip unchanged
    others = [j for j in range(25) if j not in (3, 6, 9, 12)]
    np.testing.assert_allclose(cal[others], raw[others], atol=1e-3)
    # Fractions of the body, not pixels: the same photo at twice the size gives twice the offsets.
    big = pm.body25_from_blazepose(lm, (2 * H, 2 * W))
    np.testing.assert_allclose(big[:, :2], 2 * cal[:, :2], atol=1e-2)


def test_elbow_calibration_knob(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pm, "ELBOW_TOWARD_SHOULDER", 0.1)
    px = pm.calibrate_blazepose(frontal_landmarks()[:, :2] * (W, H))
    np.testing.assert_allclose(px[14], (260 + 0.1 * 40, 450 - 0.1 * 150))       # 10 % towards (300, 300)


def test_missing_joints() -> None:
    lm = frontal_landmarks()
    lm[16, 3] = 0.01                                    # right wrist: low visibility
    lm[11, 1] = -0.05                                   # left shoulder above the image
    lm[27, 0] = 1.2                                     # left ankle right of the image
    out = pm.body25_from_blazepose(lm, (H, W), min_visibility=0.05)
    assert np.all(out[BODY_25.index("RWrist")] == 0)
    assert np.all(out[BODY_25.index("LShoulder")] == 0)
    assert np.all(out[BODY_25.index("LAnkle")] == 0)
    assert np.all(out[BODY_25.index("Neck")] == 0)      # needs both shoulders
    assert out[BODY_25.index("RShoulder"), 2] == pytest.approx(1.0)
    # The threshold is a parameter: at 0 the low-visibility wrist is kept with its visibility.
    kept = pm.body25_from_blazepose(lm, (H, W), min_visibility=0.0)
    assert kept[BODY_25.index("RWrist"), 2] == pytest.approx(0.01)
    nan = lm.copy()
    nan[0, 0] = np.nan
    assert np.all(pm.body25_from_blazepose(nan, (H, W))[0] == 0)
    with pytest.raises(ValueError, match="33 BlazePose"):
        pm.body25_from_blazepose(lm[:17], (H, W))


def test_coco17_and_wholebody_feet() -> None:
    rng = np.random.default_rng(0)
    kps = rng.uniform(10, 700, (17, 2))
    scores = np.full(17, 0.9)
    scores[9] = 0.1                                      # left wrist under the threshold
    out = pm.body25_from_coco17(kps, scores, min_score=0.3)
    for j, src in enumerate(pm.COCO17_TO_BODY25):
        if src >= 0 and src != 9:
            np.testing.assert_allclose(out[j], (*kps[src], 0.9), atol=1e-4, err_msg=BODY_25[j])
    assert np.all(out[BODY_25.index("LWrist")] == 0)
    np.testing.assert_allclose(out[1, :2], (kps[5] + kps[6]) / 2, atol=1e-4)
    np.testing.assert_allclose(out[8, :2], (kps[11] + kps[12]) / 2, atol=1e-4)
    assert np.all(out[19:] == 0)                         # body-only model: no feet
    wb = rng.uniform(10, 700, (133, 2))
    out = pm.body25_from_coco17(wb, np.ones(133))
    np.testing.assert_allclose(out[19:, :2], wb[17:23], atol=1e-4)   # DWPose feet, same order
    out = pm.body25_from_coco17(np.full((17, 2), 900.0), np.ones(17), image_hw=(800, 600))
    assert np.all(out == 0)                              # outside the image
    with pytest.raises(ValueError):
        pm.body25_from_coco17(kps, scores[:5])


def test_pck_helper() -> None:
    ref = np.zeros((25, 3), np.float32)
    ref[0] = (100, 100, 0.9)                             # nose
    ref[2] = (200, 200, 0.9)                             # RShoulder
    ref[5] = (300, 0.0, 0.8)                             # LShoulder clipped onto the border (Dress Code)
    pred = ref.copy()
    pred[0, :2] += (30, 40)                              # 50 px off
    pred[5] = (300, 10, 0.9)
    pred[3] = (50, 50, 0.9)                              # RElbow predicted, not in the reference
    res = pm.pck(pred, ref, height=1000, joints=("Nose", "RShoulder", "LShoulder", "RElbow"))
    assert res == {"Nose": True, "RShoulder": True, "LShoulder": None, "RElbow": None}
    assert pm.pck(pred, ref, height=999, joints=[0]) == {"Nose": False}   # 50 > 0.05·999
    missing = pred.copy()
    missing[2] = 0
    assert pm.pck(missing, ref, 1000, joints=["RShoulder"]) == {"RShoulder": False}
    s = pm.pck_summary([{"Nose": True, "Neck": None}, {"Nose": False, "Neck": True}])
    assert s == {"Nose": 0.5, "Neck": 1.0, "overall": pytest.approx(2 / 3), "n": 3}
