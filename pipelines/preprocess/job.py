"""``gpvton preprocess``: build condition shards with Beam.

    gpvton preprocess --input vitonhd:/data/vitonhd --input dresscode:s3://bucket/dresscode \\
        --output s3://bucket/shards --resolution 512
    gpvton preprocess --input photos:catalogue/ --parser runs/parser/parser.onnx --output shards
    gpvton preprocess --config preprocess.yaml --set resolution=1024

Config (YAML/TOML/JSON; every key can be overridden with ``--set key=value``)::

    inputs: ["vitonhd:/data/vitonhd", "photos:s3://cat/photos"]
    output: s3://bucket/shards
    resolution: 512            # or 1024
    runner: FnApiRunner        # in-process; or FlinkRunner / SparkRunner / DataflowRunner
    pipeline_args: []          # passed through to Beam unchanged
    num_shards: 0              # groups = part files per table; 0 = one per 64 items (the unit of resume)
    max_pixels: 64000000       # decompression-bomb guard
    pose: {backend: mediapipe}                 # bundled BlazePose; rtmpose + detector/model URLs; none
    parser: {model: null, classes: lip}        # human parser ONNX (SCHP-style or 'gpvton train parser')
    densepose: {model: null}                   # TorchScript/ONNX; null = approximation from mask + skeleton
    garment_matting: {model: null}             # salient-object ONNX for garments on busy backgrounds
    framing: {person_margin: 0.06, min_person_height: 0.5}
    batch_size: 8              # items per estimator batch
    s3: {endpoint_url: null, access_key_id: null, secret_access_key: null, region: null}

Only the annotations an item lacks are estimated; ``provenance`` in each row says which were given,
derived or estimated, and by which model file (sha256). A rerun over the same inputs and settings
resumes (only unfinished groups are redone); other inputs or settings are refused unless ``--force``.

Exit codes: 0 done (some items may have error rows), 1 nothing could be processed, 2 config error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Literal

from pydantic import Field, field_validator

from infra.storage import Storage
from pipelines.config import ConfigError, InputSpec, S3Config, StorageURL, StrictModel, load_config, resolved
from pipelines.preprocess.estimators.bundle import EstimatorsConfig

log = logging.getLogger(__name__)


class PreprocessConfig(StrictModel, EstimatorsConfig):
    inputs: list[InputSpec] = Field(default_factory=list, description="KIND:URL, KIND in vitonhd/hrviton/dresscode/manifest")
    output: StorageURL = ""
    resolution: Literal[128, 256, 512, 1024] = 512
    runner: str = "FnApiRunner"
    pipeline_args: list[str] = Field(default_factory=list)
    num_shards: int = Field(0, ge=0)
    max_pixels: int = Field(64_000_000, gt=0)
    s3: S3Config = Field(default_factory=S3Config)
    force: bool = False

    def estimators(self) -> EstimatorsConfig:
        return EstimatorsConfig.model_validate(self.model_dump(include=set(EstimatorsConfig.model_fields)))

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, v: list[str]) -> list[str]:
        from pipelines.preprocess.readers import ReaderError, parse_input

        for spec in v:
            try:
                parse_input(spec)
            except ReaderError as exc:
                raise ValueError(str(exc)) from None
        return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML/TOML/JSON config file")
    parser.add_argument("--input", action="append", dest="inputs", metavar="KIND:URL",
                        help="input (repeatable): vitonhd:URL, hrviton:URL, dresscode:URL, manifest:URL")
    parser.add_argument("--output", help="output folder or s3:// URL for the shards")
    parser.add_argument("--resolution", type=int, choices=(128, 256, 512, 1024),
                        help="512 (512×384) or 1024 (1024×768); 256/128 are previews for tests and demos")
    parser.add_argument("--runner", help="Beam runner (default FnApiRunner, in-process)")
    parser.add_argument("--parser", dest="parser_model", metavar="URL",
                        help="human parser ONNX (SCHP-style LIP/ATR, or parser.onnx of 'gpvton train parser'; "
                             "a parser.json next to it sets its contract)")
    parser.add_argument("--parser-classes", choices=("lip", "atr", "gp29"), help="label set of --parser")
    parser.add_argument("--pose-backend", choices=("mediapipe", "rtmpose", "none"),
                        help="pose estimator for photos without keypoints (default: mediapipe, bundled)")
    parser.add_argument("--densepose-model", metavar="URL",
                        help="DensePose model (TorchScript/ONNX); default: approximation from mask + skeleton")
    parser.add_argument("--garment-matting", metavar="URL",
                        help="salient-object ONNX for garment photos on busy backgrounds")
    parser.add_argument("--force", action="store_true", default=None,
                        help="rebuild the shards from scratch (otherwise a rerun resumes)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("pipeline_args", nargs=argparse.REMAINDER,
                        help="after '--': extra Beam pipeline options, passed through unchanged")


def config_from_args(args: argparse.Namespace) -> PreprocessConfig:
    flags = {"inputs": args.inputs, "output": args.output, "resolution": args.resolution,
             "runner": args.runner, "force": getattr(args, "force", None)}
    nested = {"parser.model": getattr(args, "parser_model", None),
              "parser.classes": getattr(args, "parser_classes", None),
              "pose.backend": getattr(args, "pose_backend", None),
              "densepose.model": getattr(args, "densepose_model", None),
              "garment_matting.model": getattr(args, "garment_matting", None)}
    flag_sets = [f"{k}={v}" for k, v in nested.items() if v is not None]
    extra = [a for a in (getattr(args, "pipeline_args", None) or []) if a != "--"]
    base: dict = {}
    cfg = load_config(PreprocessConfig, args.config, overrides=flags, base=base)
    if args.set or flag_sets:
        cfg = load_config(PreprocessConfig, None, overrides=list(args.set) + flag_sets, base=resolved(cfg))
    if extra:
        cfg = cfg.model_copy(update={"pipeline_args": list(cfg.pipeline_args) + extra})
    if not cfg.inputs:
        raise ConfigError("no inputs: give --input KIND:URL (repeatable) or 'inputs' in the config")
    if not cfg.output:
        raise ConfigError("no output: give --output URL or 'output' in the config")
    return cfg


def run(args: argparse.Namespace) -> int:
    from pipelines.preprocess.readers import ReaderError, parse_input, read_inputs

    cfg = config_from_args(args)
    s3 = cfg.s3.settings()
    try:
        items = read_inputs([parse_input(s) for s in cfg.inputs], s3)
    except ReaderError as exc:
        raise ConfigError(str(exc)) from None
    except FileNotFoundError as exc:
        raise ConfigError(f"input not found: {exc}") from None
    log.info("preprocess: %d items from %d inputs → %s (%d, runner %s)", len(items), len(cfg.inputs),
             cfg.output, cfg.resolution, cfg.runner)
    from infra.joblog import JobLogHandler

    # Our progress and every worker's warnings (one line per bad item) stay with the shards.
    handler = JobLogHandler(Storage(cfg.output, s3), "logs/preprocess.log", append=True)
    logging.getLogger().addHandler(handler)
    try:
        result = _run(cfg, items, s3)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    return _report(cfg, result, s3)


def _run(cfg: PreprocessConfig, items: list[dict], s3) -> dict:
    from pipelines.preprocess.beam_pipeline import PipelineSpec, run_pipeline

    return run_pipeline(PipelineSpec(items=items, output=cfg.output, resolution=cfg.resolution,
                                       runner=cfg.runner, pipeline_args=list(cfg.pipeline_args),
                                       s3=s3, num_shards=cfg.num_shards, max_pixels=cfg.max_pixels,
                                       estimators=cfg.estimators(), force=cfg.force))


def _report(cfg: PreprocessConfig, result: dict, s3) -> int:
    written = resolved(cfg)
    if written["s3"].get("secret_access_key"):
        written["s3"]["secret_access_key"] = "***"     # never write credentials next to the data
    Storage(cfg.output, s3).write_json("preprocess_config.json", written)
    c = result["counts"]
    g = result["groups"]
    resumed = f", {g['resumed']} of {g['total']} groups already done" if g["resumed"] else ""
    print(f"preprocess: {c['persons']} persons, {c['garments']} garments, {c['errors']} errors "
          f"from {result['inputs']} inputs in {result['seconds']:.1f}s{resumed} → {cfg.output} "
          f"(log: logs/preprocess.log)")
    ms = result.get("metrics", {}).get("item_ms")
    if isinstance(ms, dict):
        print(f"preprocess: per item {ms['mean']:.0f} ms mean, {ms['max']} ms max (derivation only)")
    if c["errors"]:
        from pipelines.preprocess.beam_pipeline import read_table

        for row in read_table(cfg.output, "errors", s3).to_pylist()[:20]:
            print(f"  error: {row['kind']} {row['item_id']!r} [{row['stage']}] {row['reason']}", file=sys.stderr)
    if c["persons"] + c["garments"] == 0:
        print("preprocess: nothing could be processed", file=sys.stderr)
        return 1
    return 0
