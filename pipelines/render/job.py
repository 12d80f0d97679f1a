"""Running a render job: check the model choice, persist the plan, execute the units, summarise.

The job's files (``JOB/job.json``, ``plan/``, ``scores/``, ``renders/``, ``logs/``, ``summary.json``)
are described in ARCHITECTURE.md. A rerun with the same plan and model resumes: units with a
``.done`` marker are skipped. The driver's log records (ours and the libraries') go to
``JOB/logs/driver.log``, each Ray worker's to ``JOB/logs/worker-NN-pPID.log``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import sys
import time
from typing import Any, Optional

from pipelines.cli import is_verbose
from pipelines.config import ConfigError, UserError, resolved
from pipelines.render.config import RenderConfig
from pipelines.render.plan import (detect_variant, plan_digest, plan_units, read_catalogue, read_pairs_file,
                                   units_table, units_to_redo, with_files)
from pipelines.render.summary import final_lines, summarise

log = logging.getLogger("gpvton.render")

RANDOM_WIDTH = 0.125
RANDOM_NOTE = ("RANDOM WEIGHTS (--random-weights): the warp and generator networks are randomly initialised "
               "small networks (width {width}). The images show the pipeline working, not try-on quality.")


class JobResult:
    def __init__(self, exit_code: int, summary: dict, job_root: str):
        self.exit_code, self.summary, self.job_root = exit_code, summary, job_root


def s3_settings(cfg: RenderConfig):
    return cfg.s3.settings()


def _s3_dict(s3) -> dict[str, Optional[str]]:
    return {"endpoint_url": s3.endpoint_url, "access_key_id": s3.access_key_id,
            "secret_access_key": s3.secret_access_key, "region": s3.region}


# --- the model ---------------------------------------------------------------------------------

def check_model_choice(cfg: RenderConfig, s3) -> bool:
    """Both checkpoints, or ``random_weights`` explicitly: returns whether the nets are random.

    Random weights are opt-in: a scheduled job with a forgotten flag must not "succeed" with
    garbage. A missing flag or file is a :class:`ConfigError` that names it.
    """
    from infra.storage import _strip, filesystem

    given = {k: v for k, v in (("warp", cfg.checkpoints.warp), ("generator", cfg.checkpoints.generator)) if v}
    if cfg.random_weights:
        if given:
            raise ConfigError(f"--random-weights and --{'/--'.join(f'{k}-checkpoint' for k in given)} exclude "
                              f"each other: drop one")
        return True
    missing = [k for k in ("warp", "generator") if k not in given]
    if missing:
        flags = " and ".join(f"--{k}-checkpoint" for k in missing)
        keys = ", ".join(f"checkpoints.{k}" for k in missing)
        raise ConfigError(f"no {flags} given ({keys} in the config): pass the trained checkpoint"
                          f"{'s' if len(missing) > 1 else ''}, or --random-weights to check the pipeline "
                          f"with randomly initialised networks")
    for label, path in given.items():
        try:
            found = filesystem(path, s3).exists(_strip(path))
        except Exception as exc:  # noqa: BLE001 - unreachable store, bad credentials
            raise ConfigError(f"--{label}-checkpoint {path}: cannot check it: {exc}") from exc
        if not found:
            raise ConfigError(f"{label} checkpoint not found: {path} (--{label}-checkpoint)")
    return False


def _checkpoint_meta(label: str, path: str, s3=None) -> dict:
    """Kind and width of a checkpoint (fetched like the workers fetch it), checked against its role
    (a wrong file is a config error)."""
    from workers.render_actor import load_checkpoint

    try:
        _, meta = load_checkpoint(path, _s3_dict(s3) if s3 is not None else None)
    except Exception as exc:  # noqa: BLE001 - unreadable / not a GP-VTON state dict
        raise ConfigError(f"{label} checkpoint {path} cannot be loaded: {exc}") from exc
    kind = str(meta.get("kind"))
    if (label == "generator") != (kind == "generator"):
        raise ConfigError(f"--{label}-checkpoint {path} holds a {kind} network; swap the two checkpoint flags?")
    return {"kind": kind, "width": float(meta.get("width", 1.0))}


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


def resolve_precision(requested: str, device: str) -> dict:
    """The job's numeric precision, decided once on the driver so that every worker agrees.

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


def _masked_config(cfg: RenderConfig) -> dict:
    data = resolved(cfg)
    if data.get("s3", {}).get("secret_access_key"):
        data["s3"]["secret_access_key"] = "***"
    return data


# --- the job -----------------------------------------------------------------------------------

def run_job(cfg: RenderConfig) -> JobResult:
    """Plan, execute and summarise a render job (see :mod:`pipelines.render`)."""
    from infra.joblog import JobLogHandler
    from infra.storage import Storage

    s3 = s3_settings(cfg)
    job = Storage(cfg.output, s3)
    # Collect the driver's records from the start; the file is written only once the job starts,
    # so a configuration error leaves no folder behind.
    handler = JobLogHandler(job, "logs/driver.log", level=logging.DEBUG if is_verbose() else logging.INFO,
                            append=True)
    root = logging.getLogger()
    root.addHandler(handler)
    locked_out = False
    try:
        with contextlib.ExitStack() as stack:  # releases the job lock, taken inside _run
            return _run(cfg, s3, job, stack)
    except JobLocked:
        locked_out = True  # the running job owns driver.log: leave it alone
        raise
    except OSError as exc:
        if exc.errno not in _OUTPUT_ERRNO:
            raise
        raise UserError(f"cannot write to {cfg.output}: {exc.strerror or exc} ({exc.filename or 'output'}); "
                        f"free space or make it writable, then rerun the same command: completed units are "
                        f"kept, the rest is rendered") from exc
    finally:
        root.removeHandler(handler)
        if not locked_out and job.exists("job.json"):
            handler.flush()


_OUTPUT_ERRNO = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}  # a full or read-only output (PermissionError: the CLI)


class JobLocked(UserError):
    """Another live run holds ``JOB/lock.json`` (CLI exit code 2)."""


def _take_lock(cfg: RenderConfig, job, stack: contextlib.ExitStack) -> None:
    """One run per output: a second run refuses; a crashed run's lock expires after ``lock_ttl_s``."""
    from infra.lease import Lease, LeaseHeld

    lease = Lease(job, "lock.json", ttl_s=cfg.lock_ttl_s, what="render")
    try:
        lease.acquire()
    except LeaseHeld as exc:
        raise JobLocked(str(exc)) from None
    stack.callback(lease.release)


def _run(cfg: RenderConfig, s3, job, stack: contextlib.ExitStack) -> JobResult:
    from workers.render_actor import WorkerSettings, run_units_local, sha256_file

    t_start = time.time()
    random_init = check_model_choice(cfg, s3)
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

    ck_meta = {}
    if not random_init:
        ck_meta = {label: _checkpoint_meta(label, path, s3) for label, path in
                   (("warp", cfg.checkpoints.warp), ("generator", cfg.checkpoints.generator))}
        ck_variant = ck_meta["warp"]["kind"].split("_", 1)[1]
        if cfg.model.variant not in ("auto", ck_variant):
            raise ConfigError(f"model.variant is {cfg.model.variant} but the warp checkpoint is a {ck_variant} model")
        if ck_variant == "vitonhd" and (set(garments.column("category").to_pylist()) & set(cfg.categories)) - {"upper"}:
            if cfg.categories != ["upper"]:
                raise ConfigError("the VITON-HD warp checkpoint only renders upper garments: add "
                                  "--set categories=[upper] or use a Dress Code warp checkpoint")
        variant = ck_variant
        width = ck_meta["warp"]["width"]
    else:
        width = cfg.model.width if cfg.model.width is not None else RANDOM_WIDTH
    device = _resolve_device(cfg)
    precision = resolve_precision(cfg.precision, device)
    settings = WorkerSettings(
        job_root=job.root, shards_root=cfg.shards, variant=variant, resolution=resolution,
        shard_size=tuple(shard_size), batch_size=cfg.batch_size, image_format=cfg.output_format.format,
        quality=cfg.output_format.quality, debug=cfg.output_format.debug, device=device,
        composite=cfg.composite, frame=cfg.output_format.frame,
        precision=precision["resolved"], warp_checkpoint=cfg.checkpoints.warp,
        generator_checkpoint=cfg.checkpoints.generator, width=width, seed=cfg.model.seed,
        thresholds={k: v.model_dump() for k, v in cfg.thresholds.items()}, s3=_s3_dict(s3),
        num_threads=max(1, int(cfg.num_cpus)) if cfg.runner == "ray" else 0, cudnn_benchmark=cfg.cudnn_benchmark,
        log_level=logging.DEBUG if is_verbose() else logging.INFO)
    pool = None
    if cfg.runner == "ray" and (cfg.force or not job.exists("job.json")):
        # a new job certainly has work: start the actors now, so that their start-up (Python,
        # torch, the networks) overlaps the planning, hashing and writing below
        pool = _start_pool(cfg, settings, s3, stack)

    pairs_list = read_pairs_file(cfg, s3) if cfg.pairing == "pairs" else None
    units = plan_units(cfg, persons, garments, pairs_list)
    if not units:
        raise ConfigError(f"nothing to render: no pair of the shards at {cfg.shards} passes the filters, "
                          f"categories {cfg.categories} and pairing '{cfg.pairing}'")
    digest = plan_digest(units)

    hashes = {k: sha256_file(p, _s3_dict(s3)) for k, p in
              (("warp", cfg.checkpoints.warp), ("generator", cfg.checkpoints.generator)) if p}
    model_note = RANDOM_NOTE.format(width=width) if random_init else \
        f"checkpoints: warp {cfg.checkpoints.warp}, generator {cfg.checkpoints.generator}"
    if random_init:
        bar = "!" * 100
        print(f"{bar}\n!! {model_note}\n{bar}", file=sys.stderr)
    fingerprint = hashlib.sha256(json.dumps({
        "plan": digest, "variant": variant, "ckpt": hashes, "width": width, "seed": cfg.model.seed,
        "resolution": resolution, "format": cfg.output_format.model_dump(), "precision": precision["resolved"],
    }, sort_keys=True).encode()).hexdigest()[:16]

    # --- the persisted plan (resume) ---
    _take_lock(cfg, job, stack)
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
    import pyarrow.parquet as pq

    buf = io.BytesIO()
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
        "device": device, "precision": precision, "runner": cfg.runner, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })

    done = {int(k.rsplit("unit-", 1)[1].split(".")[0]) for k in job.iter_done("scores")}
    redo = units_to_redo(job, cfg.retry_errors) if done else {}
    if redo:
        log.info("re-attempting %d error rows in %d done units (%s)", sum(redo.values()), len(redo),
                 "--retry-errors" if cfg.retry_errors else "transient storage failures")
        done -= set(redo)
    todo = [with_files(u, index) for u in units if u["unit_id"] not in done]
    total_pairs = sum(len(u["pairs"]) for u in units)
    todo_pairs = sum(len(u["pairs"]) for u in todo)
    log.info("plan: %d units, %d pairs (%s, %d done); rendering %d units / %d pairs on %s (%s)",
             len(units), total_pairs, variant, len(done), len(todo), todo_pairs, device, cfg.runner)

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
                run_units_local(settings, todo, on_result, in_flight=cfg.in_flight_per_actor)
            else:
                (pool or _start_pool(cfg, settings, s3, stack, units=len(todo))).run(todo, on_result)
    finally:
        bar.close()
    run_elapsed = time.time() - run_start

    summary = summarise(job, units, lost, run_elapsed, rendered, t_start, cfg, model_note, len(done))
    job.write_json("summary.json", summary)
    for line in final_lines(summary, job.root):
        print(line)
    return JobResult(summary["exit_code"], summary, job.root)


def _start_pool(cfg: RenderConfig, settings, s3, stack: contextlib.ExitStack, units: Optional[int] = None):
    """Ray (joined or started locally, shut down with ``stack``) and a started actor pool."""
    from infra import failpoints
    from workers.render_actor import RayPool

    stack.enter_context(_ray_session(cfg))
    actors = cfg.actors if units is None else max(1, min(cfg.actors, units))
    pool = RayPool(settings, actors=actors, num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus,
                   in_flight_per_actor=cfg.in_flight_per_actor, max_restarts=cfg.max_restarts,
                   max_task_retries=cfg.max_task_retries, env_vars={**failpoints.armed_env(), **s3.export_env()})
    stack.callback(pool.close)
    return pool


@contextlib.contextmanager
def _ray_session(cfg: RenderConfig):
    # Ray's default for a new local cluster is token auth, announced on stderr unless the mode is
    # set explicitly: set the same mode explicitly. Ray reads it when first imported, and a user's
    # own setting wins.
    set_auth = not cfg.address and "RAY_AUTH_MODE" not in os.environ and "ray" not in sys.modules
    if set_auth:
        os.environ["RAY_AUTH_MODE"] = "token"
    import ray

    started_here = False
    try:
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=is_verbose(), configure_logging=False)
            if cfg.address:
                kwargs["address"] = cfg.address
            else:
                kwargs["object_store_memory"] = 256 * 1024 * 1024  # actors read shards themselves
                need = cfg.actors * max(cfg.num_cpus, 0.01)
                kwargs["num_cpus"] = max(int(need + 0.999), os.cpu_count() or 1)
            ray.init(**kwargs)
            started_here = True
        yield
    finally:
        if started_here:
            ray.shutdown()
        if set_auth:
            os.environ.pop("RAY_AUTH_MODE", None)
