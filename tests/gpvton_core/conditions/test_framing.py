"""Framing a bare photo into the working 3:4 frame around its subject."""

import numpy as np

from gpvton_core.conditions import framing as fr


def test_framed_three_four_photo_stays_whole():
    box = fr.frame_person((100, 40, 300, 1000), (1024, 768))
    assert box.is_whole((1024, 768))


def test_landscape_photo_is_cropped_around_the_person_with_margin():
    hw = (1000, 2000)
    subject = (1200, 200, 1400, 800)          # 600 px tall person right of centre
    box = fr.frame_person(subject, hw, margin=0.1)
    assert abs(box.width / box.height - 0.75) < 0.01
    assert box.y0 <= 200 - 60 + 1 and box.y1 >= 800 + 60 - 1        # 10 % of 600 each side
    assert box.x0 <= 1200 and box.x1 >= 1400
    assert 0 <= box.x0 and box.x1 <= 2000 and 0 <= box.y0 and box.y1 <= 1000   # no padding needed
    cx = (box.x0 + box.x1) / 2
    assert abs(cx - 1300) <= 1                                      # centred on the person


def test_cut_off_person_gets_no_margin_beyond_the_cut_edge():
    # Person cut by the bottom edge (a half-body shot in a wide photo).
    hw = (800, 1600)
    box = fr.frame_person((700, 100, 900, 800), hw, margin=0.1)
    assert box.y1 == 800                        # not padded below the cut
    assert box.y0 <= 100 - 70 + 1


def test_box_larger_than_photo_is_centred_and_padded():
    hw = (400, 1000)                            # a tall person fills a short wide photo
    box = fr.frame_box((450, 0, 550, 400), hw, margin=0.0)
    assert box.height == 400 and box.width == 300
    box = fr.frame_box((0, 50, 1000, 350), hw, margin=0.0)   # wider than tall subject
    assert box.width >= 1000 and box.height > 400 and box.y0 < 0 and box.y1 > 400
    assert abs(box.y0 + (box.y1 - 400)) <= 1                 # padded evenly


def test_crop_rgb_pads_with_edges_or_fill_and_keypoints_follow():
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :10] = 50
    img[:, 10:] = 200
    box = fr.CropBox(-2, -1, 4, 7)
    out = fr.crop_rgb(img, box)
    assert out.shape == (8, 6, 3) and (out == 50).all()
    white = fr.crop_rgb(img, fr.CropBox(15, 0, 25, 10), fill=(255, 255, 255))
    assert white.shape == (10, 10, 3)
    assert (white[:, :5] == 200).all() and (white[:, 5:] == 255).all()
    labels = fr.crop_labels(np.ones((10, 20), np.uint8), fr.CropBox(18, 0, 22, 10))
    assert labels[:, :2].tolist() == [[1, 1]] * 10 and (labels[:, 2:] == 0).all()
    k = fr.box_keypoints(np.array([[5, 6, 0.9], [0, 0, 0]], np.float32), fr.CropBox(2, 3, 8, 11))
    assert k.tolist() == [[3, 3, np.float32(0.9)], [0, 0, 0]]


def test_mask_and_keypoint_boxes():
    m = np.zeros((10, 10), bool)
    m[2:5, 3:9] = True
    assert fr.mask_bbox(m) == (3.0, 2.0, 9.0, 5.0)
    assert fr.mask_bbox(np.zeros((4, 4), bool)) is None
    k = np.array([[1, 2, 0.9], [5, 9, 0.8], [100, 100, 0.0]], np.float32)
    assert fr.keypoints_bbox(k) == (1.0, 2.0, 5.0, 9.0)
