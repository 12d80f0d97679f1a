"""Garment masks on busy backgrounds: a user-supplied salient-object / matting ONNX model.

Product shots on a plain light background need no model (``gpvton_core.conditions.garment.
mask_from_plain_background``). For anything else the user names an ONNX file with the contract
below; the defaults are those of U²-Net (the salient-object model the try-on community uses for
cloth masks); BiRefNet-style models take ``input_size: [1024, 1024]`` and ``activation: sigmoid``.

Contract (all configurable):
  input   float32 N×3×H×W, RGB, ``(x/255 − mean) / std``, the photo resized (bilinear) to
          ``input_size`` without keeping its aspect;
  output  ``output_index`` of the model's outputs: N×1×h×w (or N×h×w) saliency; ``activation``
          ``sigmoid`` for logits, ``none`` for probabilities; ``normalize: minmax`` rescales each
          map to 0..1 (U²-Net's own post-processing); resized back to the photo (bilinear) and
          thresholded at ``threshold``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image
from pipelines.config import StorageURL
from pydantic import BaseModel, ConfigDict, Field

from infra.models import fetch_model
from pipelines.preprocess.estimators.onnx import onnx_providers
from infra.storage import S3Settings


class MattingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: StorageURL | None = Field(None, description="URL of the ONNX file; None = plain backgrounds only")
    input_size: tuple[int, int] = (320, 320)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    output_index: int = 0
    activation: Literal["none", "sigmoid"] = "none"
    normalize: Literal["none", "minmax"] = "minmax"
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class GarmentMatting:
    """Loads the ONNX model once; ``mask(rgb)`` → bool H×W garment mask."""

    def __init__(self, cfg: MattingConfig, s3: S3Settings | None = None):
        if not cfg.model:
            raise ValueError("garment_matting.model is not set")
        import onnxruntime as ort

        self.cfg = cfg
        self.file = fetch_model(cfg.model, s3)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(self.file.path, opts, providers=onnx_providers(cfg.device, "garment_matting"))
        self.input_name = self.session.get_inputs()[0].name

    @property
    def provenance(self) -> str:
        return f"onnx-matting@{self.file.sha256[:12]}"

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """Foreground probability (float32 H×W, 0..1) at the photo's size."""
        c = self.cfg
        h, w = rgb.shape[:2]
        x = np.asarray(Image.fromarray(rgb).resize((c.input_size[1], c.input_size[0]), Image.BILINEAR),
                       np.float32) / 255.0
        x = (x - np.asarray(c.mean, np.float32)) / np.asarray(c.std, np.float32)
        out = self.session.run(None, {self.input_name: x.transpose(2, 0, 1)[None]})[c.output_index]
        p = np.asarray(out, np.float32).reshape(out.shape[-2:])
        if c.activation == "sigmoid":
            p = 1.0 / (1.0 + np.exp(-p))
        if c.normalize == "minmax":
            lo, hi = float(p.min()), float(p.max())
            p = (p - lo) / (hi - lo) if hi > lo else np.zeros_like(p)
        return np.asarray(Image.fromarray(p).resize((w, h), Image.BILINEAR), np.float32)

    def mask(self, rgb: np.ndarray) -> np.ndarray:
        return self.probability(rgb) >= self.cfg.threshold

    def close(self) -> None:
        self.session = None
