"""``gpvton train warp|generator|parser``: train the warping module, the try-on generator or a
human parser with Ray Train.

    gpvton train warp --config train.yaml [--shards URL] [--output URL] [--workers N] [--steps N]
                      [--width W] [--resolution HxW] [--resume] [--vgg-weights FILE]
                      [--no-perceptual] [--address RAY] [--set key=value ...]
    gpvton train generator --config train.yaml --warp-checkpoint OUT_WARP/warp.safetensors ...
    gpvton train parser --shards URL --output URL [--labels gp29|lip] [--resolution 256x192] ...

Every run goes through Ray Train's ``TorchTrainer`` (one worker is fine: ``--workers N`` is data
parallel, gloo on CPU, NCCL with ``use_gpu``); without ``--address`` a local Ray is started and
stopped again. Each worker uses ``threads`` torch threads (default: the machine's cores / workers).

Warp and generator train on the persons with a ``worn_garment_id`` in the shards (``gpvton
preprocess`` output), joined with that garment. The parser trains on every person's photo and its
29-label parsing (derived from whatever LIP / ATR / GP-VTON label maps the user had), predicting
those 29 labels (``--labels gp29``) or their LIP-style collapse (``--labels lip``, VITON-HD's
convention, 10 = neck; fed through the pose-based derivation like a LIP parsing). ATR is not
offered: it has no glove, socks or coat class, and a glove or sock cannot be put on the person's
left or right without the pose.

The run writes under ``--output`` (local folder or ``s3://``): ``config.json`` (the resolved
config), ``checkpoints/step-N/`` (weights + optimiser/RNG state), ``log.csv`` / ``log.jsonl``,
``loss_curve.png`` and the final ``warp.safetensors`` / ``generator.safetensors`` (what ``gpvton
render --warp-checkpoint / --generator-checkpoint`` loads) or ``parser.safetensors``,
``parser.onnx`` and ``parser.json`` (its input contract: ``--set parser.model=RUN/parser.onnx`` in
``gpvton preprocess`` picks it up). ``--resume`` continues from the last checkpoint, step for step.

The perceptual (VGG-19) terms need the standard ImageNet weights (torchvision's
``vgg19-dcbb9e9d.pth``, loaded with ``weights_only=True``): the warp and generator jobs refuse to
start without ``--vgg-weights`` unless ``--no-perceptual`` (``perceptual: false``) turns them off.
The ONNX export of the parser needs the ``onnx`` package (torch's exporter serialises through it);
without it the job refuses to start unless ``--set export_onnx=false``.

User errors (missing or empty shards, a missing checkpoint or weight file, bad flags) stop the job
before Ray starts: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from typing import Literal, Optional

from pydantic import Field, model_validator

from gpvton_core.conditions.labels import Category, Variant
from pipelines.config import ConfigError, S3Config, StorageURL, StrictModel, load_config, resolved

log = logging.getLogger(__name__)

STAGES = ("warp", "generator", "parser")
DEFAULT_LR = {"warp": 5e-5, "generator": 5e-4, "parser": 1e-3}
DEFAULT_BETA1 = {"warp": 0.5, "generator": 0.5, "parser": 0.9}


class TrainConfig(StrictModel):
    stage: Literal["warp", "generator", "parser"] = "warp"
    shards: StorageURL = Field(..., description="condition shards URL (gpvton preprocess output)")
    output: StorageURL = Field(..., description="run URL (local folder or s3://bucket/prefix)")
    variant: Variant = "vitonhd"
    categories: Optional[list[Category]] = None
    labels: Literal["gp29", "lip"] = Field("gp29", description="parser: the label scheme it predicts")
    resolution: str = Field("512x384", description="HxW, multiples of 32 (256x192 for small runs)")
    width: float = Field(1.0, gt=0, le=1, description="network width (1.0 = official channel counts)")
    disc_width: Optional[float] = Field(None, gt=0, le=1)
    workers: int = Field(1, ge=1)
    address: Optional[str] = Field(None, description="Ray cluster to join (default: a local Ray)")
    use_gpu: bool = False
    threads: Optional[int] = Field(None, ge=1, description="torch threads (and Ray CPUs) per worker")
    batch_size: int = Field(2, ge=1, description="per worker")
    steps: int = Field(1000, ge=1)
    steps_per_epoch: Optional[int] = Field(None, ge=1, description="default: examples / global batch")
    lr: Optional[float] = Field(None, gt=0, description="default 5e-5 warp, 5e-4 generator, 1e-3 parser")
    lr_d: float = Field(5e-5, gt=0)
    beta1: Optional[float] = Field(None, ge=0, lt=1, description="Adam β1; default 0.5 (GAN stages), 0.9 parser")
    niter: int = Field(70, ge=0, description="epochs at constant lr")
    niter_decay: int = Field(50, ge=0, description="epochs of linear decay to 0")
    mask_epoch: int = Field(70, ge=0, description="DGT truncation starts after this epoch")
    dgt: bool = True
    dynamic_mask: bool = True
    gan: bool = True
    perceptual: bool = True
    vgg_weights: Optional[StorageURL] = None
    vgg_normalize: bool = True
    warp_checkpoint: Optional[StorageURL] = None
    augment: bool = Field(True, description="parser: random horizontal flips, left/right labels swapped")
    export_onnx: bool = Field(True, description="parser: write parser.onnx (needs the onnx package)")
    checkpoint_every: int = Field(500, ge=0)
    resume: bool = False
    seed: int = 0
    max_pairs: Optional[int] = Field(None, ge=1, description="use the first N examples (pairs / persons)")
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
    def one_line_error(message: str):
        """Usage errors as one line (exit 2), like every other user error of the job."""
        print(f"{parser.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)

    parser.error = one_line_error  # type: ignore[method-assign]
    parser.description = "train the warping module, the try-on generator or a human parser (Ray Train)"
    parser.add_argument("stage", choices=STAGES, help="which network to train")
    parser.add_argument("--config", help="YAML / TOML / JSON config file")
    parser.add_argument("--shards", help="condition shards URL")
    parser.add_argument("--output", help="run URL (local folder or s3://...)")
    parser.add_argument("--workers", type=int, help="Ray Train workers (data parallel)")
    parser.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    parser.add_argument("--steps", type=int, help="total optimisation steps")
    parser.add_argument("--width", type=float, help="network width (1.0 = official)")
    parser.add_argument("--resolution", help="HxW, e.g. 256x192")
    parser.add_argument("--batch-size", type=int, help="per-worker batch size")
    parser.add_argument("--resume", action="store_true", default=None, help="continue from the last checkpoint")
    parser.add_argument("--vgg-weights", help="torchvision vgg19-dcbb9e9d.pth (ImageNet)")
    parser.add_argument("--no-perceptual", action="store_true", default=None, help="train without the VGG terms")
    parser.add_argument("--warp-checkpoint", help="generator stage: the trained warp .safetensors")
    parser.add_argument("--labels", choices=("gp29", "lip"), help="parser: label scheme (default gp29)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    flags = {"stage": args.stage, "shards": args.shards, "output": args.output, "workers": args.workers,
             "address": getattr(args, "address", None), "steps": args.steps, "width": args.width,
             "resolution": args.resolution, "batch_size": getattr(args, "batch_size", None),
             "resume": args.resume, "vgg_weights": args.vgg_weights, "warp_checkpoint": args.warp_checkpoint,
             "labels": getattr(args, "labels", None), "perceptual": False if args.no_perceptual else None}
    from pipelines.config import apply_overrides, read_config_file

    data = read_config_file(args.config) if args.config else {}
    data = apply_overrides(data, flags)
    for key in ("shards", "output"):
        if not data.get(key):
            raise ConfigError(f"--{key} is required (or '{key}:' in the config file)")
    return load_config(TrainConfig, None, list(args.set or []), base=data)


def _s3(cfg: TrainConfig):
    from infra.storage import S3Settings

    d = {k: v for k, v in cfg.s3.model_dump().items() if v}
    return S3Settings(**d) if d else None


def _exists(url: str, cfg: TrainConfig) -> bool:
    from infra.storage import filesystem, strip_scheme

    try:
        return bool(filesystem(url, _s3(cfg)).isfile(strip_scheme(url)))
    except (OSError, ValueError):
        return False


def check_config(cfg: TrainConfig) -> None:
    """Refuse to start on a configuration that cannot train (ConfigError → exit 2, one line)."""
    if cfg.stage != "parser" and cfg.perceptual:
        if not cfg.vgg_weights:
            raise ConfigError(
                "the perceptual (VGG-19) loss terms need ImageNet VGG-19 weights: pass --vgg-weights "
                "FILE (torchvision's vgg19-dcbb9e9d.pth) or turn the terms off with --no-perceptual "
                "(perceptual: false)")
        if not _exists(cfg.vgg_weights, cfg):
            raise ConfigError(f"VGG-19 weight file not found: {cfg.vgg_weights}")
        from gpvton_core.training.vgg import VGG19Features

        try:
            from infra.models import fetch_model

            VGG19Features().load_weights(fetch_model(cfg.vgg_weights, _s3(cfg)).path)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"cannot load VGG-19 weights from {cfg.vgg_weights}: {exc}") from exc
    if cfg.stage == "generator":
        if not cfg.warp_checkpoint:
            raise ConfigError("the generator stage trains on warps of a trained warper: pass --warp-checkpoint "
                              "(the warp run's warp.safetensors)")
        if not _exists(cfg.warp_checkpoint, cfg):
            raise ConfigError(f"warp checkpoint not found: {cfg.warp_checkpoint}")
    if cfg.stage == "parser" and cfg.export_onnx:
        from workers.train.onnx_export import onnx_available

        if not onnx_available():
            raise ConfigError("the parser's ONNX export needs the onnx package (pip install onnx), or train "
                              "with --set export_onnx=false to write parser.safetensors only")
    if cfg.use_gpu:
        import torch

        if not torch.cuda.is_available() and not cfg.address:
            raise ConfigError("use_gpu is set but no CUDA device is available")
    from workers.train.data import count_examples

    s3 = loop_s3(cfg)
    try:
        count_examples(cfg.shards, cfg.stage, cfg.variant, s3, cfg.categories)
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from exc
    if cfg.resume:
        check_resume(cfg)


def check_resume(cfg: TrainConfig) -> None:
    """``--resume`` needs the run's checkpoint files, of the same stage; nothing there starts afresh."""
    from infra.storage import Storage

    out = Storage(cfg.output, _s3(cfg))
    if out.exists("config.json"):
        prev = out.read_json("config.json").get("stage", "warp")
        if prev != cfg.stage:
            raise ConfigError(f"{cfg.output} holds a {prev} run; --resume continues the same stage, not {cfg.stage}")
    if not out.exists("checkpoints/latest.json"):
        return
    d = out.read_json("checkpoints/latest.json").get("dir", "")
    for name in ("model.safetensors", "state.pt"):
        if not out.exists(f"{d}/{name}"):
            raise ConfigError(f"cannot resume: checkpoint file missing: {out.url(d, name)}")


def loop_s3(cfg: TrainConfig) -> Optional[dict]:
    s3 = {k: v for k, v in cfg.s3.model_dump().items() if v}
    return s3 or None


def cpus_per_worker(cfg: TrainConfig) -> int:
    """Ray CPUs (= torch threads) per worker: ``threads``, else the local cores shared by the workers."""
    if cfg.threads:
        return cfg.threads
    if cfg.address:
        return 1
    total = os.cpu_count() or 1
    try:
        import ray

        if ray.is_initialized():
            total = int(ray.cluster_resources().get("CPU", total))
    except Exception:  # noqa: BLE001
        pass
    return max(1, total // cfg.workers)


def loop_config(cfg: TrainConfig) -> dict:
    """The plain dict handed to every worker."""
    h, w = cfg.size
    d = resolved(cfg)
    d.pop("s3")
    d.update(height=h, width_px=w, model_width=cfg.width, lr=cfg.lr or DEFAULT_LR[cfg.stage],
             beta1=DEFAULT_BETA1[cfg.stage] if cfg.beta1 is None else cfg.beta1,
             threads=cpus_per_worker(cfg), s3=loop_s3(cfg))
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
    """Check the configuration, write ``config.json``, then run the job on Ray Train."""
    from infra.storage import Storage

    check_config(cfg)
    lc = loop_config(cfg)
    out = Storage(cfg.output, _s3(cfg))
    out.write_json("config.json", {k: v for k, v in resolved(cfg).items() if k != "s3"})
    res = fit_on_ray(cfg, lc)
    if "steps" not in res:  # Ray Train may keep only checkpointed reports: read the run's own log
        rows = [json.loads(l) for l in out.read_bytes("log.jsonl").decode().splitlines() if l.strip()]
        res.update(steps=rows[-1]["step"] if rows else 0, final_loss=rows[-1]["total"] if rows else None)
    return res


def fit_on_ray(cfg: TrainConfig, lc: dict) -> dict:
    """``train_loop_per_worker(lc)`` on ``cfg.workers`` Ray Train workers (a local Ray, started and
    stopped here, unless ``address`` or an already initialised Ray); the last reported metrics."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from workers.train.per_worker import train_loop_per_worker

    started_here = False
    if not ray.is_initialized():
        s3 = _s3(cfg)
        env = s3.export_env() if s3 else {}
        kwargs = dict(include_dashboard=False, log_to_driver=True, configure_logging=False,
                      runtime_env={"env_vars": env} if env else None)
        if cfg.address:
            kwargs["address"] = cfg.address
        else:
            kwargs.update(num_cpus=max(os.cpu_count() or 1, cfg.workers * lc["threads"]),
                          object_store_memory=256 * 1024 * 1024)
        ray.init(**kwargs)
        started_here = True
    storage_path = tempfile.mkdtemp(prefix="gpvton-train-")   # Ray Train's own records; ours go to OUT
    try:
        resources = {"CPU": lc["threads"], **({"GPU": 1} if cfg.use_gpu else {})}
        trainer = TorchTrainer(
            train_loop_per_worker, train_loop_config=lc,
            torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
            scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu,
                                         resources_per_worker=resources),
            run_config=RunConfig(name=f"gpvton-train-{cfg.stage}", storage_path=storage_path),
        )
        result = trainer.fit()
    finally:
        if started_here:
            ray.shutdown()
        shutil.rmtree(storage_path, ignore_errors=True)
    if result.error:
        raise result.error
    return dict(result.metrics or {})


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    res = run_training(cfg)
    keys = ("steps", "pairs", "persons", "final_loss")
    print(json.dumps({"output": cfg.output, **{k: v for k, v in res.items() if k in keys}}))
    return 0
