"""Human parsing of bare photos with a user-supplied ONNX parser (SCHP-style or ``gpvton train parser``).

No parser weights ship with gpvton: LIP, ATR and GP-VTON's parsing release are not licensed for
commercial use. Two ways to get one (a photo without a parsing and with no parser configured is
an error row whose reason, :data:`NO_PARSER_REASON`, names both):

(a) an ONNX export of a Self-Correction Human Parsing (SCHP) model, the file the try-on community
    already uses, trained on LIP (20 classes) or ATR (18 classes);
(b) ``gpvton train parser``: our :class:`gpvton_core.parser.ParserNet` trained on the user's own
    label maps; its run writes ``parser.onnx`` and ``parser.json`` (this config's fields), and the
    JSON next to the model is picked up automatically.

The contract (:class:`ParserConfig`) and its defaults, which are SCHP's
(``simple_extractor.py`` / ``evaluate.py``):

* ``input_size`` (H, W): LIP 473×473, ATR 512×512 (Pascal-Person-Part 512×512). ``None`` takes the
  model's own fixed input size when it has one, else SCHP's size for ``classes``.
* ``keep_aspect``: SCHP warps the whole photo, centred, into the input aspect with a black border
  (``cv2.warpAffine``, ``borderValue=(0, 0, 0)``): we pad with black to that aspect, resize
  (bilinear), and map the logits back through the same box, so the parsing is at the photo's size.
* ``channel_order`` ``bgr`` (SCHP reads with OpenCV), pixels scaled to 0..1, then
  ``(x − mean) / std`` with ``mean`` (0.406, 0.456, 0.485), ``std`` (0.225, 0.224, 0.229) — ImageNet's
  statistics written in BGR order. ``mean``/``std`` are always in the chosen channel order.
* ``classes`` and their order (:data:`gpvton_core.parser.LIP_CLASSES` / ``ATR_CLASSES``):
  LIP 0 Background, 1 Hat, 2 Hair, 3 Glove, 4 Sunglasses, 5 Upper-clothes, 6 Dress, 7 Coat,
  8 Socks, 9 Pants, 10 Jumpsuits, 11 Scarf, 12 Skirt, 13 Face, 14 Left-arm, 15 Right-arm,
  16 Left-leg, 17 Right-leg, 18 Left-shoe, 19 Right-shoe; ATR 0 Background, 1 Hat, 2 Hair,
  3 Sunglasses, 4 Upper-clothes, 5 Skirt, 6 Pants, 7 Dress, 8 Belt, 9 Left-shoe, 10 Right-shoe,
  11 Face, 12 Left-leg, 13 Right-leg, 14 Left-arm, 15 Right-arm, 16 Bag, 17 Scarf. These orders
  are what ``parsing.LIP_TO_GP`` / ``ATR_TO_GP`` read, with one difference: VITON-HD's LIP-style
  maps use slot 10 for neck skin, SCHP's LIP model for Jumpsuits. ``class_map`` (model index →
  output label) therefore defaults, for ``lip`` only, to sending 10 to 6 (Dress, the one-piece
  class), so a jumpsuit never becomes neck; a CIHP-order model (10 = torso skin) sets the
  identity ``class_map`` (as ``gpvton train parser --labels lip`` does). ``class_map`` also adapts
  a model whose classes come in another order.
* ``output`` ``logits``; the model's outputs are a list (SCHP: parsing, fusion, edge; logits at ¼
  of the input size). ``output_index`` ``None`` takes the last output with as many channels as the
  model has classes (SCHP: the fusion output, what ``simple_extractor.py`` uses). Logits are
  upsampled bilinearly (align_corners=False) to the photo, then argmax. ``labels`` models (integer
  map out) are sampled nearest.
* ``flip`` (off; SCHP's ``evaluate.py`` uses it): average the logits of the photo and of its mirror
  image, whose left/right channels are swapped back (``flip_pairs``, default the scheme's:
  LIP arms 14↔15, legs 16↔17, shoes 18↔19; ATR shoes 9↔10, legs 12↔13, arms 14↔15).

``parse`` returns uint8 labels at the photo's size in the ``classes`` scheme: ``lip`` / ``atr``
go through ``parsing.from_lip`` / ``from_atr`` with the pose, ``gp29`` is used as is.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpvton_core.parser import LR_PAIRS, SCHEMES
from pipelines.config import StorageURL

if TYPE_CHECKING:
    from infra.storage import S3Settings

NO_PARSER_REASON = (
    "no human parsing given and no parser configured: set parser.model to a SCHP-style ONNX "
    "parser (LIP 20 or ATR 18 classes, parser.classes=lip|atr), or train one on your own label maps "
    "with `gpvton train parser` and set parser.model=RUN/parser.onnx")

SCHP_INPUT_SIZE = {"lip": (473, 473), "atr": (512, 512)}
SCHP_MEAN_BGR = (0.406, 0.456, 0.485)
SCHP_STD_BGR = (0.225, 0.224, 0.229)
#: SCHP's LIP "Jumpsuits" (10) → Dress (6): in the LIP-style maps ``from_lip`` reads, 10 is neck skin.
SCHP_LIP_CLASS_MAP = tuple(6 if i == 10 else i for i in range(SCHEMES["lip"]))
_ROW_CHUNK = 256   # rows of the photo resampled at once: bounds memory on large photos


class ParserConfig(BaseModel):
    """The contract of an ONNX human parser (the ``parser:`` section; SCHP's defaults)."""

    model_config = ConfigDict(extra="forbid")

    model: Optional[StorageURL] = Field(None, description="fsspec URL of the .onnx file (None: no parser)")
    classes: Literal["lip", "atr", "gp29"] = "lip"
    input_size: Optional[tuple[int, int]] = Field(None, description="(H, W); None: the model's or SCHP's")
    channel_order: Literal["rgb", "bgr"] = "bgr"
    mean: tuple[float, float, float] = SCHP_MEAN_BGR
    std: tuple[float, float, float] = SCHP_STD_BGR
    keep_aspect: bool = True
    flip: bool = False
    flip_pairs: Optional[list[tuple[int, int]]] = Field(None, description="model channels a flip swaps")
    output: Literal["logits", "labels"] = "logits"
    output_index: Optional[int] = None
    class_map: Optional[list[int]] = Field(None, description="model class index → output label")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Optional[int] = Field(None, ge=1, description="onnxruntime intra-op threads")

    @model_validator(mode="after")
    def _check(self) -> "ParserConfig":
        if self.input_size is not None and min(self.input_size) < 8:
            raise ValueError(f"input_size {self.input_size} is too small")
        if any(s <= 0 for s in self.std):
            raise ValueError("std must be positive")
        if self.flip and self.output == "labels":
            raise ValueError("flip averaging needs logits (output: logits)")
        n = SCHEMES[self.classes]
        if self.class_map is not None and any(not 0 <= v < n for v in self.class_map):
            raise ValueError(f"class_map values must be {self.classes} labels 0..{n - 1}")
        return self

    def model_classes(self) -> int:
        """How many classes the model outputs."""
        return len(self.class_map) if self.class_map is not None else SCHEMES[self.classes]

    def label_map(self) -> np.ndarray:
        """Lookup table model index → output label."""
        if self.class_map is not None:
            return np.asarray(self.class_map, np.uint8)
        if self.classes == "lip":
            return np.asarray(SCHP_LIP_CLASS_MAP, np.uint8)
        return np.arange(SCHEMES[self.classes], dtype=np.uint8)

    def flip_permutation(self) -> list[int]:
        perm = list(range(self.model_classes()))
        for a, b in (self.flip_pairs if self.flip_pairs is not None else LR_PAIRS[self.classes]):
            if max(a, b) >= len(perm):
                raise ValueError(f"flip pair ({a}, {b}) outside the model's {len(perm)} classes")
            perm[a], perm[b] = b, a
        return perm


def sidecar_url(model_url: str) -> str:
    """``RUN/parser.onnx`` → ``RUN/parser.json``."""
    return (model_url[:-5] if model_url.endswith(".onnx") else model_url) + ".json"


def _read_json(url: str, s3: "S3Settings | None") -> dict:
    from infra.models import fetch_model

    with open(fetch_model(url, s3).path, "rb") as fh:
        return json.loads(fh.read().decode("utf-8"))


def load_parser_config(url: str, s3: "S3Settings | None" = None) -> ParserConfig:
    """A parser contract from JSON (``parser.json``); without ``model`` it is the ``.onnx`` beside it."""
    data = _read_json(url, s3)
    if not data.get("model"):
        data["model"] = (url[:-5] if url.endswith(".json") else url) + ".onnx"
    return ParserConfig.model_validate(data)


def with_sidecar(cfg: ParserConfig, s3: "S3Settings | None" = None) -> ParserConfig:
    """``cfg`` completed by the JSON contract next to its model, where there is one: the sidecar
    gives every field the user did not set explicitly (``model_fields_set``)."""
    if not cfg.model:
        return cfg
    try:
        side = _read_json(sidecar_url(cfg.model), s3)
    except FileNotFoundError:
        return cfg
    side.pop("model", None)
    side.update({k: getattr(cfg, k) for k in cfg.model_fields_set})
    side["model"] = cfg.model
    return ParserConfig.model_validate(side)


class HumanParser:
    """An ONNX human parser under a :class:`ParserConfig`; build once per worker."""

    def __init__(self, cfg: ParserConfig, s3: "S3Settings | None" = None) -> None:
        import onnxruntime as ort

        from infra.models import fetch_model

        if not cfg.model:
            raise ValueError(NO_PARSER_REASON)
        cfg = with_sidecar(cfg, s3)
        self.cfg = cfg
        mf = fetch_model(cfg.model, s3)
        opts = ort.SessionOptions()
        if cfg.threads:
            opts.intra_op_num_threads = cfg.threads
        from pipelines.preprocess.estimators.onnx import onnx_providers

        try:
            providers = onnx_providers(cfg.device, "parser")
        except RuntimeError as exc:
            raise ValueError(str(exc)) from None
        try:
            self.session = ort.InferenceSession(mf.path, opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ValueError(f"cannot load the parser model {cfg.model}: {exc}") from None
        self.sha256 = mf.sha256
        inp = self.session.get_inputs()
        if len(inp) != 1 or len(inp[0].shape) != 4:
            raise ValueError(f"{cfg.model}: expected one N×3×H×W input, got "
                             f"{[(i.name, i.shape) for i in inp]}")
        self._input = inp[0].name
        self._half = inp[0].type == "tensor(float16)"
        n, c, h, w = inp[0].shape
        if isinstance(c, int) and c != 3:
            raise ValueError(f"{cfg.model}: the input has {c} channels, expected 3 (an RGB/BGR photo)")
        self.dynamic_batch = not isinstance(n, int)
        if not self.dynamic_batch and n != 1:
            raise ValueError(f"{cfg.model}: a fixed batch size must be 1, the model takes {n}")
        fixed = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        if cfg.input_size is not None and fixed is not None and tuple(cfg.input_size) != fixed:
            raise ValueError(f"{cfg.model}: parser.input_size {tuple(cfg.input_size)} but the model takes {fixed}")
        size = cfg.input_size or fixed or SCHP_INPUT_SIZE.get(cfg.classes)
        if size is None:
            raise ValueError(f"{cfg.model}: set parser.input_size (H, W); the model has no fixed size")
        self.input_size = (int(size[0]), int(size[1]))
        self._out = self._pick_output()
        self._lut = cfg.label_map()
        self._perm = cfg.flip_permutation() if cfg.flip else None

    def _pick_output(self) -> int:
        outs = self.session.get_outputs()
        n = len(outs)
        if self.cfg.output_index is not None:
            if not -n <= self.cfg.output_index < n:
                raise ValueError(f"{self.cfg.model}: output_index {self.cfg.output_index} but the model has "
                                 f"{n} outputs")
            return self.cfg.output_index % n
        if n == 1:
            return 0
        if self.cfg.output == "labels":
            raise ValueError(f"{self.cfg.model}: {n} outputs; set parser.output_index to the label map's")
        k = self.cfg.model_classes()
        fits = [i for i, o in enumerate(outs) if len(o.shape) == 4 and o.shape[1] == k]
        if not fits:
            raise ValueError(f"{self.cfg.model}: no output has {k} ({self.cfg.classes}) class channels; "
                             f"outputs {[(o.name, o.shape) for o in outs]}: set parser.output_index")
        return fits[-1]

    @property
    def scheme(self) -> str:
        return self.cfg.classes

    @property
    def provenance(self) -> str:
        return f"onnx-parser:{self.cfg.classes}@{self.sha256[:12]}"

    # --- pre / post ---------------------------------------------------------------------------
    def _canvas(self, hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """(canvas H, canvas W, top, left) of the photo padded, centred, to the input aspect."""
        h, w = hw
        if not self.cfg.keep_aspect:
            return h, w, 0, 0
        H, W = self.input_size
        if h * W >= w * H:                     # taller than the input: pad the width
            cw = max(w, int(round(h * W / H)))
            return h, cw, 0, (cw - w) // 2
        ch = max(h, int(round(w * H / W)))
        return ch, w, (ch - h) // 2, 0

    def _prepare(self, rgb: np.ndarray) -> np.ndarray:
        from PIL import Image

        a = np.asarray(rgb)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ValueError(f"parser input must be H×W×3 uint8 RGB, got {a.shape} {a.dtype}")
        ch, cw, top, left = self._canvas(a.shape[:2])
        if (ch, cw) != a.shape[:2]:
            canvas = np.zeros((ch, cw, 3), np.uint8)
            canvas[top:top + a.shape[0], left:left + a.shape[1]] = a
            a = canvas
        H, W = self.input_size
        if a.shape[:2] != (H, W):
            a = np.asarray(Image.fromarray(a).resize((W, H), Image.Resampling.BILINEAR))
        x = a.astype(np.float32) / 255.0
        if self.cfg.channel_order == "bgr":
            x = x[..., ::-1]
        x = (x - np.asarray(self.cfg.mean, np.float32)) / np.asarray(self.cfg.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def _to_image(self, out: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """Model output of one photo (C×h×w logits or h×w labels) → labels at the photo's size."""
        import torch
        import torch.nn.functional as F

        h, w = hw
        ch, cw, top, left = self._canvas(hw)
        t = torch.from_numpy(np.ascontiguousarray(out)).float()
        logits = self.cfg.output == "logits"
        t = t[None] if logits else t.reshape(1, 1, *t.shape[-2:])
        xs = (torch.arange(w, dtype=torch.float32) + left + 0.5) * (2.0 / cw) - 1.0
        res = np.empty((h, w), np.uint8)
        for y0 in range(0, h, _ROW_CHUNK):
            ys = (torch.arange(y0, min(h, y0 + _ROW_CHUNK), dtype=torch.float32) + top + 0.5) * (2.0 / ch) - 1.0
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            grid = torch.stack([gx, gy], -1)[None]
            s = F.grid_sample(t, grid, mode="bilinear" if logits else "nearest", align_corners=False)
            lab = s[0].argmax(0) if logits else s[0, 0].round().long()
            res[y0:y0 + len(ys)] = lab.numpy().astype(np.uint8)
        if res.size and int(res.max()) >= len(self._lut):
            raise ValueError(f"{self.cfg.model}: label {int(res.max())} outside the model's {len(self._lut)} classes")
        return self._lut[res]

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._half:
            x = x.astype(np.float16)
        y = np.asarray(self.session.run(None, {self._input: x})[self._out], np.float32)
        if self.cfg.output == "logits":
            if y.ndim != 4 or y.shape[1] != self.cfg.model_classes():
                raise ValueError(f"{self.cfg.model}: output {self._out} has shape {y.shape}, expected "
                                 f"N×{self.cfg.model_classes()}×h×w logits ({self.cfg.classes})")
        elif y.ndim == 4:
            y = y[:, 0]
        return y

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """Model outputs of a batch, flip-averaged when configured."""
        if self._perm is None:
            return self._run(x)
        xf = np.ascontiguousarray(x[..., ::-1])
        if self.dynamic_batch:
            y = self._run(np.concatenate([x, xf]))
            y, yf = y[:len(x)], y[len(x):]
        else:
            y, yf = self._run(x), self._run(xf)
        return (y + yf[:, self._perm, :, ::-1]) / 2

    # --- API ------------------------------------------------------------------------------------
    def parse(self, rgb: np.ndarray) -> np.ndarray:
        """Labels (uint8 H×W, the ``classes`` scheme) of one RGB photo (H×W×3 uint8)."""
        return self.parse_batch([rgb])[0]

    def parse_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """One session run for the whole list when the model's batch axis is dynamic, else one by one."""
        if not images:
            return []
        xs = np.stack([self._prepare(im) for im in images])
        if self.dynamic_batch:
            ys = self._forward(xs)
        else:
            ys = np.concatenate([self._forward(xs[i:i + 1]) for i in range(len(xs))])
        return [self._to_image(y, np.asarray(im).shape[:2]) for y, im in zip(ys, images)]
