"""Pose keypoints (OpenPose BODY_25) and the 25-channel pose map of GP-VTON (spec §8.3).

Keypoints are (25, 3) float32 arrays ``(x, y, confidence)`` in pixels of the image they belong
to; a missing keypoint is ``(0, 0, 0)`` (OpenPose's own convention).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from gpvton_core.conditions.labels import BODY_25, Joint  # noqa: F401 - BODY_25 names COCO18_TO_BODY25's targets

COCO_18 = ("nose", "neck", "right shoulder", "right elbow", "right wrist", "left shoulder",
           "left elbow", "left wrist", "right hip", "right knee", "right ankle", "left hip",
           "left knee", "left ankle", "right eye", "left eye", "right ear", "left ear")
# BODY_25 index for each COCO-18 index (MidHip = 8 and the feet 19..24 have no COCO source).
COCO18_TO_BODY25 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)


class NoPersonError(ValueError):
    """The keypoint file holds no person."""


def body25_from_openpose(data: Mapping[str, Any], person: int = 0) -> np.ndarray:
    """``people[person].pose_keypoints_2d`` of an OpenPose JSON dict as (25, 3) float32."""
    people = data.get("people") if isinstance(data, Mapping) else None
    if not people:
        raise NoPersonError("OpenPose JSON has no person (empty 'people')")
    if person >= len(people):
        raise NoPersonError(f"OpenPose JSON has {len(people)} people, asked for #{person}")
    flat = people[person].get("pose_keypoints_2d")
    if flat is None:
        raise NoPersonError("OpenPose JSON person has no 'pose_keypoints_2d'")
    arr = np.asarray(flat, dtype=np.float32).reshape(-1)
    if arr.size == 54:   # COCO-18 OpenPose output
        return coco18_to_body25(arr.reshape(18, 3))
    if arr.size != 75:
        raise ValueError(f"pose_keypoints_2d must hold 75 (BODY_25) or 54 (COCO) numbers, got {arr.size}")
    k = arr.reshape(25, 3).copy()
    k[~np.isfinite(k).all(axis=1)] = 0.0
    return k


def coco18_to_body25(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Dress Code / COCO-18 keypoints ``[x, y, score(, index)]`` → BODY_25 (25, 3).

    A COCO point is missing when its score is ≤ 0 or its coordinates are negative
    (Dress Code writes ``[-1, -1, 0, -1]``); it becomes ``(0, 0, 0)``. MidHip (8) is the mean of
    both hips when both are present (confidence = the smaller one), else missing. The feet
    (19..24) are always missing.
    """
    p = np.asarray(points, dtype=np.float32)
    if p.ndim != 2 or p.shape[0] != 18 or p.shape[1] < 3:
        raise ValueError(f"expected 18 COCO keypoints of ≥3 numbers, got shape {p.shape}")
    out = np.zeros((25, 3), np.float32)
    for ci, bi in enumerate(COCO18_TO_BODY25):
        x, y, c = p[ci, :3]
        if c > 0 and x >= 0 and y >= 0 and np.isfinite([x, y, c]).all():
            out[bi] = (x, y, c)
    r, l, mid = Joint.R_HIP, Joint.L_HIP, Joint.MID_HIP
    if out[r, 2] > 0 and out[l, 2] > 0:
        out[mid, :2] = (out[r, :2] + out[l, :2]) / 2.0
        out[mid, 2] = min(out[r, 2], out[l, 2])
    return out


def scale_keypoints(kps: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Scale keypoints from an image of ``src_hw`` to ``dst_hw`` (per axis); missing stay (0,0,0)."""
    k = np.asarray(kps, dtype=np.float32).reshape(-1, 3).copy()
    present = ~np.all(k == 0, axis=1)
    k[present, 0] *= dst_hw[1] / src_hw[1]
    k[present, 1] *= dst_hw[0] / src_hw[0]
    return k


def pose_radius(height: int) -> int:
    """Square half-size: H/64, i.e. 8 at 512 and 16 at 1024."""
    return max(1, int(round(height / 64)))


def pose_map(kps: np.ndarray, height: int, width: int, radius: int | None = None) -> np.ndarray:
    """The 25-channel pose map in {−1, +1} (float32, 25×H×W), exactly as spec §8.3.

    Keypoint j with ``x > 1 and y > 1`` (confidence ignored) fills columns ⌊x−r⌋..⌊x+r⌋ and rows
    ⌊y−r⌋..⌊y+r⌋ inclusive, clipped to the image; the rest of the channel is −1.
    """
    k = np.asarray(kps, dtype=np.float64).reshape(-1, 3)
    r = pose_radius(height) if radius is None else radius
    out = np.full((k.shape[0], height, width), -1.0, np.float32)
    for j, (x, y, _c) in enumerate(k):
        if not (x > 1 and y > 1):
            continue
        x0, x1 = int(np.floor(x - r)), int(np.floor(x + r))
        y0, y1 = int(np.floor(y - r)), int(np.floor(y + r))
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, width - 1), min(y1, height - 1)
        if x0 <= x1 and y0 <= y1:
            out[j, y0:y1 + 1, x0:x1 + 1] = 1.0
    return out


def keypoints_valid(kps: np.ndarray, height: int, width: int) -> bool:
    """All present keypoints lie inside the image (tolerance of one pixel)."""
    k = np.asarray(kps, dtype=np.float32).reshape(-1, 3)
    present = ~np.all(k == 0, axis=1)
    x, y = k[present, 0], k[present, 1]
    return bool(np.all(x >= -1) and np.all(y >= -1) and np.all(x <= width + 1) and np.all(y <= height + 1))
