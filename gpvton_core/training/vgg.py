"""VGG-19 feature extractor for the perceptual losses, defined here (torchvision cannot be imported).

Parameter names are torchvision's (``features.N.weight`` / ``features.N.bias``), so the standard
ImageNet file ``vgg19-dcbb9e9d.pth`` loads with ``torch.load(weights_only=True)``; only the layers up
to relu5_1 (``features.0`` … ``features.28``) are built and loaded, the classifier is ignored.
Slices: relu1_1 ``[0:2]``, relu2_1 ``[2:7]``, relu3_1 ``[7:12]``, relu4_1 ``[12:21]``, relu5_1 ``[21:30]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

#: torchvision's VGG-19 "E" configuration
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_LAYERS = 30  # features.0 … features.29 (relu5_1)


def _features() -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=False)]
            cin = int(v)
    return nn.Sequential(*layers[:NUM_LAYERS])


class VGG19Features(nn.Module):
    """Frozen VGG-19 returning relu1_1 … relu5_1 of a [−1, 1] image batch.

    Images too small for all four poolings (the coarse warp levels of runs below 512×384) return
    only the slices they reach; at 512×384 every level yields all five.
    """

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.features = _features()
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG19Features":  # always eval (no dropout/BN anyway)
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        if self.normalize:
            x = ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = []
        for a, b in SLICES:
            for i in range(a, b):
                layer = self.features[i]
                if isinstance(layer, nn.MaxPool2d) and min(x.shape[-2:]) < 2:
                    return out  # too small to pool further (coarse levels of small runs)
                x = layer(x)
            out.append(x)
        return out

    def load_weights(self, path: str | Path) -> "VGG19Features":
        """Load torchvision's ImageNet ``vgg19-*.pth`` (or any state dict with the same key names)."""
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        own = self.state_dict()
        missing = [k for k in own if k not in sd]
        if missing:
            raise ValueError(f"{path}: not a VGG-19 weight file (missing {missing[:3]}...)")
        for k in own:
            if tuple(sd[k].shape) != tuple(own[k].shape):
                raise ValueError(f"{path}: {k} has shape {tuple(sd[k].shape)}, expected {tuple(own[k].shape)}")
        self.load_state_dict({k: sd[k] for k in own})
        return self


class VGGLoss(nn.Module):
    """Σ_i w_i · L1(φ_i(x), φ_i(y)) with w = 1/32, 1/16, 1/8, 1/4, 1 (targets detached)."""

    def __init__(self, vgg: VGG19Features, weights: Sequence[float] = LAYER_WEIGHTS) -> None:
        super().__init__()
        self.vgg = vgg
        self.weights = tuple(weights)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx, fy = self.vgg(x), self.vgg(y)
        loss = x.new_zeros(())
        for w, a, b in zip(self.weights, fx, fy):
            loss = loss + w * torch.nn.functional.l1_loss(a, b.detach())
        return loss
