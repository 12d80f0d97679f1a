"""RTMPose/DWPose top-down pose on onnxruntime: a person detector, then a SimCC pose model per box.

User-supplied ONNX pair: a person detector (YOLOX as released with DWPose, raw
``(1, N, 5+classes)`` output, or an mmdeploy end-to-end YOLOX/RTMDet with ``dets (1, N, 5)``
[+ ``labels``]) and an RTMPose/DWPose SimCC pose model (``simcc_x (1, K, W·r)``, ``simcc_y
(1, K, H·r)``; K = 17 COCO or 133 COCO-WholeBody). The pre- and post-processing follow the
models' published configs: detector letterbox to its input size (top-left, grey 114, BGR), pose
crop = box × 1.25 at the model's aspect, RGB normalised with the ImageNet mean/std, SimCC arg-max
with score min(max_x, max_y). (``rtmlib`` implements the same but would install ``opencv-python``
next to mediapipe's ``opencv-contrib-python``: two copies of ``cv2`` overwriting each other, so it
is not used.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from gpvton_core.conditions.pose_mapping import body25_from_coco17
from infra.models import fetch_model
from infra.storage import S3Settings
from pipelines.preprocess.estimators.onnx import onnx_providers
from pipelines.preprocess.estimators.pose import PersonPose, PoseConfig, largest_first

DEFAULT_MIN_SCORE_RTMPOSE = 0.3     # DWPose's keypoint threshold
_POSE_MEAN = np.array([123.675, 116.28, 103.53], np.float32)    # RGB, mmpose RTMPose configs
_POSE_STD = np.array([58.395, 57.12, 57.375], np.float32)
_DET_MEAN = _POSE_MEAN[::-1].copy()                             # BGR, mmdet RTMDet configs
_DET_STD = _POSE_STD[::-1].copy()
_BOX_PADDING = 1.25
_NMS_IOU = 0.45


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


class TopDownOnnxRunner:
    """A person detector, then a SimCC pose model on each box; both ONNX on onnxruntime."""

    def __init__(self, cfg: PoseConfig, s3: S3Settings | None):
        import onnxruntime as ort

        det = fetch_model(cfg.detector, s3)           # type: ignore[arg-type]
        pose = fetch_model(cfg.model, s3)             # type: ignore[arg-type]
        self.provenance = f"rtmpose-onnx@{pose.sha256[:12]}+det@{det.sha256[:12]}"
        providers = onnx_providers(cfg.device, "pose")
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
        return largest_first(persons)
