"""A compact human-parsing network and the label schemes it can predict.

GP-VTON's own parser is not public, and SCHP-style parsers are trained on LIP / ATR, whose
licences are not the retailer's. ``gpvton train parser`` therefore trains :class:`ParserNet` on
the label maps a user owns (the 29-label parsings that ``gpvton preprocess`` wrote into the
condition shards), and exports it to safetensors and ONNX for
``pipelines.preprocess.estimators.parser.HumanParser``.

The network is a small Res-UNet with the warping module's block design (parameter-free instance
norm, so one photo per batch trains as well as many): a stem and ``len(channels) - 1`` stride-2
stages, each a down-sampling conv and a residual block; the decoder upsamples bilinearly to each
skip's size, so any input size works (multiples of 16 avoid rounding). Its blocks are its own,
not :mod:`gpvton_core.blocks`': they must keep exporting to ONNX (``F.instance_norm`` becomes
``InstanceNormalization``), whatever the try-on network's blocks do for speed. Input: RGB scaled
to 0..1, then normalised with :data:`INPUT_MEAN` / :data:`INPUT_STD`; output: ``num_classes``
logits at the input size.

Label schemes (``SCHEMES``; "left" is always the person's left):

* ``gp29`` — GP-VTON's 29 labels (:data:`gpvton_core.conditions.labels.LABEL_NAMES`).
* ``lip`` — 20 classes in SCHP's LIP order. Class 10 is LIP's "Jumpsuits"; VITON-HD's
  ``image-parse-v3`` (CIHP-style) uses that slot for neck skin, and that is what
  ``parsing.from_lip`` reads it as.
* ``atr`` — 18 classes in SCHP's ATR order (class 11 "Face" covers face and neck).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpvton_core.blocks import conv3x3, scaled
from gpvton_core.conditions.labels import LABEL_NAMES, NUM_LABELS, Label

#: Channels of the stem and of each stride-2 stage at width 1.0.
PARSER_CHANNELS = (32, 64, 128, 256, 256)
#: Our parser's input normalisation (RGB, 0..1 units), written into its ``parser.json``.
INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.5, 0.5, 0.5)

LIP_CLASSES = ("Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat",
               "Socks", "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm",
               "Left-leg", "Right-leg", "Left-shoe", "Right-shoe")
ATR_CLASSES = ("Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress",
               "Belt", "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm",
               "Right-arm", "Bag", "Scarf")


SCHEMES: dict[str, int] = {"gp29": NUM_LABELS, "lip": len(LIP_CLASSES), "atr": len(ATR_CLASSES)}

#: Left/right class pairs per scheme: what a horizontal flip swaps.
LR_PAIRS: dict[str, tuple[tuple[int, int], ...]] = {
    "lip": ((14, 15), (16, 17), (18, 19)),
    "atr": ((9, 10), (12, 13), (14, 15)),
    "gp29": tuple((getattr(Label, "LEFT_" + n), getattr(Label, "RIGHT_" + n))
                  for n in ("PANTS", "ARM", "LEG", "SHOE", "SLEEVE_UPPER", "SLEEVE_DRESSES", "SLEEVE_COAT")),
}

#: GP-29 → LIP labels in VITON-HD's convention (10 = neck skin), the inverse of
#: ``parsing.LIP_TO_GP``: sleeves fold into their garment, left/right pants into pants; LIP has
#: no bag or belt class (LIP leaves such items background).
GP_TO_LIP = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
                      5, 5, 0, 6, 6, 7, 7, 0], dtype=np.uint8)


def class_names(scheme: str) -> tuple[str, ...]:
    if scheme == "lip":
        return LIP_CLASSES
    if scheme == "atr":
        return ATR_CLASSES
    if scheme == "gp29":
        return LABEL_NAMES
    raise ValueError(f"unknown label scheme {scheme!r}; use one of {sorted(SCHEMES)}")


def flip_permutation(scheme: str, num_classes: int | None = None) -> list[int]:
    """Channel order of a flipped image's logits: index ``c`` holds the class ``c`` swaps with."""
    n = SCHEMES[scheme] if num_classes is None else num_classes
    perm = list(range(n))
    for a, b in LR_PAIRS[scheme]:
        if a < n and b < n:
            perm[a], perm[b] = b, a
    return perm


def flip_labels(labels: np.ndarray, scheme: str) -> np.ndarray:
    """A label map mirrored left↔right, with the person's left/right classes swapped."""
    lut = np.asarray(flip_permutation(scheme, 256), np.uint8)
    return lut[np.asarray(labels)[..., ::-1]]


def collapse_gp29(gp: np.ndarray, scheme: str) -> np.ndarray:
    """A 29-label parsing in the training scheme (``gp29`` unchanged, ``lip`` via :data:`GP_TO_LIP`)."""
    a = np.asarray(gp, np.uint8)
    if scheme == "gp29":
        return a
    if scheme == "lip":
        return GP_TO_LIP[a]
    raise ValueError(f"cannot train a {scheme!r} parser from 29-label parsings; use gp29 or lip")


class _Norm(nn.Module):
    """Parameter-free instance norm (eps 1e-5), exported to ONNX as InstanceNormalization."""

    def forward(self, x: Tensor) -> Tensor:
        return F.instance_norm(x, eps=1e-5)


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_Norm(), nn.ReLU(), conv3x3(cin, cout, bias=False, stride=2))


class _Res(nn.Module):
    """x + Conv(ReLU(IN(Conv(ReLU(IN(x))))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(_Norm(), nn.ReLU(), conv3x3(channels, channels, bias=False),
                                   _Norm(), nn.ReLU(), conv3x3(channels, channels, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class ParserNet(nn.Module):
    """Res-UNet parser: RGB (normalised, N×3×H×W) → class logits (N×``num_classes``×H×W)."""

    def __init__(self, num_classes: int = 29, width: float = 1.0,
                 channels: Sequence[int] = PARSER_CHANNELS) -> None:
        super().__init__()
        self.num_classes, self.width = int(num_classes), float(width)
        ch = [scaled(c, width) for c in channels]
        self.stem = nn.Sequential(conv3x3(3, ch[0]), _Res(ch[0]))
        self.down = nn.ModuleList(nn.Sequential(_down(a, b), _Res(b)) for a, b in zip(ch[:-1], ch[1:]))
        self.up = nn.ModuleList(
            nn.Sequential(conv3x3(hi + lo, lo, bias=False), _Norm(), nn.ReLU(), _Res(lo))
            for hi, lo in zip(ch[:0:-1], ch[-2::-1]))
        self.head = nn.Sequential(_Norm(), nn.ReLU(), nn.Conv2d(ch[0], self.num_classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        skips = [self.stem(x)]
        for stage in self.down:
            skips.append(stage(skips[-1]))
        y = skips.pop()
        for block in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], 1))
        return self.head(y)


def normalize_rgb(images: Tensor) -> Tensor:
    """uint8-valued RGB (N×3×H×W, 0..255) → the network input."""
    mean = torch.tensor(INPUT_MEAN, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(INPUT_STD, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def mean_iou(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> float:
    """Mean IoU over the classes present in ``pred`` or ``ref`` (background included)."""
    p, r = np.asarray(pred).ravel(), np.asarray(ref).ravel()
    if p.shape != r.shape:
        raise ValueError(f"shape mismatch {np.asarray(pred).shape} vs {np.asarray(ref).shape}")
    inter = np.bincount(p[p == r], minlength=num_classes)[:num_classes]
    area_p = np.bincount(p, minlength=num_classes)[:num_classes]
    area_r = np.bincount(r, minlength=num_classes)[:num_classes]
    union = area_p + area_r - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else float("nan")
