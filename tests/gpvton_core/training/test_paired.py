"""Paired warp quality helpers: IoUs against the person's own garment."""

import math

import torch

from gpvton_core.training.paired import garment_iou, parsing_scores, part_iou


def _batch() -> dict:
    worn = torch.zeros(2, 1, 8, 6)
    worn[:, :, 2:6, 1:5] = 1                                         # 16 px worn garment
    parts = torch.zeros(2, 3, 1, 8, 6)
    parts[:, 1] = worn
    gparts = torch.zeros(2, 3, 1, 8, 6)
    gparts[:, 1, :, 1:7, 1:5] = 1                                    # flat garment: middle part only
    seg_gt = (worn[:, 0] * 2).long()
    return {"person_garment_mask": worn, "part_classes": [(1, 2, 3), (4, 5, 6)], "person_parts": parts,
            "garment_parts": gparts, "seg_gt": seg_gt}


def test_garment_iou_counts_only_the_pairs_part_classes():
    b = _batch()
    label = torch.zeros(2, 1, 8, 6)
    label[0, :, 2:6, 1:5] = 2                                        # exact, class 2 ∈ (1, 2, 3)
    label[1, :, 2:6, 1:5] = 2                                        # right place, wrong classes for lower
    label[1, :, 2:4, 1:5] = 5                                        # half of it in class 5
    iou = garment_iou(label, b)
    assert iou[0] == 1.0 and iou[1] == 0.5


def test_part_iou_and_parsing_scores():
    b = _batch()
    masks = torch.zeros(2, 3, 8, 6)
    masks[0, 1, 2:6, 1:5] = 1
    masks[1, 1, 2:6, 1:3] = 1                                        # half the region
    assert part_iou(masks, b) == [1.0, 0.5]
    seg = b["seg_gt"][:, None].clone()
    seg[1] = 0
    (acc0, miou0), (acc1, miou1) = parsing_scores(seg, b)
    assert acc0 == 1.0 and miou0 == 1.0
    assert math.isclose(acc1, 1 - 16 / 48, rel_tol=1e-6) and math.isclose(miou1, (32 / 48) / 2)
