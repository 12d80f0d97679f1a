"""``gpvton train warp|generator``: train the warping module or the try-on generator with Ray Train.

    gpvton train warp --config train.yaml [--shards URL] [--output URL] [--workers N] [--steps N]
                      [--width W] [--resolution HxW] [--resume] [--vgg-weights FILE]
                      [--no-perceptual] [--set key=value ...]
    gpvton train generator --config train.yaml --warp-checkpoint OUT_WARP/warp.safetensors ...

Training pairs are the persons with a ``worn_garment_id`` in the shards (``gpvton preprocess``
output), joined with that garment. The run writes under ``--output`` (local folder or ``s3://``):
``config.json`` (the resolved config), ``checkpoints/step-N/`` (weights + optimiser/RNG state),
``log.csv`` / ``log.jsonl``, ``loss_curve.png`` and the final ``warp.safetensors`` /
``generator.safetensors``, which ``gpvton render --warp-checkpoint / --generator-checkpoint``
loads. ``--resume`` continues from the last checkpoint, step for step.

The perceptual (VGG-19) terms need the standard ImageNet weights (torchvision's
``vgg19-dcbb9e9d.pth``, loaded with ``weights_only=True``): the job refuses to start without
``--vgg-weights`` unless ``--no-perceptual`` (``perceptual: false``) turns those terms off.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from pipelines.config import ConfigError, S3Config, StrictModel, load_config, resolved

log = logging.getLogger(__name__)


class TrainConfig(StrictModel):
    stage: Literal["warp", "generator"] = "warp"
    shards: str = Field(..., description="condition shards URL (gpvton preprocess output)")
    output: str = Field(..., description="run URL (local folder or s3://bucket/prefix)")
    variant: Literal["vitonhd", "dresscode"] = "vitonhd"
    categories: Optional[list[Literal["upper", "lower", "dresses"]]] = None
    resolution: str = Field("512x384", description="HxW, multiples of 32 (256x192 for small runs)")
    width: float = Field(1.0, gt=0, le=1, description="network width (1.0 = official channel counts)")
    disc_width: Optional[float] = Field(None, gt=0, le=1)
    workers: int = Field(1, ge=1)
    use_gpu: bool = False
    threads: Optional[int] = Field(None, ge=1, description="torch threads per worker")
    batch_size: int = Field(2, ge=1, description="per worker")
    steps: int = Field(1000, ge=1)
    steps_per_epoch: Optional[int] = Field(None, ge=1, description="default: pairs / global batch")
    lr: Optional[float] = Field(None, gt=0, description="default 5e-5 warp, 5e-4 generator")
    lr_d: float = Field(5e-5, gt=0)
    beta1: float = 0.5
    niter: int = Field(70, ge=0, description="epochs at constant lr")
    niter_decay: int = Field(50, ge=0, description="epochs of linear decay to 0")
    mask_epoch: int = Field(70, ge=0, description="DGT truncation starts after this epoch")
    dgt: bool = True
    dynamic_mask: bool = True
    gan: bool = True
    perceptual: bool = True
    vgg_weights: Optional[str] = None
    vgg_normalize: bool = True
    warp_checkpoint: Optional[str] = None
    checkpoint_every: int = Field(500, ge=0)
    resume: bool = False
    seed: int = 0
    max_pairs: Optional[int] = Field(None, ge=1)
    progress: bool = True
    note: Optional[str] = Field(None, description="free text stored in the checkpoint's provenance")
    s3: S3Config = Field(default_factory=S3Config)

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        m = re.fullmatch(r"(\d+)[x×](\d+)", self.resolution.strip())
        if not m:
            raise ValueError(f"resolution {self.resolution!r} must look like 512x384")
        h, w = int(m.group(1)), int(m.group(2))
        if h % 32 or w % 32 or h < 128 or w < 96:
            raise ValueError(f"resolution {h}x{w}: H and W must be multiples of 32, at least 128x96")
        return self

    @property
    def size(self) -> tuple[int, int]:
        h, w = re.split(r"[x×]", self.resolution.strip())
        return int(h), int(w)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", choices=("warp", "generator"), help="which network to train")
    parser.add_argument("--config", help="YAML / TOML / JSON config file")
    parser.add_argument("--shards", help="condition shards URL")
    parser.add_argument("--output", help="run URL (local folder or s3://...)")
    parser.add_argument("--workers", type=int, help="Ray Train workers (DDP)")
    parser.add_argument("--steps", type=int, help="total optimisation steps")
    parser.add_argument("--width", type=float, help="network width (1.0 = official)")
    parser.add_argument("--resolution", help="HxW, e.g. 256x192")
    parser.add_argument("--batch-size", type=int, help="per-worker batch size")
    parser.add_argument("--resume", action="store_true", default=None, help="continue from the last checkpoint")
    parser.add_argument("--vgg-weights", help="torchvision vgg19-dcbb9e9d.pth (ImageNet)")
    parser.add_argument("--no-perceptual", action="store_true", default=None, help="train without the VGG terms")
    parser.add_argument("--warp-checkpoint", help="generator stage: the trained warp .safetensors")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    flags = {"stage": args.stage, "shards": args.shards, "output": args.output, "workers": args.workers,
             "steps": args.steps, "width": args.width, "resolution": args.resolution,
             "batch_size": getattr(args, "batch_size", None), "resume": args.resume,
             "vgg_weights": args.vgg_weights, "warp_checkpoint": args.warp_checkpoint,
             "perceptual": False if args.no_perceptual else None}
    from pipelines.config import apply_overrides, read_config_file

    data = read_config_file(args.config) if args.config else {}
    data = apply_overrides(data, flags)
    return load_config(TrainConfig, None, list(args.set or []), base=data)


def check_config(cfg: TrainConfig) -> None:
    """Refuse to start on a configuration that cannot train (ConfigError → exit 2)."""
    if cfg.perceptual:
        if not cfg.vgg_weights:
            raise ConfigError(
                "the perceptual (VGG-19) loss terms need ImageNet VGG-19 weights: pass --vgg-weights "
                "FILE (torchvision's vgg19-dcbb9e9d.pth) or turn the terms off with --no-perceptual "
                "(perceptual: false)")
        if "://" not in cfg.vgg_weights and not Path(cfg.vgg_weights).is_file():
            raise ConfigError(f"VGG-19 weight file not found: {cfg.vgg_weights}")
        from gpvton_core.training.vgg import VGG19Features

        try:
            VGG19Features().load_weights(cfg.vgg_weights)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"cannot load VGG-19 weights from {cfg.vgg_weights}: {exc}") from exc
    if cfg.stage == "generator":
        if not cfg.warp_checkpoint:
            raise ConfigError("the generator stage trains on warps of a trained warper: pass --warp-checkpoint "
                              "(the warp run's warp.safetensors)")
        if "://" not in cfg.warp_checkpoint and not Path(cfg.warp_checkpoint).is_file():
            raise ConfigError(f"warp checkpoint not found: {cfg.warp_checkpoint}")
    if cfg.use_gpu:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("use_gpu is set but no CUDA device is available")


def loop_config(cfg: TrainConfig) -> dict:
    """The plain dict handed to every worker."""
    h, w = cfg.size
    d = resolved(cfg)
    s3 = {k: v for k, v in d.pop("s3").items() if v}
    d.update(height=h, width_px=w, model_width=cfg.width,
             lr=cfg.lr or (5e-5 if cfg.stage == "warp" else 5e-4), s3=s3 or None)
    d.pop("width")
    try:
        from importlib.metadata import version

        pkg = version("gpvton")
    except Exception:  # noqa: BLE001
        pkg = "unknown"
    d["provenance"] = {"package": pkg, "shards": cfg.shards, "stage": cfg.stage,
                       "trained_by": "gpvton train", "note": cfg.note}
    return d


def run_training(cfg: TrainConfig) -> dict:
    """Run the job (Ray Train when ``workers`` > 1 or a Ray cluster is up, else in-process)."""
    from infra.storage import S3Settings, Storage
    from workers.train_loop import train_loop_per_worker

    check_config(cfg)
    lc = loop_config(cfg)
    s3 = S3Settings(**lc["s3"]) if lc.get("s3") else None
    out = Storage(cfg.output, s3)
    out.write_json("config.json", {k: v for k, v in resolved(cfg).items() if k != "s3"})
    if cfg.workers == 1 and not cfg.use_gpu and os.environ.get("GPVTON_TRAIN_RAY") != "1":
        return train_loop_per_worker(lc)
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not ray.is_initialized():
        env = s3.export_env() if s3 else {}
        ray.init(num_cpus=max(2, cfg.workers * 2), include_dashboard=False, log_to_driver=True,
                 runtime_env={"env_vars": env} if env else None)
    storage_path = tempfile.mkdtemp(prefix="gpvton-train-")
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=lc,
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": 1, "GPU": 1} if cfg.use_gpu else {"CPU": 1}),
        run_config=RunConfig(name="gpvton-train", storage_path=storage_path),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    res = dict(result.metrics or {})
    if "steps" not in res:  # Ray Train may keep only checkpointed reports: read the run's own log
        rows = [json.loads(l) for l in out.read_bytes("log.jsonl").decode().splitlines() if l.strip()]
        res.update(steps=rows[-1]["step"] if rows else 0, final_loss=rows[-1]["total"] if rows else None)
    return res


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    res = run_training(cfg)
    print(json.dumps({"output": cfg.output, **{k: v for k, v in res.items() if k in ("steps", "pairs", "final_loss")}}))
    return 0
