"""``gpvton render``: every garment onto every suitable model photo, resumable, on a Ray pool.

    gpvton render --config job.yaml [--shards URL] [--output URL] [--warp-checkpoint F]
                  [--generator-checkpoint F] [--resolution 512|1024] [--batch-size N] [--actors N]
                  [--device cpu|cuda|auto] [--format jpg|png|webp] [--runner ray|local]
                  [--address ray://...] [--force] [--set key.sub=value ...]

A job file (every key optional except shards/output; ``--set key.sub=value`` overrides)::

    shards: s3://catalogue/shards-512          # gpvton preprocess output
    output: s3://renders/2026-11-25            # the job root (JOB below)
    pairing: cross                             # cross | pairs (+ pairs_file) | paired
    persons: {include: ["*"], exclude: ["test_*"]}
    garments: {include: ["SS26-*"]}
    categories: [upper, lower, dresses]
    checkpoints: {warp: /w/warp_dresscode.pth, generator: /w/gen_dresscode_512.pth}
    resolution: 512                            # must match the shards (1024: warp at half res)
    batch_size: 8
    unit_size: 64                              # pairs per resumable unit
    runner: ray                                # ray | local (in process)
    actors: 4                                  # one per GPU
    num_gpus: 1
    num_cpus: 4
    device: auto                               # cuda when the actor has a GPU
    precision: bf16
    output_format: {format: jpg, quality: 92, debug: false}
    thresholds: {warp_miou: {warn: 0.5, fail: 0.25}}
    max_failed_fraction: 0.02                  # exit 1 above this (error rows + lost units)
    address: null                              # ray://head:10001 to join a cluster
    s3: {endpoint_url: null}                   # else the AWS environment

Stages
1. **Plan** (driver): read the id/category columns of the shards, apply the id filters and the
   pairing (``cross``: every category-compatible person × garment; ``pairs``: an explicit list;
   ``paired``: each person with its worn garment), then cut the pairs into units of about
   ``unit_size`` pairs, grouped by (category, person block × garment block) so that a worker
   encodes each garment and person of a unit once. The plan is deterministic (sorted ids) and
   persisted to ``JOB/plan/units.parquet``; a rerun reuses it and refuses a different plan (or a
   different model) unless ``--force``, which discards the previous scores.
2. **Execute**: units without a ``.done`` marker go to the workers (``workers/render_actor.py``:
   a fixed pool of Ray actors, or in process with ``runner: local``).
3. **Summarise**: ``JOB/summary.json`` from all score files (ok / warn / fail / error counts,
   pairs/s, elapsed, worst failures). Exit 1 when the failed fraction (``error`` rows plus pairs of
   units that could not run; add ``fail`` through ``fail_flags``) exceeds ``max_failed_fraction``.

``JOB/job.json`` holds the resolved config (secrets masked), package version, checkpoint
sha256s and the model note (random weights are announced loudly there and on stderr).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import logging
import os
import sys
import time
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from pipelines.config import ConfigError, S3Config, StrictModel, load_config, resolved

log = logging.getLogger("gpvton.render")

RANDOM_WIDTH = 0.125
RANDOM_NOTE = ("RANDOM WEIGHTS: no checkpoints were given, the warp and generator networks are randomly "
               "initialised small networks (width {width}). The images show the pipeline working, "
               "not try-on quality.")


class IdFilter(StrictModel):
    include: list[str] = Field(default_factory=lambda: ["*"], description="glob patterns to keep")
    exclude: list[str] = Field(default_factory=list, description="glob patterns to drop")

    def keep(self, item_id: str) -> bool:
        return (any(fnmatch.fnmatchcase(item_id, p) for p in self.include)
                and not any(fnmatch.fnmatchcase(item_id, p) for p in self.exclude))


class Checkpoints(StrictModel):
    warp: Optional[str] = None        # official .pth or our .safetensors
    generator: Optional[str] = None


class ModelConfig(StrictModel):
    variant: Literal["auto", "vitonhd", "dresscode"] = "auto"
    width: Optional[float] = Field(None, gt=0, le=1, description="network width of random-init nets")
    seed: int = 0


class OutputConfig(StrictModel):
    format: Literal["jpg", "png", "webp"] = "jpg"
    quality: int = Field(92, ge=1, le=100)
    debug: bool = False  # also write warped garment + label map under JOB/debug/


class ThresholdConfig(StrictModel):
    warn: float
    fail: float

    @model_validator(mode="after")
    def _order(self) -> "ThresholdConfig":
        if self.fail > self.warn:
            raise ValueError(f"fail ({self.fail}) must be <= warn ({self.warn})")
        return self


def _default_thresholds() -> dict[str, ThresholdConfig]:
    from gpvton_core.scores import DEFAULT_THRESHOLDS

    return {k: ThresholdConfig(warn=v.warn, fail=v.fail) for k, v in DEFAULT_THRESHOLDS.items()}


class RenderConfig(StrictModel):
    shards: str = Field(..., description="condition shards URL (gpvton preprocess output)")
    output: str = Field(..., description="job URL (local folder or s3://bucket/prefix)")
    pairing: Literal["cross", "pairs", "paired"] = "cross"
    pairs_file: Optional[str] = None  # pairing=pairs: lines 'person_id garment_id' (or CSV)
    persons: IdFilter = Field(default_factory=IdFilter)
    garments: IdFilter = Field(default_factory=IdFilter)
    categories: list[Literal["upper", "lower", "dresses"]] = Field(
        default_factory=lambda: ["upper", "lower", "dresses"])
    checkpoints: Checkpoints = Field(default_factory=Checkpoints)
    model: ModelConfig = Field(default_factory=ModelConfig)
    resolution: Optional[Literal[128, 256, 512, 1024]] = None  # None: the shards' height; 128/256: tests
    batch_size: int = Field(4, ge=1)
    unit_size: int = Field(64, ge=1, description="pairs per unit (the resumable grain)")
    runner: Literal["ray", "local"] = "ray"
    actors: int = Field(1, ge=1)
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    in_flight_per_actor: int = Field(2, ge=1)
    max_restarts: int = Field(3, ge=0)
    max_task_retries: int = Field(3, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    output_format: OutputConfig = Field(default_factory=OutputConfig)
    thresholds: dict[str, ThresholdConfig] = Field(default_factory=_default_thresholds)
    max_failed_fraction: float = Field(0.05, ge=0, le=1)
    fail_flags: list[Literal["error", "fail"]] = Field(default_factory=lambda: ["error"])
    address: Optional[str] = None  # Ray address; None = start a local Ray
    s3: S3Config = Field(default_factory=S3Config)
    force: bool = False
    progress: bool = True

    @field_validator("thresholds")
    @classmethod
    def _known_scores(cls, v: dict[str, ThresholdConfig]) -> dict[str, ThresholdConfig]:
        from gpvton_core.scores import SCORE_NAMES

        unknown = sorted(set(v) - set(SCORE_NAMES))
        if unknown:
            raise ValueError(f"unknown score(s) {unknown}; known: {list(SCORE_NAMES)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> "RenderConfig":
        if self.pairing == "pairs" and not self.pairs_file:
            raise ValueError("pairing 'pairs' needs pairs_file (lines 'person_id garment_id')")
        if self.num_gpus > 0 and self.device == "cpu":
            raise ValueError("num_gpus > 0 with device 'cpu': set device: cuda (or auto)")
        return self


# --- CLI -------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="job config (YAML/TOML/JSON); flags override it")
    parser.add_argument("--shards", help="condition shards URL")
    parser.add_argument("--output", help="job URL (folder or s3://...)")
    parser.add_argument("--pairing", choices=["cross", "pairs", "paired"])
    parser.add_argument("--pairs-file")
    parser.add_argument("--warp-checkpoint")
    parser.add_argument("--generator-checkpoint")
    parser.add_argument("--resolution", type=int, choices=[128, 256, 512, 1024],
                        help="must match the shards (default: theirs); 1024 runs the warp at half resolution")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--unit-size", type=int)
    parser.add_argument("--actors", type=int)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", choices=["fp32", "bf16"])
    parser.add_argument("--format", choices=["jpg", "png", "webp"])
    parser.add_argument("--runner", choices=["ray", "local"])
    parser.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    parser.add_argument("--force", action="store_true", default=None,
                        help="discard a previous plan/scores that differ from this run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set output_format.quality=90")


def config_from_args(args: argparse.Namespace) -> RenderConfig:
    flags = {
        "shards": args.shards, "output": args.output, "pairing": args.pairing, "pairs_file": args.pairs_file,
        "checkpoints.warp": args.warp_checkpoint, "checkpoints.generator": args.generator_checkpoint,
        "resolution": args.resolution, "batch_size": args.batch_size, "unit_size": args.unit_size,
        "actors": args.actors, "device": args.device, "precision": args.precision,
        "output_format.format": args.format, "runner": args.runner, "address": args.address,
        "force": args.force, "progress": False if args.no_progress else None,
    }
    from pipelines.config import apply_overrides, read_config_file

    data: dict[str, Any] = read_config_file(args.config) if args.config else {}
    data = apply_overrides(data, {k: v for k, v in flags.items() if v is not None})
    if args.overrides:
        data = apply_overrides(data, list(args.overrides))
    missing = [k for k in ("shards", "output") if not data.get(k)]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}: pass --{' --'.join(missing)} or set them in --config")
    return load_config(RenderConfig, None, None, base=data)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    return run_job(cfg).exit_code


# --- planning ----------------------------------------------------------------------------------

def _checkpoint_meta(label: str, path: str) -> dict:
    """Kind and width of a checkpoint, checked against its role (a wrong file is a config error)."""
    from workers.render_actor import load_checkpoint

    try:
        _, meta = load_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - unreadable / not a GP-VTON state dict
        raise ConfigError(f"{label} checkpoint {path} cannot be loaded: {exc}") from exc
    kind = str(meta.get("kind"))
    if (label == "generator") != (kind == "generator"):
        raise ConfigError(f"--{label}-checkpoint {path} holds a {kind} network; swap the two checkpoint flags?")
    return {"kind": kind, "width": float(meta.get("width", 1.0))}


def s3_settings(cfg: RenderConfig):
    return cfg.s3.settings()


def _s3_dict(s3) -> dict[str, Optional[str]]:
    return {"endpoint_url": s3.endpoint_url, "access_key_id": s3.access_key_id,
            "secret_access_key": s3.secret_access_key, "region": s3.region}


def read_catalogue(cfg: RenderConfig, s3) -> tuple[Any, Any, dict, dict]:
    """(persons, garments) metadata tables, the id → part-file index and the manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from infra.storage import Storage, with_retries
    from pipelines.schema import GARMENTS, PERSONS

    st = Storage(cfg.shards, s3)
    try:
        manifest = st.read_json("manifest.json") if st.exists("manifest.json") else {}
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"cannot read {cfg.shards}/manifest.json: {exc}") from exc
    tables, index = {}, {}
    cols = {"persons": ["person_id", "categories", "source", "height", "width", "worn_garment_id"],
            "garments": ["garment_id", "category", "source", "height", "width"]}
    schemas = {"persons": PERSONS, "garments": GARMENTS}
    for name in ("persons", "garments"):
        files = [k for k in st.list(name, ".parquet")]
        if not files:
            raise ConfigError(f"no {name} shards under {cfg.shards}/{name}/: point --shards at the output "
                              f"of 'gpvton preprocess'")
        parts, idx = [], {}
        key = cols[name][0]
        for f in files:
            t = with_retries(lambda: pq.read_table(st._path(f), filesystem=st.fs, columns=cols[name]),
                             what=f"read {f}")
            for i in t.column(key).to_pylist():
                idx[i] = f
            parts.append(t)
        tables[name] = pa.concat_tables(parts) if parts else schemas[name].empty_table().select(cols[name])
        index[name] = idx
    return tables["persons"], tables["garments"], index, manifest


def detect_variant(cfg: RenderConfig, persons, garments, manifest: dict) -> str:
    if cfg.model.variant != "auto":
        return cfg.model.variant
    if manifest.get("variant") in ("vitonhd", "dresscode"):
        return manifest["variant"]
    cats = set(garments.column("category").to_pylist())
    srcs = set(persons.column("source").to_pylist()) | set(garments.column("source").to_pylist())
    if cats - {"upper"} or "dresscode" in srcs:
        return "dresscode"
    return "vitonhd"


def _read_pairs_file(cfg: RenderConfig, s3) -> list[tuple[str, str]]:
    from infra.storage import _strip, filesystem

    path = cfg.pairs_file or ""
    fs = filesystem(path, s3)
    try:
        with fs.open(_strip(path), "rt") as fh:
            text = fh.read()
    except FileNotFoundError as exc:
        raise ConfigError(f"pairs_file not found: {path}") from exc
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [x.strip() for x in (line.split(",") if "," in line else line.split())]
        if len(parts) < 2:
            raise ConfigError(f"{path}:{n}: expected 'person_id garment_id', got {line!r}")
        if n == 1 and parts[0] == "person_id":
            continue
        out.append((parts[0], parts[1]))
    return out


def plan_units(cfg: RenderConfig, persons, garments, pairs_list: Optional[list[tuple[str, str]]] = None) -> list[dict]:
    """Deterministic units: pairs grouped by category and (person block × garment block)."""
    import math

    p_rows = [r for r in persons.to_pylist() if cfg.persons.keep(r["person_id"])]
    g_rows = [r for r in garments.to_pylist()
              if cfg.garments.keep(r["garment_id"]) and r["category"] in cfg.categories]
    p_cats = {r["person_id"]: set(r["categories"] or []) for r in p_rows}
    g_cat = {r["garment_id"]: r["category"] for r in g_rows}
    worn = {r["person_id"]: r["worn_garment_id"] for r in p_rows if r.get("worn_garment_id")}
    by_cat: dict[str, list[tuple[str, str]]] = {}
    if cfg.pairing == "cross":
        for c in cfg.categories:
            ps = sorted(p for p, cs in p_cats.items() if c in cs)
            gs = sorted(g for g, gc in g_cat.items() if gc == c)
            by_cat[c] = [(p, g) for p in ps for g in gs]
    else:
        if cfg.pairing == "paired":
            cand = sorted((p, g) for p, g in worn.items())
            cand = [(p, g) for p, g in cand if g in g_cat]
        else:
            cand = list(dict.fromkeys(pairs_list or []))
            unknown = [(p, g) for p, g in cand if p not in p_cats or g not in g_cat]
            if unknown and len(unknown) == len(cand):
                raise ConfigError(f"none of the {len(cand)} pairs in {cfg.pairs_file} names a person and a "
                                  f"garment present in the shards (after filters), e.g. {unknown[0]}")
            if unknown:
                log.warning("%d pairs name ids missing from the shards/filters and are skipped, e.g. %s",
                            len(unknown), unknown[:3])
            cand = [(p, g) for p, g in cand if p in p_cats and g in g_cat]
        for p, g in cand:
            c = g_cat[g]
            if c in p_cats[p]:
                by_cat.setdefault(c, []).append((p, g))
            else:
                log.warning("pair %s × %s skipped: the photo does not take category %s", p, g, c)
    units: list[dict] = []
    for c in cfg.categories:
        pairs = by_cat.get(c, [])
        if not pairs:
            continue
        ps = sorted({p for p, _ in pairs})
        gs = sorted({g for _, g in pairs})
        gb = max(1, min(len(gs), int(math.ceil(math.sqrt(cfg.unit_size)))))
        pb = max(1, cfg.unit_size // gb)
        if len(ps) < pb:  # few persons: give the garment axis the rest of the unit
            pb = len(ps)
            gb = max(1, cfg.unit_size // pb)
        p_block = {p: i // pb for i, p in enumerate(ps)}
        g_block = {g: i // gb for i, g in enumerate(gs)}
        cells: dict[tuple[int, int], list[tuple[str, str]]] = {}
        for p, g in sorted(pairs, key=lambda x: (p_block[x[0]], g_block[x[1]], x[0], x[1])):
            cells.setdefault((p_block[p], g_block[g]), []).append((p, g))
        # sparse pair sets: merge consecutive small cells up to unit_size
        chunk: list[tuple[str, str]] = []
        for key in sorted(cells):
            cell = cells[key]
            if chunk and len(chunk) + len(cell) > cfg.unit_size:
                units.append(_unit(len(units), c, chunk, worn))
                chunk = []
            chunk.extend(cell)
            while len(chunk) >= cfg.unit_size:
                units.append(_unit(len(units), c, chunk[:cfg.unit_size], worn))
                chunk = chunk[cfg.unit_size:]
        if chunk:
            units.append(_unit(len(units), c, chunk, worn))
    return units


def _unit(uid: int, category: str, pairs: list[tuple[str, str]], worn: dict) -> dict:
    ps = sorted({p for p, _ in pairs})
    return {"unit_id": uid, "category": category, "person_ids": ps,
            "garment_ids": sorted({g for _, g in pairs}),
            "pairs": [{"person_id": p, "garment_id": g} for p, g in pairs],
            "worn": {p: worn[p] for p in ps if p in worn}}


def units_table(units: list[dict]):
    import pyarrow as pa

    from pipelines.schema import UNITS

    return pa.Table.from_pylist([{k: u[k] for k in UNITS.names} for u in units], schema=UNITS)


def plan_digest(units: list[dict]) -> str:
    h = hashlib.sha256()
    for u in units:
        h.update(json.dumps([u["unit_id"], u["category"], [(p["person_id"], p["garment_id"]) for p in u["pairs"]]],
                            separators=(",", ":")).encode())
    return h.hexdigest()[:16]


# --- the job -----------------------------------------------------------------------------------

class JobResult:
    def __init__(self, exit_code: int, summary: dict, job_root: str):
        self.exit_code, self.summary, self.job_root = exit_code, summary, job_root


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("gpvton")
    except Exception:  # noqa: BLE001
        return "unknown"


def _resolve_device(cfg: RenderConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() and (cfg.num_gpus > 0 or cfg.runner == "local") else "cpu"
    except Exception:  # noqa: BLE001
        return "cpu"


def _masked_config(cfg: RenderConfig) -> dict:
    data = resolved(cfg)
    if data.get("s3", {}).get("secret_access_key"):
        data["s3"]["secret_access_key"] = "***"
    return data


def run_job(cfg: RenderConfig) -> JobResult:
    """Plan, execute and summarise a render job (see the module docstring)."""
    from infra.storage import Storage
    from workers.render_actor import WorkerSettings, run_units_local, sha256_file

    started = time.time()
    s3 = s3_settings(cfg)
    job = Storage(cfg.output, s3)
    persons, garments, index, manifest = read_catalogue(cfg, s3)
    variant = detect_variant(cfg, persons, garments, manifest)
    sizes = {(h, w) for h, w in zip(persons.column("height").to_pylist(), persons.column("width").to_pylist())}
    sizes |= {(h, w) for h, w in zip(garments.column("height").to_pylist(), garments.column("width").to_pylist())}
    if len(sizes) != 1:
        raise ConfigError(f"shards mix image sizes {sorted(sizes)}; preprocess them at one resolution")
    shard_size = sizes.pop()
    resolution = cfg.resolution or shard_size[0]
    if resolution != shard_size[0]:
        raise ConfigError(f"resolution {resolution} but the shards are {shard_size[0]}×{shard_size[1]}: "
                          f"rerun 'gpvton preprocess' at {resolution} or drop --resolution")
    if shard_size[0] % 32 or shard_size[1] % 32 or (resolution >= 1024 and (shard_size[0] // 2) % 32):
        raise ConfigError(f"image size {shard_size} is not a multiple of 32 as the networks need")

    pairs_list = _read_pairs_file(cfg, s3) if cfg.pairing == "pairs" else None
    units = plan_units(cfg, persons, garments, pairs_list)
    digest = plan_digest(units)

    ck_meta = {}
    for label, path in (("warp", cfg.checkpoints.warp), ("generator", cfg.checkpoints.generator)):
        if not path:
            continue
        if not os.path.exists(path) and "://" not in path:
            raise ConfigError(f"{label} checkpoint not found: {path}")
        ck_meta[label] = _checkpoint_meta(label, path)
    if "warp" in ck_meta:
        ck_variant = ck_meta["warp"]["kind"].split("_", 1)[1]
        if cfg.model.variant not in ("auto", ck_variant):
            raise ConfigError(f"model.variant is {cfg.model.variant} but the warp checkpoint is a {ck_variant} model")
        if ck_variant == "vitonhd" and (set(garments.column("category").to_pylist()) & set(cfg.categories)) - {"upper"}:
            if cfg.categories != ["upper"]:
                raise ConfigError("the VITON-HD warp checkpoint only renders upper garments: add "
                                  "--set categories=[upper] or use a Dress Code warp checkpoint")
        variant = ck_variant
    if bool(cfg.checkpoints.warp) != bool(cfg.checkpoints.generator):
        log.warning("only one checkpoint given: the other network is randomly initialised")
    random_init = not (cfg.checkpoints.warp and cfg.checkpoints.generator)
    width = cfg.model.width if cfg.model.width is not None else (RANDOM_WIDTH if random_init else 1.0)
    if "warp" in ck_meta and "generator" in ck_meta:
        width = ck_meta["warp"]["width"]
    hashes = {k: sha256_file(p, _s3_dict(s3)) for k, p in
              (("warp", cfg.checkpoints.warp), ("generator", cfg.checkpoints.generator)) if p}
    model_note = RANDOM_NOTE.format(width=width) if random_init else \
        f"checkpoints: warp {cfg.checkpoints.warp}, generator {cfg.checkpoints.generator}"
    if random_init:
        bar = "!" * 100
        print(f"{bar}\n!! {model_note}\n{bar}", file=sys.stderr)
    device = _resolve_device(cfg)
    fingerprint = hashlib.sha256(json.dumps({
        "plan": digest, "variant": variant, "ckpt": hashes, "width": width, "seed": cfg.model.seed,
        "resolution": resolution, "format": cfg.output_format.model_dump(), "precision": cfg.precision,
    }, sort_keys=True).encode()).hexdigest()[:16]

    # --- the persisted plan (resume) ---
    if job.exists("job.json") and not cfg.force:
        old = job.read_json("job.json")
        if old.get("fingerprint") != fingerprint:
            what = "plan" if old.get("plan_digest") != digest else "model/output settings"
            raise ConfigError(
                f"{cfg.output} already holds a job with a different {what} "
                f"(fingerprint {old.get('fingerprint')} vs {fingerprint}); use another --output, "
                f"or --force to discard its scores and render again")
    if cfg.force:
        log.warning("--force: discarding the previous plan, scores and images under %s", cfg.output)
        for key in ("scores", "plan", "summary.json", "renders", "debug"):
            job.delete(key)
    buf = io.BytesIO()
    import pyarrow.parquet as pq

    pq.write_table(units_table(units), buf)
    if not job.exists("plan/units.parquet") or cfg.force:
        job.write_bytes("plan/units.parquet", buf.getvalue())
    job.write_json("job.json", {
        "config": _masked_config(cfg), "package_version": _package_version(), "variant": variant,
        "resolution": resolution, "shard_size": list(shard_size), "width": width,
        "checkpoints": {k: {"path": p, "sha256": hashes.get(k)} for k, p in
                        (("warp", cfg.checkpoints.warp), ("generator", cfg.checkpoints.generator))},
        "checkpoint_meta": ck_meta, "random_weights": random_init, "model_note": model_note, "plan_digest": digest,
        "fingerprint": fingerprint, "units": len(units), "pairs": sum(len(u["pairs"]) for u in units),
        "device": device, "runner": cfg.runner, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })

    done = {int(k.rsplit("unit-", 1)[1].split(".")[0]) for k in job.iter_done("scores")}
    todo = [u for u in units if u["unit_id"] not in done]
    total_pairs = sum(len(u["pairs"]) for u in units)
    todo_pairs = sum(len(u["pairs"]) for u in todo)
    log.info("plan: %d units, %d pairs (%s, %d done); rendering %d units / %d pairs on %s (%s)",
             len(units), total_pairs, variant, len(done), len(todo), todo_pairs, device, cfg.runner)

    settings = WorkerSettings(
        job_root=cfg.output, shards_root=cfg.shards, variant=variant, resolution=resolution,
        shard_size=tuple(shard_size), batch_size=cfg.batch_size, image_format=cfg.output_format.format,
        quality=cfg.output_format.quality, debug=cfg.output_format.debug, device=device,
        precision=cfg.precision, warp_checkpoint=cfg.checkpoints.warp,
        generator_checkpoint=cfg.checkpoints.generator, width=width, seed=cfg.model.seed,
        thresholds={k: v.model_dump() for k, v in cfg.thresholds.items()}, s3=_s3_dict(s3),
        num_threads=max(1, int(cfg.num_cpus)) if cfg.runner == "ray" else 0)

    from tqdm import tqdm

    bar = tqdm(total=todo_pairs, unit="pair", desc="render", disable=not cfg.progress or not todo_pairs,
               file=sys.stderr, dynamic_ncols=True)
    lost: list[dict] = []
    run_start = time.time()
    rendered = 0

    def on_result(res: dict) -> None:
        nonlocal rendered
        if res.get("failed"):
            lost.append(res)
        else:
            rendered += res["pairs"]
        bar.update(res["pairs"])
        el = time.time() - run_start
        bar.set_postfix(pairs_s=f"{rendered / el:.2f}" if el > 0 else "-", lost_units=len(lost))

    try:
        if todo:
            if cfg.runner == "local":
                run_units_local(settings, index, todo, on_result)
            else:
                _run_on_ray(cfg, settings, index, todo, on_result, s3)
    finally:
        bar.close()
    run_elapsed = time.time() - run_start

    summary = summarise(job, units, lost, run_elapsed, rendered, started, cfg, model_note, len(done))
    job.write_json("summary.json", summary)
    code = 1 if summary["failed_fraction"] > cfg.max_failed_fraction else 0
    print(f"render: {summary['pairs']} pairs: {summary['counts']} ; {summary['pairs_per_second']:.2f} pairs/s "
          f"this run; failed fraction {summary['failed_fraction']:.3f} "
          f"(limit {cfg.max_failed_fraction}) → exit {code}\n  job: {cfg.output}", file=sys.stderr)
    return JobResult(code, summary, cfg.output)


def _run_on_ray(cfg: RenderConfig, settings, index, todo, on_result, s3) -> None:
    import ray

    from workers.render_actor import run_units_ray

    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if cfg.address:
            kwargs["address"] = cfg.address
        else:
            kwargs["object_store_memory"] = 256 * 1024 * 1024  # actors read shards themselves
            need = cfg.actors * max(cfg.num_cpus, 0.01)
            kwargs["num_cpus"] = max(int(need + 0.999), os.cpu_count() or 1)
        ray.init(**kwargs)
        started_here = True
    try:
        run_units_ray(settings, index, todo, on_result, actors=cfg.actors, num_cpus=cfg.num_cpus,
                      num_gpus=cfg.num_gpus, in_flight_per_actor=cfg.in_flight_per_actor,
                      max_restarts=cfg.max_restarts, max_task_retries=cfg.max_task_retries,
                      env_vars=s3.export_env())
    finally:
        if started_here:
            ray.shutdown()


def read_scores(job) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.schema import SCORES

    tables = []
    for key in job.iter_done("scores"):
        tables.append(pq.read_table(io.BytesIO(job.read_bytes(key))))
    return pa.concat_tables(tables) if tables else SCORES.empty_table()


def summarise(job, units, lost, run_elapsed, rendered, started, cfg, model_note, skipped) -> dict:
    scores = read_scores(job)
    flags = scores.column("flag").to_pylist()
    counts = {f: flags.count(f) for f in ("ok", "warn", "fail", "error")}
    planned = sum(len(u["pairs"]) for u in units)
    lost_pairs = sum(r["pairs"] for r in lost)
    failed = sum(counts[f] for f in cfg.fail_flags) + lost_pairs + max(0, planned - len(flags) - lost_pairs)
    rows = scores.to_pylist()
    worst = [r for r in rows if r["flag"] in ("error", "fail")]
    worst.sort(key=lambda r: (r["flag"] != "error", r["warp_miou"] if r["warp_miou"] is not None else 0))
    return {
        "pairs": planned, "scored": len(flags), "counts": counts, "missing": planned - len(flags),
        "units": len(units), "units_skipped_done": skipped, "units_lost": [r["unit_id"] for r in lost],
        "lost_errors": [r.get("error") for r in lost][:20],
        "failed_fraction": failed / planned if planned else 0.0,
        "max_failed_fraction": cfg.max_failed_fraction,
        "pairs_rendered_this_run": rendered,
        "pairs_per_second": rendered / run_elapsed if run_elapsed > 0 else 0.0,
        "elapsed_seconds": time.time() - started, "render_seconds": run_elapsed,
        "model_note": model_note,
        "failures": [{k: r[k] for k in ("unit_id", "person_id", "garment_id", "category", "flag", "reason", "error")}
                     for r in worst[:50]],
    }
