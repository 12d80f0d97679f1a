import glob
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gpvton_core.conditions import densepose as dp
from gpvton_core.conditions import densepose_approximation as dpa
from gpvton_core.conditions import pose
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


# --- the rendering palette and its inversion -------------------------------------------------------

def _jpeg(rgb: np.ndarray, quality: int = 95) -> np.ndarray:
    """JPEG round trip as the shipped renderings were saved (quality 95, 4:2:0 chroma)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, subsampling=2)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_palette_is_parula_with_rising_luma_and_distinct_colours():
    pal = dp.RENDER_PALETTE
    luma = pal @ np.array([0.299, 0.587, 0.114], np.float32)
    assert (np.diff(luma) > 3).all()                       # the Y channel alone orders the parts
    d = np.sqrt(((pal[:, None] - pal[None]) ** 2).sum(-1)) + np.eye(25) * 1e3
    assert d.min() > 10                                    # 7, 8 and 9 included
    assert dp.MIRROR[dp.MIRROR].tolist() == list(range(25))
    assert dp.MIRROR[3] == 4 and dp.MIRROR[5] == 6 and dp.MIRROR[9] == 10 and dp.MIRROR[23] == 24


def test_blended_edges_do_not_become_a_third_part():
    # torso front (2) next to left upper leg front (10): their blend has the colour of the feet
    # (5/6), which a nearest-colour lookup writes as a fringe along the boundary.
    idx = np.zeros((64, 48), np.uint8)
    idx[8:56, 8:25], idx[8:56, 25:40] = 2, 10       # boundary mid-pixel after the ×½ resize
    idx[20:30, 14:34] = 21
    rgb = _jpeg(dp.RENDER_PALETTE[idx].astype(np.uint8))
    small = resize_rgb(rgb, (32, 24))
    ref = resize_labels(idx, (32, 24))
    pred = dp.index_from_rendering(small)
    assert not np.isin(pred, [3, 4, 5, 6, 7, 8, 9]).any()
    nearest = dp.RENDER_PALETTE[None, None] - small[:, :, None].astype(np.float32)
    naive = (nearest ** 2).sum(-1).argmin(-1)
    assert np.isin(naive, [3, 4, 5, 6, 7, 8, 9]).any()      # what the unmixing avoids
    assert dp.agreement(pred, ref) > 0.97


def test_end_effector_side_follows_the_skeleton():
    idx = np.zeros((100, 100), np.uint8)
    idx[80:90, 20:30] = 6          # "right foot" drawn at the left ankle
    idx[80:90, 70:80] = 5          # "left foot" drawn at the right ankle
    idx[40:50, 10:20] = 3          # right hand at the right wrist: stays
    rgb = dp.RENDER_PALETTE[idx].astype(np.uint8)
    k = np.zeros((25, 3), np.float32)
    k[11] = (75, 80, 1)            # RAnkle
    k[14] = (25, 80, 1)            # LAnkle
    k[4] = (15, 38, 1)             # RWrist
    k[7] = (85, 38, 1)             # LWrist
    plain = dp.index_from_rendering(rgb)
    fixed = dp.index_from_rendering(rgb, keypoints=k)
    np.testing.assert_array_equal(plain, idx)
    assert (fixed[80:90, 20:30] == 5).all() and (fixed[80:90, 70:80] == 6).all()
    assert (fixed[40:50, 10:20] == 3).all()


def test_connected_components():
    m = np.zeros((6, 7), bool)
    m[1:5, 1] = m[1:5, 3] = m[4, 1:4] = True     # a U
    m[0, 5] = m[1, 6] = True                     # diagonal neighbours: two components
    lab, n = dp.connected_components(m)
    assert n == 3
    assert len(np.unique(lab[m])) == 3 and (lab[~m] == 0).all()
    assert lab[1, 1] == lab[1, 3]


def _dresscode_items(root):
    for f in sorted(glob.glob(str(root / "*" / "dense" / "*_5.png"))):
        ref = np.asarray(Image.open(f))
        jpg = f.replace("/dense/", "/image-densepose/").replace("_5.png", "_0.jpg")
        rgb = np.asarray(Image.open(jpg).convert("RGB"))
        kp = json.loads(open(f.replace("/dense/", "/keypoints/").replace("_5.png", "_2.json")).read())
        yield ref, rgb, pose.coco18_to_body25(kp["keypoints"])


def test_inversion_with_keypoints_on_dresscode_pairs(dresscode_root):
    plain, with_kp = [], []
    for ref, rgb, k in _dresscode_items(dresscode_root):
        ref, rgb = resize_labels(ref, (512, 384)), resize_rgb(rgb, (512, 384))
        plain.append(dp.agreement(dp.index_from_rendering(rgb), ref, foreground_only=True))
        with_kp.append(dp.agreement(dp.index_from_rendering(rgb, keypoints=k), ref, foreground_only=True))
    print(f"densepose inversion, body pixels: {np.mean(plain):.4f}, with keypoints {np.mean(with_kp):.4f}")
    assert np.mean(plain) > 0.88 and np.mean(with_kp) > np.mean(plain) + 0.004


def test_inversion_of_a_faithful_rendering_of_the_reference(dresscode_root):
    # The shipped renderings show another DensePose prediction than the grey maps (see the module
    # docstring); rendered from the reference itself, the inversion is near exact.
    scores = []
    for ref, _rgb, _k in _dresscode_items(dresscode_root):
        rgb = _jpeg(dp.RENDER_PALETTE[ref].astype(np.uint8))
        pred = dp.index_from_rendering(resize_rgb(rgb, (512, 384)))
        scores.append(dp.agreement(pred, resize_labels(ref, (512, 384)), foreground_only=True))
    assert min(scores) > 0.975 and np.mean(scores) > 0.982


# --- approximation from the person mask and the skeleton -------------------------------------------

def _figure(mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A frontal stick figure (BODY_25, 200×120) and a mask of thick limbs around it."""
    k = np.zeros((25, 3), np.float32)
    pts = {0: (60, 20), 1: (60, 40), 2: (40, 42), 3: (32, 75), 4: (28, 105), 5: (80, 42),
           6: (88, 75), 7: (92, 105), 8: (60, 100), 9: (48, 100), 10: (46, 140), 11: (45, 180),
           12: (72, 100), 13: (74, 140), 14: (75, 180)}
    for i, (x, y) in pts.items():
        k[i] = (120 - x if mirror else x, y, 1.0)
    img = Image.new("L", (120, 200))
    d = ImageDraw.Draw(img)
    for a, b in ((2, 3), (3, 4), (5, 6), (6, 7), (9, 10), (10, 11), (12, 13), (13, 14), (1, 0)):
        d.line([tuple(k[a, :2]), tuple(k[b, :2])], fill=1, width=12)
    d.polygon([tuple(k[i, :2]) for i in (2, 5, 12, 9)], fill=1)
    for i in (4, 7):
        d.ellipse([k[i, 0] - 6, k[i, 1], k[i, 0] + 6, k[i, 1] + 14], fill=1)
    for i in (11, 14):
        d.ellipse([k[i, 0] - 7, k[i, 1], k[i, 0] + 7, k[i, 1] + 12], fill=1)
    d.ellipse([48, 6, 72, 32], fill=1)
    return np.asarray(img, bool), k


def test_facing():
    _m, k = _figure()
    assert dpa.facing(k) == "front"
    assert dpa.facing(_figure(mirror=True)[1]) == "back"
    side = k.copy()
    side[5, 0] = side[2, 0] + 3
    assert dpa.facing(side) == "side"
    with pytest.raises(dpa.DensePoseError):
        dpa.facing(np.zeros((25, 3), np.float32))


def test_approximation_places_parts_on_the_skeleton():
    m, k = _figure()
    out = dpa.approximate_from_mask(m, k)
    assert out.dtype == np.uint8 and out.shape == m.shape
    assert (out[~m] == 0).all() and (out[m] > 0).all()
    assert out[70, 60] == 2                                        # torso front
    assert out[112, 28] == 3 and out[112, 92] == 4                 # right hand image-left
    assert out[160, 45] == 13 and out[160, 75] == 14               # lower legs front
    assert out[120, 47] == 9 and out[120, 73] == 10                # upper legs front
    assert out[188, 45] == 6 and out[188, 75] == 5                 # feet
    assert out[20, 55] == 23 and out[20, 65] == 24                 # head right / left
    arm = out[60:70, 26:38][m[60:70, 26:38]]                       # right upper arm
    assert set(np.unique(arm)) == {16, 18}                         # inner and outer halves
    assert out[65, 30] == 18 and out[65, 38] == 16                 # outer = away from the torso


def test_approximation_from_behind_uses_back_parts():
    m, k = _figure(mirror=True)
    out = dpa.approximate_from_mask(m, k)
    assert out[70, 60] == 1                                        # torso back
    assert out[160, 75] == 11 and out[160, 45] == 12               # right lower leg now image-right
    assert out[120, 73] == 7 and out[120, 47] == 8


def test_approximation_of_a_cropped_photo_lets_the_legs_hang():
    m, k = _figure()
    k[[10, 11, 13, 14]] = 0                    # knees and ankles cropped off
    out = dpa.approximate_from_mask(m, k)
    assert out[130, 47] == 9 and out[130, 73] == 10
    assert out[170, 45] == 13 and out[170, 75] == 14           # knee at hip + 0.9 torso heights


def test_approximation_parsing_and_errors():
    m, k = _figure()
    parsing = np.zeros(m.shape, np.uint8)
    parsing[36:46, 55:65] = 14                 # "face" on the neck: must go to the head
    out = dpa.approximate_from_mask(m, k, parsing=parsing)
    assert np.isin(out[36:46, 55:65][m[36:46, 55:65]], [23, 24]).all()
    no_hips = k.copy()
    no_hips[[8, 9, 12]] = 0
    with pytest.raises(dpa.DensePoseError, match="hips"):
        dpa.approximate_from_mask(m, no_hips)
    no_shoulder = k.copy()
    no_shoulder[5] = 0
    with pytest.raises(dpa.DensePoseError, match="shoulders"):
        dpa.approximate_from_mask(m, no_shoulder)
    assert (dpa.approximate_from_mask(np.zeros_like(m), k) == 0).all()


def test_approximation_on_dresscode_foreground(dresscode_root):
    scores = []
    for ref, _rgb, k in _dresscode_items(dresscode_root):
        ref = resize_labels(ref, (512, 384))
        scores.append(dp.agreement(dpa.approximate_from_mask(ref > 0, k), ref, foreground_only=True))
    print("mask+skeleton approximation, body pixels:", np.round(scores, 3))
    assert np.mean(scores) > 0.80 and min(scores) > 0.65
