"""``gpvton preprocess``: build condition shards with Beam.

    gpvton preprocess --input vitonhd:/data/vitonhd --input dresscode:s3://bucket/dresscode \\
        --output s3://bucket/shards --resolution 512
    gpvton preprocess --input photos:catalogue/ --parser runs/parser/parser.onnx --output shards
    gpvton preprocess --config preprocess.yaml --set resolution=1024
    gpvton preprocess --input photos:catalogue/ --output shards --dry-run    # what tonight would do

Config (YAML/TOML/JSON; every key can be overridden with ``--set key=value``)::

    inputs: ["vitonhd:/data/vitonhd", "photos:s3://cat/photos"]
    output: s3://bucket/shards
    resolution: 512            # or 1024
    runner: FnApiRunner        # in-process; or FlinkRunner / SparkRunner / DataflowRunner
    pipeline_args: []          # passed through to Beam unchanged
    num_shards: 0              # groups of a run (part files per table); 0 = one per 64 items (the unit of resume)
    max_pixels: 64000000       # decompression-bomb guard
    pose: {backend: mediapipe}                 # bundled BlazePose; rtmpose + detector/model URLs; none
    parser: {model: null, classes: lip}        # human parser ONNX (SCHP-style or 'gpvton train parser')
    densepose: {model: null}                   # TorchScript/ONNX; null = approximation from mask + skeleton
    garment_matting: {model: null}             # salient-object ONNX for garments on busy backgrounds
    framing: {person_margin: 0.06, min_person_height: 0.5}
    batch_size: 8              # items per estimator batch
    max_error_fraction: {persons: 0.05, garments: 0.05}   # exit 1 above: error rows / items, per kind
    s3: {endpoint_url: null, access_key_id: null, secret_access_key: null, region: null}

Only the annotations an item lacks are estimated; ``provenance`` in each row says which were given,
derived or estimated, and by which model file (sha256). Preprocess is incremental: rerun it over
the changed catalogue into the same ``--output`` every night. Items whose content (source bytes,
given values, settings, model files) did not change keep their rows; new and changed ones are
derived; withdrawn ones are retired; the manifest lists the current part files and this run's
changes (see ``beam_pipeline.py``). A crashed run resumes on rerun; a run with nothing to change
writes nothing; ``--force`` derives everything again; ``--dry-run`` only prints what a run would do.

The console shows a progress bar and a summary; log records (one warning per bad item, library
output, native messages such as MediaPipe's) go to ``SHARDS/logs/preprocess.log``, and ``-v``
shows them on the console too.

Exit codes: 0 done; 1 the shards are unusable or too many items failed — 0 current persons or 0
current garments, or a kind's error rows over ``max_error_fraction`` of its items (error rows /
(rows + error rows)); 2 configuration error. A dry run exits 0 (2 on a configuration error).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from typing import Any, Iterator, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, field_validator

from infra.storage import Storage
from pipelines.config import ConfigError, InputSpec, S3Config, StorageURL, StrictModel, load_config, resolved
from pipelines.preprocess.estimators.bundle import EstimatorsConfig

log = logging.getLogger(__name__)


class ErrorLimits(BaseModel):
    """Largest share of a kind's items that may end as error rows before the run exits 1."""

    model_config = ConfigDict(extra="forbid")

    persons: float = Field(0.05, ge=0.0, le=1.0)
    garments: float = Field(0.05, ge=0.0, le=1.0)


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
    dry_run: bool = False
    progress: bool = True
    max_error_fraction: ErrorLimits = Field(default_factory=ErrorLimits)

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
                        help="derive every item again (otherwise only new and changed items are)")
    parser.add_argument("--dry-run", action="store_true", default=None,
                        help="print what the run would do (added / changed / unchanged / retired); write nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("pipeline_args", nargs=argparse.REMAINDER,
                        help="after '--': extra Beam pipeline options, passed through unchanged")


def config_from_args(args: argparse.Namespace) -> PreprocessConfig:
    flags = {"inputs": args.inputs, "output": args.output, "resolution": args.resolution,
             "runner": args.runner, "force": getattr(args, "force", None),
             "dry_run": getattr(args, "dry_run", None),
             "progress": False if getattr(args, "no_progress", False) else None}
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
    from infra.joblog import JobLogHandler
    from pipelines.cli import is_verbose

    # Our progress and every worker's warnings (one line per bad item) stay with the shards; a dry
    # run writes nothing, not even its log.
    handler = None if cfg.dry_run else JobLogHandler(
        Storage(cfg.output, s3), "logs/preprocess.log", level=logging.DEBUG if is_verbose() else logging.INFO,
        append=True)
    root = logging.getLogger()
    if handler is not None:
        root.addHandler(handler)
    try:
        with quiet_console(is_verbose()) as console:
            log.info("preprocess: %d items from %d inputs → %s (%d, runner %s)", len(items), len(cfg.inputs),
                     cfg.output, cfg.resolution, cfg.runner)
            result = _run(cfg, items, s3, console)
    finally:
        if handler is not None:
            root.removeHandler(handler)
            handler.close()
    return _report(cfg, result, s3)


@contextlib.contextmanager
def quiet_console(verbose: bool) -> Iterator[TextIO]:
    """While preprocessing, keep log records and native libraries' stderr (MediaPipe's C++
    warnings, Beam workers) off the console unless ``-v``; yields the stream for the progress bar.

    Records still reach every other handler (the job's log file); what native code wrote to file
    descriptor 2 is added to the log as records once the run is over.
    """
    if verbose:
        yield sys.stderr
        return
    from pipelines.cli import StderrHandler

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return False

    drop = _Drop()
    consoles = [h for h in logging.getLogger().handlers if isinstance(h, StderrHandler)]
    for h in consoles:
        h.addFilter(drop)
    sys.stderr.flush()
    saved = os.dup(2)
    capture = tempfile.TemporaryFile()
    os.dup2(capture.fileno(), 2)
    real_fd2 = _writes_to_fd2(sys.stderr)
    console: TextIO = os.fdopen(os.dup(saved), "w", buffering=1) if real_fd2 else sys.stderr
    try:
        yield console
    finally:
        if real_fd2:
            console.close()
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        for line in capture.read().decode("utf-8", "replace").splitlines():
            if line.strip():
                logging.getLogger("native").info("%s", line)
        capture.close()
        for h in consoles:
            h.removeFilter(drop)


def _writes_to_fd2(stream: Any) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def _run(cfg: PreprocessConfig, items: list[dict], s3, console: TextIO) -> dict:
    from tqdm import tqdm

    from pipelines.preprocess.beam_pipeline import PipelineSpec, run_pipeline

    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="item", desc="preprocess", file=console, dynamic_ncols=True,
                       disable=not cfg.progress)
        bar.update(done - bar.n)

    try:
        return run_pipeline(PipelineSpec(items=items, output=cfg.output, resolution=cfg.resolution,
                                         runner=cfg.runner, pipeline_args=list(cfg.pipeline_args),
                                         s3=s3, num_shards=cfg.num_shards, max_pixels=cfg.max_pixels,
                                         estimators=cfg.estimators(), force=cfg.force, dry_run=cfg.dry_run,
                                         progress=progress))
    finally:
        if bar is not None:
            bar.close()


def _change_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {counts.get(k, 0)}" for k in ("added", "changed", "unchanged", "retired"))


def _report(cfg: PreprocessConfig, result: dict, s3) -> int:
    upd = result["update"]
    if cfg.dry_run:
        state = "nothing would change" if upd["noop"] else (
            f"generation {upd['generation']} would derive {upd['derive']} items, copy {upd['copy_parts']} "
            f"parts and keep {upd['keep_parts']}")
        print(f"preprocess: dry run, nothing written: {state} ({result['inputs']} inputs, {cfg.output})")
        for table, cats in upd["by_category"].items():
            print(f"  {table}: {_change_line(upd['changes'][table])}")
            for cat, counts in sorted(cats.items()):
                print(f"    {cat or '?'}: {_change_line(counts)}")
        return 0
    c = result.get("counts") or {"persons": 0, "garments": 0, "errors": 0}
    if upd["noop"]:
        print(f"preprocess: nothing changed: {c['persons']} persons, {c['garments']} garments current "
              f"(generation {result.get('generation', 1)}, {result['inputs']} inputs, {result['seconds']:.1f}s) "
              f"→ {cfg.output}")
    else:
        written = resolved(cfg)
        if written["s3"].get("secret_access_key"):
            written["s3"]["secret_access_key"] = "***"     # never write credentials next to the data
        Storage(cfg.output, s3).write_json("preprocess_config.json", written)
        g = result["groups"]
        resumed = f", {g['resumed']} of {g['total']} groups already done" if g["resumed"] else ""
        print(f"preprocess: generation {result['generation']}: {c['persons']} persons, {c['garments']} garments, "
              f"{c['errors']} errors from {result['inputs']} inputs in {result['seconds']:.1f}s{resumed} "
              f"→ {cfg.output} (log: logs/preprocess.log)")
        print(f"preprocess: derived {result['derived']} items, copied {result['copied']} kept rows; "
              + "; ".join(f"{t} {_change_line(n)}" for t, n in result["changes"].items()))
        ms = result.get("metrics", {}).get("item_ms")
        if isinstance(ms, dict):
            print(f"preprocess: per item {ms['mean']:.0f} ms mean, {ms['max']} ms max (derivation only)")
    errors: list[dict] = []
    if c["errors"]:
        from infra.shards import ShardSet

        errors = ShardSet(cfg.output, s3).read_table("errors").to_pylist()
        for row in errors[:20]:
            print(f"  error: {row['kind']} {row['item_id']!r} [{row['stage']}] {row['reason']}", file=sys.stderr)
    return _exit_code(cfg, c, errors)


def _exit_code(cfg: PreprocessConfig, counts: dict[str, int], errors: list[dict]) -> int:
    """1 when the shards cannot feed a render (no persons or no garments) or a kind's error
    share is over its limit; the lines say which."""
    failed = []
    for table, kind in (("persons", "person"), ("garments", "garment")):
        bad = sum(1 for e in errors if e["kind"] == kind)
        items = counts[table] + bad
        limit = getattr(cfg.max_error_fraction, table)
        if counts[table] == 0:
            failed.append(f"0 {table} in the shards ({bad} error rows)")
        elif bad / items > limit:
            failed.append(f"{bad} of {items} {table[:-1]} items failed ({bad / items:.1%} > "
                          f"max_error_fraction.{table} {limit:.1%})")
    for line in failed:
        print(f"preprocess: {line}", file=sys.stderr)
    if counts["persons"] + counts["garments"] == 0:
        print("preprocess: nothing could be processed", file=sys.stderr)
    return 1 if failed else 0
