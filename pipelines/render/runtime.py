"""Where and how the workers compute, decided once on the driver so that every worker agrees.

The device, the numeric precision and whether to compile are written into ``job.json``; the
precision is part of the model key.
"""

from __future__ import annotations

import os
from dataclasses import replace

from pipelines.render.config import RenderConfig
from workers.render.settings import WorkerSettings


def resolve_device(cfg: RenderConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() and (cfg.num_gpus > 0 or cfg.runner == "local") else "cpu"
    except Exception:  # noqa: BLE001
        return "cpu"


def resolve_precision(requested: str, device: str) -> dict:
    """The job's numeric precision.

    ``auto`` becomes bf16 (the mixed policy of :mod:`gpvton_core.precision`) where ``device``
    computes bf16 natively and fp32 elsewhere. A driver that cannot see the workers' GPU leaves
    ``auto`` to the workers, which record what they chose in every unit's done-marker.
    """
    from gpvton_core import precision as prec

    try:
        resolved, reason = prec.resolve(requested, device)
        native, why = prec.native_bf16(device)
    except (RuntimeError, AssertionError) as exc:   # e.g. cuda asked of a driver without a GPU
        return {"requested": requested, "resolved": requested, "reason": f"left to the workers ({exc})",
                "native_bf16": None}
    out = {"requested": requested, "resolved": resolved, "reason": reason, "native_bf16": native,
           "native_bf16_reason": why}
    policy = prec.policy_for(resolved)
    if policy is not None:
        out["policy"] = policy.as_dict()
    return out


def resolve_compile(cfg: RenderConfig, device: str, pairs_per_actor: int, basis: str) -> dict:
    """Whether the workers compile.

    Compiling costs a warm-up per shape and actor (H200, official width: ≈70 s cold, seconds from
    the per-host kernel cache) and saves ≈5 ms a pair (71 → 112–132 pairs/s model-only), so
    ``auto`` compiles on CUDA when a run renders at least ``compile_min_pairs`` per actor. On the
    CPU inductor took minutes for the tiny test networks and has not been measured to pay: off.
    """
    mode = cfg.compile_mode if device == "cuda" else "default"
    if cfg.compile == "on":
        on, reason = True, "requested"
    elif cfg.compile == "off":
        on, reason = False, "requested"
    elif device != "cuda":
        on, reason = False, f"auto: device {device} (compiling has not been measured to pay off the GPU)"
    else:
        on = pairs_per_actor >= cfg.compile_min_pairs
        reason = (f"auto: {pairs_per_actor} pairs per actor ({basis}) "
                  f"{'≥' if on else '<'} compile_min_pairs {cfg.compile_min_pairs}")
    cache = os.path.expanduser(cfg.compile_cache) if cfg.compile_cache else None
    return {"requested": cfg.compile, "resolved": "on" if on else "off", "mode": mode if on else "off",
            "reason": reason, "fixed_shapes": on, "cache_dir": cache if on else None}


def with_compile(cfg: RenderConfig, settings: WorkerSettings, device: str, pairs: int,
                 basis: str) -> tuple[WorkerSettings, dict]:
    """(settings with the compile decision, the decision) for ``pairs`` spread over the actors."""
    actors = cfg.actors if cfg.runner == "ray" else 1
    info = resolve_compile(cfg, device, pairs // max(1, actors), basis)
    return replace(settings, compile=info["mode"], fixed_shapes=info["fixed_shapes"],
                   compile_cache_dir=info["cache_dir"]), info
