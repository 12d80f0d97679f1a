"""Numeric precision of the try-on networks: where bf16 is native, and which parts may use it.

Reduced precision only pays where the hardware computes it natively: CPUs with AVX512-BF16 or
AMX-BF16 (oneDNN otherwise emulates bf16, several times slower than fp32) and CUDA GPUs of
compute capability ≥ 8.0. :func:`resolve` turns ``"auto"`` into ``"bf16"`` there and ``"fp32"``
elsewhere, with a reason that belongs in ``job.json``.

A :class:`Policy` says which convolution groups run in the reduced dtype. Everything that moves
pixels stays in float32 whatever the policy: offset accumulation, grids, sampling weights,
flow composition, the correlation's normalisation, the parsing argmax and the final
composition. The default policy (:data:`MIXED`) was chosen by ablation (bench/bench_core.py
``--ablation``; parity weights, official width, 256×192, try-on SSIM against float32): every
group in bf16 gives 0.962; single groups back in float32 show that the encoders cost most of it
(0.992 with only them in float32, every other group < 0.002), and from there the flow heads cost
the rest (0.993 → 0.997 with them in float32 too). Both are kept float32: the encoders run once
per garment / person, not per pair, and the flow heads are a fifth of the decoder's FLOPs. The
convolutions that dominate the per-pair cost run in bf16: the last level's fusion ResBlock and
parsing head (full resolution) and the generator. The final offset convolutions, the parsing
output convolution (it alone moves the demo model's SSIM by 0.002) and the generator's output
convolution are tiny and stay float32; so do the correlation and the feature sampling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Optional, Union

import torch
from torch import nn

Precision = Literal["fp32", "bf16", "fp16", "auto", "fp64"]
PRECISIONS = ("fp32", "bf16", "fp16", "auto", "fp64")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}


def cpu_flags() -> dict[str, Any]:
    """What torch's cpuinfo reports about this CPU's reduced-precision support."""
    cpu = getattr(torch, "cpu", None)

    def flag(name: str) -> bool:
        fn = getattr(cpu, name, None)
        try:
            return bool(fn()) if fn is not None else False
        except RuntimeError:
            return False

    return {"capability": torch.backends.cpu.get_cpu_capability(),
            "avx512_bf16": flag("_is_avx512_bf16_supported"),
            "amx_bf16": flag("_is_amx_tile_supported"),
            "amx_fp16": flag("_is_amx_fp16_supported"),
            "mkldnn": torch.backends.mkldnn.is_available()}


def native_bf16(device: Union[str, torch.device]) -> tuple[bool, str]:
    """(bf16 convolutions are native on ``device``, why)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        return major >= 8, f"CUDA compute capability {major}.{minor} ({'≥' if major >= 8 else '<'} 8.0)"
    if dev.type == "cpu":
        f = cpu_flags()
        have = [k for k in ("avx512_bf16", "amx_bf16") if f[k]]
        if have and f["mkldnn"]:
            return True, "CPU with " + " and ".join(have)
        return False, "CPU without AVX512-BF16 / AMX-BF16" + ("" if f["mkldnn"] else " (no oneDNN)")
    return False, f"device type {dev.type!r}: bf16 support unknown"


def resolve(precision: str, device: Union[str, torch.device]) -> tuple[str, str]:
    """(fp32 | bf16 | fp16 | fp64, reason): ``auto`` picks bf16 where it is native, else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision, "requested"
    ok, why = native_bf16(device)
    return ("bf16", f"auto: native bf16 ({why})") if ok else ("fp32", f"auto: no native bf16 ({why})")


@dataclass(frozen=True)
class Policy:
    """Which convolution groups run in ``reduced`` (True) or float32 (False).

    ``corr`` / ``sample``: the correlation's inputs and the sampled feature tables in the
    reduced dtype (both accumulate in float32 either way, but the inputs are rounded).
    ``*_out``: the last convolution of the flow heads (the offsets), of the parsing head (the
    logits) and of the generator (RGB + mask).
    """

    reduced: str = "bf16"  # bf16 | fp16
    encoders: bool = False
    flow_heads: bool = False
    flow_out: bool = False
    corr: bool = False
    sample: bool = False
    fusion: bool = True
    seg_head: bool = True
    seg_out: bool = False
    generator: bool = True
    generator_out: bool = False

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.reduced]

    def with_(self, **kw: Any) -> "Policy":
        return replace(self, **kw)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: the default mixed policy (see the module docstring and the ablation in the README)
MIXED = Policy()
#: every convolution group in the reduced dtype, the flow arithmetic still in float32
ALL_REDUCED = Policy(encoders=True, flow_heads=True, flow_out=True, corr=True, sample=True, seg_out=True, generator_out=True)
#: ablation groups, each switched back to float32 from ALL_REDUCED in turn
GROUPS = ("encoders", "flow_heads", "flow_out", "corr", "sample", "fusion", "seg_head", "seg_out",
          "generator", "generator_out")


def policy_for(precision: str, policy: Optional[Policy] = None) -> Optional[Policy]:
    """The policy of a resolved precision (None = uniform fp32 / fp64)."""
    if precision in ("fp32", "fp64"):
        return None
    base = policy or MIXED
    return base if base.reduced == precision else base.with_(reduced=precision)


def _convs_to(module: nn.Module, dtype: torch.dtype) -> None:
    """Convolutions only: norms keep float32 parameters (BatchNorm runs mixed: bf16 in, fp32 statistics)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            m.to(dtype)


def _last_conv(seq: nn.Module) -> nn.Conv2d:
    return [m for m in seq.modules() if isinstance(m, nn.Conv2d)][-1]


def _cast_input(module: nn.Module, args: tuple) -> tuple:
    x = args[0]
    w = module.weight
    if x.dtype != w.dtype:
        x = x.to(w.dtype)
    return (x, *args[1:])


def _hook_convs(model: nn.Module) -> None:
    """Every conv casts its input to its weight dtype (a no-op where they agree)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and not getattr(m, "_gpvton_cast", False):
            m.register_forward_pre_hook(_cast_input)
            m._gpvton_cast = True  # type: ignore[assignment]


def apply_warp(warp: nn.Module, policy: Optional[Policy]) -> None:
    """Put the warp model's groups in their dtypes (the model is float32 on entry)."""
    if policy is None:
        return
    dt = policy.dtype
    dec = warp.aflow_net
    if policy.encoders:
        for name in ("image_features", "cond_features", "image_FPN", "cond_FPN"):
            _convs_to(getattr(warp, name), dt)
    heads = [dec.netLeftMain, dec.netTorsoMain, dec.netRightMain, dec.netLeftRefine, dec.netTorsoRefine,
             dec.netRightRefine, dec.netAttentionRefine]
    for group, on, out in ((heads, policy.flow_heads, policy.flow_out), ([dec.netSeg], policy.seg_head, policy.seg_out)):
        for ml in group:
            for h in ml:
                if on:
                    _convs_to(h, dt)
                _last_conv(h).to(dt if out else torch.float32)
    if policy.fusion:
        _convs_to(dec.netPartFusion, dt)
    _hook_convs(warp)


def apply_generator(gen: nn.Module, policy: Optional[Policy]) -> None:
    if policy is None:
        return
    if policy.generator:
        _convs_to(gen, policy.dtype)
    _last_conv(gen).to(policy.dtype if policy.generator_out else torch.float32)
    _hook_convs(gen)


__all__ = ["Precision", "PRECISIONS", "DTYPES", "Policy", "MIXED", "ALL_REDUCED", "GROUPS", "cpu_flags",
           "native_bf16", "resolve", "policy_for", "apply_warp", "apply_generator"]
