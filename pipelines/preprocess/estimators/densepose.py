"""DensePose part index of bare photos from a user-supplied model (TorchScript or ONNX).

No DensePose weights ship with gpvton (detectron2's DensePose needs detectron2 at run time and its
training data, DensePose-COCO, is for research use). A user who has a model exports it to a file
with this contract (:class:`DensePoseConfig`):

  input   float32 1×3×H×W: the photo resized (bilinear, aspect not kept) to ``input_size`` (H, W)
          or at its own size when ``None``, in ``channel_order``, scaled to 0..1, then
          ``(x − mean) / std`` (``mean``/``std`` in the chosen channel order);
  output  the first output. ``index``: the part index 0..24 (DensePose numbering, 0 = background)
          as 1×H×W, 1×1×H×W or H×W, integer or float (rounded); ``logits``: 1×25×h×w scores,
          argmax over the 25 channels. Either is resized nearest back to the photo.

Without a model the pipeline falls back to
``gpvton_core.conditions.densepose_approximation.approximate_from_mask`` (person mask + skeleton);
the shard's provenance says which was used (``estimated:model:<provenance>`` vs
``estimated:mask+skeleton``).

TorchScript files are loaded with ``torch.jit.load``: a TorchScript archive holds TorchScript code,
not pickled Python objects, so it cannot run arbitrary Python; it is still the user's own file.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image
from pipelines.config import StorageURL
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpvton_core.conditions.densepose import NUM_PARTS
from infra.models import fetch_model
from infra.storage import S3Settings


class DensePoseModelError(ValueError):
    """The model file or its output breaks the contract (wrong shape, index > 24, unknown format)."""


class DensePoseConfig(BaseModel):
    """The contract of a user DensePose model (the ``densepose:`` section)."""

    model_config = ConfigDict(extra="forbid")

    model: StorageURL | None = Field(None, description="fsspec URL of the model file (None: no model)")
    format: Literal["auto", "torchscript", "onnx"] = Field(
        "auto", description="auto: a zip archive is TorchScript, anything else ONNX")
    input_size: tuple[int, int] | None = Field(None, description="(H, W); None: the photo's own size")
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: Literal["rgb", "bgr"] = "rgb"
    output: Literal["index", "logits"] = "index"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> "DensePoseConfig":
        if self.input_size is not None and min(self.input_size) < 8:
            raise ValueError(f"input_size {self.input_size} is too small")
        if any(s <= 0 for s in self.std):
            raise ValueError("std must be positive")
        return self


def detect_format(path: str) -> Literal["torchscript", "onnx"]:
    """TorchScript archives are zip files (``PK\\x03\\x04``); ONNX files are protobuf."""
    with open(path, "rb") as fh:
        return "torchscript" if fh.read(4) == b"PK\x03\x04" else "onnx"


class DensePoseModel:
    """A user DensePose model under a :class:`DensePoseConfig`; build once per worker."""

    def __init__(self, cfg: DensePoseConfig, s3: S3Settings | None = None) -> None:
        if not cfg.model:
            raise ValueError("densepose.model is not set")
        self.cfg = cfg
        mf = fetch_model(cfg.model, s3)
        fmt = detect_format(mf.path) if cfg.format == "auto" else cfg.format
        self.format = fmt
        self.provenance = f"{fmt}-densepose@{mf.sha256[:12]}"
        if fmt == "torchscript":
            import torch

            if cfg.device == "cuda" and not torch.cuda.is_available():
                raise DensePoseModelError("densepose.device=cuda but torch sees no CUDA device")
            self._device = "cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu"
            try:
                self._module = torch.jit.load(mf.path, map_location=self._device).eval()
            except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError and others
                raise DensePoseModelError(f"cannot load the TorchScript model {cfg.model}: {exc}") from None
        else:
            import onnxruntime as ort

            from pipelines.preprocess.estimators.onnx import onnx_providers

            try:
                providers = onnx_providers(cfg.device, "densepose")
            except RuntimeError as exc:
                raise DensePoseModelError(str(exc)) from None
            try:
                self._session = ort.InferenceSession(mf.path, providers=providers)
            except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
                raise DensePoseModelError(f"cannot load the ONNX model {cfg.model}: {exc}") from None
            inputs = self._session.get_inputs()
            if len(inputs) != 1:
                raise DensePoseModelError(f"{cfg.model}: expected one 1×3×H×W input, got "
                                          f"{[(i.name, i.shape) for i in inputs]}")
            self._input = inputs[0].name

    def _prepare(self, rgb: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        img = rgb
        if cfg.input_size is not None and tuple(cfg.input_size) != rgb.shape[:2]:
            h, w = cfg.input_size
            img = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
        x = img.astype(np.float32) / 255.0
        if cfg.channel_order == "bgr":
            x = x[..., ::-1]
        x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.format == "torchscript":
            import torch

            with torch.inference_mode():
                y = self._module(torch.from_numpy(x).to(self._device))
            if isinstance(y, (tuple, list)):
                y = y[0]
            if isinstance(y, dict):
                y = next(iter(y.values()))
            return y.detach().float().cpu().numpy()
        return np.asarray(self._session.run(None, {self._input: x})[0])

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Part index (uint8 H×W, 0..24) of a photo (uint8 H×W×3, RGB)."""
        a = np.asarray(rgb)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ValueError(f"expected a uint8 H×W×3 RGB image, got {a.dtype} {a.shape}")
        y = self._run(self._prepare(a))
        idx = self._to_index(y)
        if idx.shape != a.shape[:2]:
            idx = np.asarray(Image.fromarray(idx).resize((a.shape[1], a.shape[0]), Image.NEAREST))
        return idx

    def _to_index(self, y: np.ndarray) -> np.ndarray:
        what = f"{self.cfg.model} ({self.cfg.output} output)"
        if self.cfg.output == "logits":
            if y.ndim == 4 and y.shape[0] == 1:
                y = y[0]
            if y.ndim != 3 or y.shape[0] != NUM_PARTS:
                raise DensePoseModelError(
                    f"{what}: expected 1×{NUM_PARTS}×H×W logits, got shape {y.shape}")
            return y.argmax(0).astype(np.uint8)
        while y.ndim > 2 and y.shape[0] == 1:
            y = y[0]
        if y.ndim != 2:
            raise DensePoseModelError(f"{what}: expected an H×W part index, got shape {y.shape}")
        if not np.isfinite(y).all():
            raise DensePoseModelError(f"{what}: the part index holds NaN/inf")
        y = np.rint(y)
        lo, hi = float(y.min()), float(y.max())
        if lo < 0 or hi >= NUM_PARTS:
            raise DensePoseModelError(
                f"{what}: part index out of range 0..{NUM_PARTS - 1} (min {lo:g}, max {hi:g}); "
                "for per-part scores set densepose.output=logits")
        return y.astype(np.uint8)
