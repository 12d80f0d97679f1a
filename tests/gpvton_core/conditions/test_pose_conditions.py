import numpy as np
import pytest
from PIL import Image, ImageDraw

from gpvton_core.conditions import pose as po
from gpvton_core.conditions import resize as rs


def _pillow_reference(kps, H, W, r):
    """The official rasterisation: Pillow rectangle with float corners, then ToTensor/Normalize."""
    out = []
    for x, y, _c in kps:
        im = Image.new("L", (W, H))
        if x > 1 and y > 1:
            ImageDraw.Draw(im).rectangle((x - r, y - r, x + r, y + r), "white", "white")
        out.append(np.asarray(im, np.float32) / 255.0 * 2 - 1)
    return np.stack(out)


@pytest.mark.parametrize("H,W", [(512, 384), (1024, 768)])
def test_pose_map_matches_pillow_rasterisation(H, W):
    rng = np.random.default_rng(0)
    k = np.zeros((25, 3), np.float32)
    k[:, 0] = rng.uniform(-20, W + 20, 25)
    k[:, 1] = rng.uniform(-20, H + 20, 25)
    k[:, 2] = rng.uniform(0, 1, 25)
    k[3] = (0.5, 100, 0.9)      # x ≤ 1 → empty channel
    k[4] = (100, 1.0, 0.9)      # y ≤ 1 → empty
    k[5] = (W - 2.3, H - 3.7, 0.0)   # confidence ignored, clipped at the border
    k[6] = (100.999, 200.001, 1.0)
    m = po.pose_map(k, H, W)
    assert m.shape == (25, H, W) and m.dtype == np.float32
    assert set(np.unique(m)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(m, _pillow_reference(k, H, W, H // 64))
    assert (m[3] == -1).all() and (m[4] == -1).all()


def test_pose_square_size_and_floor_rule():
    k = np.zeros((25, 3), np.float32)
    k[0] = (100.7, 200.2, 1)
    m = po.pose_map(k, 512, 384)
    ys, xs = np.nonzero(m[0] > 0)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (92, 108, 192, 208)   # ⌊x−8⌋..⌊x+8⌋
    assert (m[0] > 0).sum() == 17 * 17
    m2 = po.pose_map(k * [2, 2, 1], 1024, 768)
    assert (m2[0] > 0).sum() == 33 * 33 and po.pose_radius(1024) == 16 and po.pose_radius(512) == 8


def test_coco18_to_body25_mapping():
    coco = [[10 + i, 20 + i, 0.5 + i / 100, i] for i in range(18)]
    coco[7] = [-1, -1, 0, -1]          # left wrist missing
    b = po.coco18_to_body25(coco)
    assert b.shape == (25, 3)
    for ci, bi in enumerate(po.COCO18_TO_BODY25):
        if ci == 7:
            assert (b[bi] == 0).all()
        else:
            np.testing.assert_allclose(b[bi], coco[ci][:3], rtol=1e-6)
    # MidHip = mean of the hips (COCO 8 right hip, 11 left hip), confidence = min.
    np.testing.assert_allclose(b[8, :2], [(18 + 21) / 2, (28 + 31) / 2])
    assert b[8, 2] == pytest.approx(min(coco[8][2], coco[11][2]))
    assert (b[19:] == 0).all()
    assert po.BODY_25[po.COCO18_TO_BODY25[5]] == "LShoulder"
    assert po.BODY_25[po.COCO18_TO_BODY25[8]] == "RHip"
    # one hip missing → MidHip missing
    coco[11] = [-1, -1, 0, -1]
    assert (po.coco18_to_body25(coco)[8] == 0).all()


def test_openpose_json_parsing_and_no_person():
    flat = list(np.arange(75, dtype=float))
    k = po.body25_from_openpose({"people": [{"pose_keypoints_2d": flat}]})
    assert k.shape == (25, 3) and k[1, 0] == 3
    with pytest.raises(po.NoPersonError):
        po.body25_from_openpose({"version": 1.3, "people": []})
    with pytest.raises(ValueError):
        po.body25_from_openpose({"people": [{"pose_keypoints_2d": [1, 2, 3]}]})


def test_scale_and_fit_keypoints():
    k = np.zeros((25, 3), np.float32)
    k[0] = (192, 256, 1)
    s = po.scale_keypoints(k, (512, 384), (1024, 768))
    assert tuple(s[0]) == (384, 512, 1) and (s[1] == 0).all()
    # A 4:3 landscape image 600×800 cropped to 512×384: scale 512/600, centre crop in x.
    fit = rs.compute_fit((600, 800), (512, 384))
    t = rs.transform_keypoints(np.array([[400, 300, 1], [10, 10, 1], [0, 0, 0]], np.float32), fit)
    assert t[0, 0] == pytest.approx(192, abs=1e-3) and t[0, 1] == pytest.approx(256, abs=1e-3)
    assert (t[1] == 0).all() and (t[2] == 0).all()     # cropped away → missing; missing stays


def test_resize_keeps_aspect_crop_and_pad():
    img = np.zeros((600, 800, 3), np.uint8)
    img[:, 350:450] = 255                        # a centred vertical bar
    out = rs.resize_rgb(img, (512, 384))
    assert out.shape == (512, 384, 3)
    col = out[256, :, 0]
    assert col[192] == 255 and col[0] == 0 and col[-1] == 0
    pad = rs.resize_rgb(np.zeros((100, 300, 3), np.uint8), (512, 384), mode="pad")
    assert pad.shape == (512, 384, 3) and pad[0, 0, 0] == 255 and pad[256, 192, 0] == 0
    lab = rs.resize_labels(np.array([[0, 7], [28, 3]], np.uint8), (512, 384))
    assert set(np.unique(lab)) <= {0, 7, 28, 3}
    assert rs.working_size(256) == (256, 192)
    with pytest.raises(ValueError):
        rs.working_size(300)
