"""The estimators one preprocessing worker holds: built lazily, once, on first need.

A dataset with full annotations never loads a model; a bare photo loads the pose estimator and the
person segmenter, and the parser / DensePose / matting models only when the user configured them.
Beam builds one :class:`Estimators` per worker in ``DoFn.setup`` and closes it in ``teardown``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

import numpy as np

from pydantic import BaseModel, ConfigDict, Field

from infra.storage import S3Settings
from pipelines.preprocess.estimators.densepose import DensePoseConfig
from pipelines.preprocess.estimators.matting import MattingConfig
from pipelines.preprocess.estimators.parser import ParserConfig
from pipelines.preprocess.estimators.pose import PoseConfig

NO_PARSER = ("no human parsing given and no parser configured: give a parser ONNX file "
             "(--parser URL, e.g. an SCHP LIP/ATR export, see README) or train one on label maps you "
             "own with 'gpvton train parser' and pass its parser.onnx")


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence what native libraries write straight to file descriptor 2 (MediaPipe's glog lines),
    unless debug logging is on (``gpvton -v``)."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FramingConfig(BaseModel):
    """How bare photos are put into the working 3:4 frame, and when a person is unusable."""

    model_config = ConfigDict(extra="forbid")

    person_margin: float = Field(0.06, ge=0.0, le=1.0, description="of the person's height, each side")
    garment_margin: float = Field(0.08, ge=0.0, le=1.0)
    framed_fraction: float = Field(0.6, gt=0.0, le=1.0,
                                   description="a 3:4 photo whose person spans this share of its height stays whole")
    min_person_height: float = Field(0.5, gt=0.0, le=4.0,
                                     description="person height in original pixels, as a share of the working height")
    second_person_min_size: float = Field(0.35, gt=0.0, le=1.0,
                                          description="a second person counts when at least this tall relative to the first")


class EstimatorsConfig(BaseModel):
    """Every estimator of preprocessing; keys of the preprocess config of the same names."""

    model_config = ConfigDict(extra="forbid")

    pose: PoseConfig = Field(default_factory=PoseConfig)
    parser: ParserConfig = Field(default_factory=ParserConfig)
    densepose: DensePoseConfig = Field(default_factory=DensePoseConfig)
    garment_matting: MattingConfig = Field(default_factory=MattingConfig)
    framing: FramingConfig = Field(default_factory=FramingConfig)
    batch_size: int = Field(8, ge=1, le=256, description="items per estimator batch (BatchElements)")


class Estimators:
    """Lazily built estimators of one worker; ``provenance`` names the models that were used."""

    def __init__(self, cfg: EstimatorsConfig, s3: S3Settings | None = None):
        self.cfg, self.s3 = cfg, s3
        self._built: dict[str, Any] = {}

    def _get(self, name: str, build, warm_up: str | None = None) -> Any:
        if name not in self._built:
            est = build()
            if warm_up:   # MediaPipe builds its graphs on first use, printing C++ log lines: do it quietly
                with quiet_native_stderr():
                    getattr(est, warm_up)(np.full((64, 48, 3), 255, np.uint8))
            self._built[name] = est
        return self._built[name]

    @property
    def pose(self):
        if self.cfg.pose.backend == "none":
            return None
        from pipelines.preprocess.estimators.pose import PoseEstimator

        return self._get("pose", lambda: PoseEstimator(self.cfg.pose, self.s3),
                         "estimate" if self.cfg.pose.backend == "mediapipe" else None)

    @property
    def segmenter(self):
        if self.cfg.pose.backend != "mediapipe":
            return None
        from pipelines.preprocess.estimators.segmenter import PersonSegmenter

        return self._get("segmenter", PersonSegmenter, "mask")

    @property
    def parser(self):
        if not self.cfg.parser.model:
            return None
        from pipelines.preprocess.estimators.parser import HumanParser, ParserConfig

        # Only what differs from the defaults counts as set, so that a parser.json next to the
        # model (its own contract) fills the rest even after the config went through a round trip.
        cfg = ParserConfig.model_validate(self.cfg.parser.model_dump(exclude_defaults=True))
        return self._get("parser", lambda: HumanParser(cfg, self.s3))

    @property
    def densepose(self):
        if not self.cfg.densepose.model:
            return None
        from pipelines.preprocess.estimators.densepose import DensePoseModel

        return self._get("densepose", lambda: DensePoseModel(self.cfg.densepose, self.s3))

    @property
    def matting(self):
        if not self.cfg.garment_matting.model:
            return None
        from pipelines.preprocess.estimators.matting import GarmentMatting

        return self._get("matting", lambda: GarmentMatting(self.cfg.garment_matting, self.s3))

    def close(self) -> None:
        for est in self._built.values():
            close = getattr(est, "close", None)
            if callable(close):
                close()
        self._built.clear()
