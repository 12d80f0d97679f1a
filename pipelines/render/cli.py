"""``gpvton render`` arguments: flags map onto :class:`RenderConfig` keys, ``--set`` overrides any key."""

from __future__ import annotations

import argparse
from typing import Any

from pipelines.config import ConfigError, apply_overrides, load_config, read_config_file
from pipelines.render.config import RenderConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="job config (YAML/TOML/JSON); flags override it")
    parser.add_argument("--shards", help="condition shards URL (folder, ~/…, file://…, s3://…)")
    parser.add_argument("--output", help="job URL (folder or s3://...)")
    parser.add_argument("--pairing", choices=["cross", "pairs", "paired"])
    parser.add_argument("--pairs-file")
    parser.add_argument("--warp-checkpoint", help="official .pth or our .safetensors (required)")
    parser.add_argument("--generator-checkpoint", help="official .pth or our .safetensors (required)")
    parser.add_argument("--random-weights", action="store_true", default=None,
                        help="no checkpoints: randomly initialised networks, to check the pipeline only")
    parser.add_argument("--resolution", type=int, choices=[128, 256, 512, 1024],
                        help="must match the shards (default: theirs); 1024 runs the warp at half resolution")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--unit-size", type=int)
    parser.add_argument("--actors", type=int)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                        help="auto (default): bf16 where native, else fp32")
    parser.add_argument("--format", choices=["jpg", "png", "webp"])
    parser.add_argument("--runner", choices=["ray", "local"])
    parser.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    parser.add_argument("--force", action="store_true", default=None,
                        help="discard a previous plan/scores that differ from this run")
    parser.add_argument("--dry-run", action="store_true", default=None,
                        help="plan and diff only: print what this run would render, update and retire; write nothing")
    parser.add_argument("--retry-errors", action="store_true", default=None,
                        help="also re-attempt error rows of a previous run caused by their input "
                             "(pairs that failed for a storage reason are always re-attempted)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set output_format.quality=90")


def config_from_args(args: argparse.Namespace) -> RenderConfig:
    flags = {
        "shards": args.shards, "output": args.output, "pairing": args.pairing, "pairs_file": args.pairs_file,
        "checkpoints.warp": args.warp_checkpoint, "checkpoints.generator": args.generator_checkpoint,
        "random_weights": args.random_weights,
        "resolution": args.resolution, "batch_size": args.batch_size, "unit_size": args.unit_size,
        "actors": args.actors, "device": args.device, "precision": args.precision,
        "output_format.format": args.format, "runner": args.runner, "address": args.address,
        "force": args.force, "dry_run": getattr(args, "dry_run", None), "retry_errors": args.retry_errors, "progress": False if args.no_progress else None,
    }
    data: dict[str, Any] = read_config_file(args.config) if args.config else {}
    data = apply_overrides(data, {k: v for k, v in flags.items() if v is not None})
    if args.overrides:
        data = apply_overrides(data, list(args.overrides))
    missing = [k for k in ("shards", "output") if not data.get(k)]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}: pass --{' --'.join(missing)} or set them in --config")
    return load_config(RenderConfig, None, None, base=data)


def run(args: argparse.Namespace) -> int:
    from pipelines.render.job import run_job

    return run_job(config_from_args(args)).exit_code
