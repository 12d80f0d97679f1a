"""Checkpoint loading: official GP-VTON ``.pth`` state dicts and our safetensors format.

Official files are plain ``{key: tensor}`` pickles (checkpoints/README.md). They are only ever
opened with ``torch.load(..., weights_only=True)``; anything that is not a flat mapping of
string keys to tensors is rejected with :class:`CheckpointError` (never unpickled further).
The warp files carry an extra constant ``aflow_net.weight`` (the smoothness filter bank),
which is ignored.

Our format is a safetensors file whose metadata holds a JSON header under the key
``"gpvton"`` (kind, variant, width, resolution, provenance, …), so a model can be rebuilt
from the file alone (:func:`build_from_checkpoint`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from .blocks import ENCODER_CHANNELS
from .generator import NGF, TryOnGenerator
from .warp import LFGPWarp

IGNORED_KEYS = frozenset({"aflow_net.weight"})
META_KEY = "gpvton"
KINDS = ("warp_vitonhd", "warp_dresscode", "generator")
PathOrStateDict = Union[str, os.PathLike, Mapping[str, Tensor]]


class CheckpointError(ValueError):
    """A checkpoint does not match the model (names the offending key) or is not a plain state dict."""


def read_state_dict(path_or_sd: PathOrStateDict) -> dict[str, Tensor]:
    """Plain ``{str: Tensor}`` dict from a file (``weights_only=True``) or a mapping."""
    if isinstance(path_or_sd, (str, os.PathLike)):
        p = os.fspath(path_or_sd)
        if p.endswith(".safetensors"):
            return load_safetensors(p)[0]
        try:
            obj: Any = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # weights_only refused it, or not a torch file: the file is suspect
            raise CheckpointError(f"{p}: cannot be loaded with weights_only=True ({type(e).__name__}: {e})") from e
        where = p
    else:
        obj, where = path_or_sd, "state dict"
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: expected a plain {{key: tensor}} state dict, got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        k = bad[0]
        hint = " (a wrapper dict? expected the bare state dict)" if k in ("state_dict", "model", "epoch", "optimizer") else ""
        raise CheckpointError(f"{where}: entry {k!r} is a {type(obj[k]).__name__}, not a tensor{hint}")
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):  # defensive: DDP-wrapped save
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_official(model: nn.Module, path_or_state_dict: PathOrStateDict) -> nn.Module:
    """Load an official (or our) state dict strictly by key; returns ``model``.

    Every model key must be present with the model's shape; the only tolerated extra key is
    ``aflow_net.weight``. Raises :class:`CheckpointError` naming the first offending key.
    """
    sd = read_state_dict(path_or_state_dict)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    if missing:
        raise CheckpointError(f"missing key {missing[0]!r} ({len(missing)} missing)")
    extra = [k for k in sd if k not in expected and k not in IGNORED_KEYS]
    if extra:
        raise CheckpointError(f"unexpected key {extra[0]!r} ({len(extra)} unexpected)")
    for k, v in expected.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(f"wrong shape for {k!r}: file {tuple(sd[k].shape)}, model {tuple(v.shape)}")
    model.load_state_dict({k: sd[k] for k in expected}, strict=True)
    return model


def detect_kind(state_dict: Mapping[str, Tensor]) -> tuple[str, float]:
    """(kind, width) of a state dict: kind ∈ warp_vitonhd / warp_dresscode / generator.

    The width is read from the first conv's output channels (64 at width 1.0).
    """
    if "model.model.0.weight" in state_dict:
        return "generator", state_dict["model.model.0.weight"].shape[0] / NGF
    key = "image_features.encoders.0.0.block.2.weight"
    if key not in state_dict:
        raise CheckpointError(f"not a GP-VTON checkpoint: neither 'model.model.0.weight' nor {key!r} present")
    width = state_dict[key].shape[0] / ENCODER_CHANNELS[0]
    spade = any(".mlp_shared." in k for k in state_dict)
    return ("warp_dresscode" if spade else "warp_vitonhd"), width


def build_model(kind: str, width: float = 1.0) -> nn.Module:
    """Empty network of ``kind`` at ``width``."""
    if kind == "generator":
        return TryOnGenerator(width)
    if kind in ("warp_vitonhd", "warp_dresscode"):
        return LFGPWarp(kind.split("_", 1)[1], width)  # type: ignore[arg-type]
    raise CheckpointError(f"unknown model kind {kind!r} (expected one of {KINDS})")


def build_from_checkpoint(path_or_state_dict: PathOrStateDict) -> tuple[nn.Module, dict[str, Any]]:
    """Build and load the network a checkpoint describes; returns (model, meta).

    meta is the safetensors JSON header when present, else ``{"kind", "width"}`` as detected.
    """
    meta: dict[str, Any] = {}
    if isinstance(path_or_state_dict, (str, os.PathLike)) and os.fspath(path_or_state_dict).endswith(".safetensors"):
        sd, meta = load_safetensors(path_or_state_dict)
    else:
        sd = read_state_dict(path_or_state_dict)
    kind, width = detect_kind(sd)
    if "kind" in meta and meta["kind"] != kind:
        raise CheckpointError(f"metadata says kind {meta['kind']!r} but the keys are a {kind!r}")
    meta = {"kind": kind, "width": width, **meta}
    model = load_official(build_model(kind, float(meta["width"])), sd)
    return model, meta


def model_kind(model: nn.Module) -> str:
    if isinstance(model, TryOnGenerator):
        return "generator"
    if isinstance(model, LFGPWarp):
        return f"warp_{model.variant}"
    raise CheckpointError(f"not a GP-VTON network: {type(model).__name__}")


def safetensors_bytes(model: nn.Module, meta: Optional[Mapping[str, Any]] = None, kind: Optional[str] = None) -> bytes:
    """Our format as bytes: the state dict plus the JSON header (kind, width + ``meta``) under
    ``"gpvton"``. Training writes these bytes to any storage; ``kind`` names networks that are not
    a warp or generator (the discriminator, the parser)."""
    from safetensors.torch import save

    net = getattr(model, "module", model)  # a DDP wrapper saves its module
    header = {"width": float(getattr(net, "width", 1.0)), **(meta or {}), "kind": kind or model_kind(net)}
    sd = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    return save(sd, metadata={META_KEY: json.dumps(header, sort_keys=True, default=str)})


def save_safetensors(model: nn.Module, path: Union[str, os.PathLike], meta: Optional[Mapping[str, Any]] = None,
                     kind: Optional[str] = None) -> None:
    """Write :func:`safetensors_bytes` to a local file."""
    with open(os.fspath(path), "wb") as fh:
        fh.write(safetensors_bytes(model, meta, kind))


def _header(raw: Optional[str], where: str) -> dict[str, Any]:
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{where}: metadata {META_KEY!r} is not JSON") from e


def load_safetensors(path: Union[str, os.PathLike]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state dict, JSON header) of a file written by :func:`save_safetensors`."""
    from safetensors import safe_open

    sd: dict[str, Tensor] = {}
    with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
        raw = (f.metadata() or {}).get(META_KEY)
        for k in f.keys():
            sd[k] = f.get_tensor(k)
    return sd, _header(raw, os.fspath(path))


def load_safetensors_bytes(data: bytes) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state dict, JSON header) of :func:`safetensors_bytes` output."""
    from safetensors.torch import load

    return load(data), safetensors_meta(data)


def safetensors_meta(data: bytes) -> dict[str, Any]:
    """The JSON header of our format, read from the file's leading bytes without its tensors."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    return _header((header.get("__metadata__") or {}).get(META_KEY), "safetensors bytes")
