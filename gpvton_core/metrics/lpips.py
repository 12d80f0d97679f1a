"""LPIPS (Zhang et al., CVPR 2018), version 0.1: a trunk network + calibrated 1×1 linear layers.

Protocol (what the reference ``lpips`` package computes with ``LPIPS(net=..., version="0.1")``):

1. Inputs are RGB in ``[-1, 1]`` (pass ``normalize=True`` for ``[0, 1]``), any size ≥ 32 px,
   compared at the given resolution (no resize).
2. A fixed scaling layer: ``(x - shift) / scale`` with shift ``(-.030, -.088, -.188)`` and scale
   ``(.458, .448, .450)`` (the ImageNet statistics in the ``[-1, 1]`` range).
3. Five trunk activations: AlexNet ``relu1..relu5`` (channels 64, 192, 384, 256, 256) or VGG16
   ``relu1_2, relu2_2, relu3_3, relu4_3, relu5_3`` (64, 128, 256, 512, 512).
4. Each activation is unit-normalised over channels (``x / (‖x‖₂ + 1e-10)``), the two images'
   squared differences are weighted by the non-negative linear layer ``linK`` (a 1×1 convolution,
   no bias), averaged over space, and summed over the five layers. Lower is more similar.

Weight files (not bundled):

* the trunk: torchvision's ImageNet state dict, keys ``features.N.weight/bias``
  (``alexnet-owt-7be5be79.pth`` or ``vgg16-397923af.pth``; classifier keys are ignored);
* the linear layers: lpips v0.1 ``alex.pth`` / ``vgg.pth``, keys ``lin0.model.1.weight`` …
  ``lin4.model.1.weight`` (shape ``(1, C, 1, 1)``).

A single combined file with both key sets (or the lpips package's own full state dict, trunk
keys under ``net.sliceK.N.*``) is accepted too. See :func:`load_lpips`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from gpvton_core.metrics.inception import WeightFileError, read_state_dict

# Per trunk: the channel widths of the five taps, and the torchvision ``features`` index ranges of
# the five slices (slice k ends at the ReLU whose output is tapped).
TRUNKS: dict[str, dict] = {
    "alex": {
        "channels": (64, 192, 384, 256, 256),
        "slices": ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12)),
        "trunk_file": "alexnet-owt-7be5be79.pth",
        "lin_file": "alex.pth",
    },
    "vgg": {
        "channels": (64, 128, 256, 512, 512),
        "slices": ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30)),
        "trunk_file": "vgg16-397923af.pth",
        "lin_file": "vgg.pth",
    },
}


def _alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=False),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=False),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            c_in = v
    return nn.Sequential(*layers)


class NetLinLayer(nn.Module):
    """``linK.model.1.weight``: dropout (index 0, identity at eval) + 1×1 conv without bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """``LPIPS(net="alex"|"vgg")(a, b)`` → distances shaped (N,). Always in eval mode."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in TRUNKS:
            raise ValueError(f"LPIPS net must be one of {sorted(TRUNKS)}, got {net!r}")
        self.net_name = net
        spec = TRUNKS[net]
        self.features = _alexnet_features() if net == "alex" else _vgg16_features()
        self.slices = spec["slices"]
        self.lins = nn.ModuleList(NetLinLayer(c) for c in spec["channels"])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1),
                             persistent=False)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "LPIPS":
        return super().train(False)

    # Key layout of the two weight files.
    def trunk_state_dict(self) -> dict[str, Tensor]:
        return {f"features.{k}": v for k, v in self.features.state_dict().items()}

    def lin_state_dict(self) -> dict[str, Tensor]:
        return {f"lin{i}.{k}": v for i, lin in enumerate(self.lins) for k, v in lin.state_dict().items()}

    def taps(self, x: Tensor) -> list[Tensor]:
        x = (x - self.shift) / self.scale
        out = []
        for start, end in self.slices:
            for i in range(start, end):
                x = self.features[i](x)
            out.append(x)
        return out

    def forward(self, a: Tensor, b: Tensor, normalize: bool = False) -> Tensor:
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(f"LPIPS needs two RGB batches of one shape, got {tuple(a.shape)} "
                             f"and {tuple(b.shape)}")
        a, b = a.float(), b.float()
        if normalize:  # [0, 1] → [-1, 1]
            a, b = 2 * a - 1, 2 * b - 1
        total = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        for fa, fb, lin in zip(self.taps(a), self.taps(b), self.lins):
            na = fa / (torch.sqrt((fa ** 2).sum(dim=1, keepdim=True)) + 1e-10)
            nb = fb / (torch.sqrt((fb ** 2).sum(dim=1, keepdim=True)) + 1e-10)
            total = total + lin((na - nb) ** 2).mean(dim=(1, 2, 3))
        return total


def _lpips_package_trunk_keys(state: Mapping[str, Tensor], net: str) -> dict[str, Tensor]:
    """Map the lpips package's ``net.sliceK.N.*`` trunk keys onto torchvision ``features.N.*``."""
    out = {}
    for k, v in state.items():
        if k.startswith("net.slice"):
            _, rest = k.split("net.slice", 1)
            _slice, idx, tail = rest.split(".", 2)
            out[f"features.{idx}.{tail}"] = v
    return out


def split_lpips_state(state: Mapping[str, Tensor], net: str) -> tuple[dict, dict]:
    """(trunk keys ``features.*``, linear keys ``linK.model.1.weight``) found in one state dict."""
    trunk = {k: v for k, v in state.items() if k.startswith("features.")}
    trunk.update(_lpips_package_trunk_keys(state, net))
    lin = {k: v for k, v in state.items() if k.startswith("lin")}
    return trunk, lin


def missing_files_error(folder: str | Path, net: str, missing: list[str]) -> WeightFileError:
    """The error for a weights folder that lacks some of ``net``'s two files (local or remote)."""
    spec = TRUNKS[net]
    return WeightFileError(
        f"LPIPS ({net}) weights: {folder} lacks {', '.join(missing)} (expected the torchvision "
        f"trunk {spec['trunk_file']} and the lpips v0.1 linear layers {spec['lin_file']})")


def resolve_lpips_files(path: str | Path, net: str) -> list[Path]:
    """The weight files for ``net`` under ``path`` (a directory) or ``[path]`` (one file)."""
    p = Path(path)
    spec = TRUNKS[net]
    if p.is_dir():
        missing = [name for name in (spec["trunk_file"], spec["lin_file"]) if not (p / name).is_file()]
        if missing:
            raise missing_files_error(p, net, missing)
        return [p / spec["trunk_file"], p / spec["lin_file"]]
    if not p.is_file():
        raise WeightFileError(f"LPIPS ({net}) weights not found: {p}")
    return [p]


def load_lpips(path: str | Path | None, net: str = "alex") -> LPIPS:
    """LPIPS with the user's trunk and linear-layer weights loaded by key.

    ``path`` is a directory holding ``alexnet-owt-7be5be79.pth`` + ``alex.pth`` (or
    ``vgg16-397923af.pth`` + ``vgg.pth``), or one file with both key sets. ``None`` gives random
    weights (tests only).
    """
    if path is None:
        return LPIPS(net)
    return load_lpips_files(resolve_lpips_files(path, net), net)


def load_lpips_files(files: Sequence[str | Path], net: str = "alex") -> LPIPS:
    """LPIPS with the trunk and linear-layer keys of ``files`` (the two files, or one combined)."""
    model = LPIPS(net)
    trunk: dict[str, Tensor] = {}
    lin: dict[str, Tensor] = {}
    for f in files:
        t, l_ = split_lpips_state(read_state_dict(f, f"LPIPS ({net}) weights"), net)
        trunk.update(t)
        lin.update(l_)
    want_trunk, want_lin = model.trunk_state_dict(), model.lin_state_dict()
    problems = []
    for what, want, got in (("trunk", want_trunk, trunk), ("linear layers", want_lin, lin)):
        missing = [k for k in want if k not in got]
        wrong = [k for k in want if k in got and tuple(got[k].shape) != tuple(want[k].shape)]
        if missing:
            problems.append(f"{what}: {len(missing)} missing keys (e.g. {missing[:3]})")
        if wrong:
            problems.append(f"{what}: shape mismatch for {wrong[:3]}")
    if problems:
        raise WeightFileError(f"LPIPS ({net}) weights {', '.join(map(str, files))} do not match the "
                              f"{net} architecture: " + "; ".join(problems))
    model.features.load_state_dict({k[len("features."):]: v for k, v in trunk.items()
                                    if k in want_trunk})
    for i, layer in enumerate(model.lins):
        layer.load_state_dict({"model.1.weight": lin[f"lin{i}.model.1.weight"]})
    return model.eval()
