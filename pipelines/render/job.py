"""Running a render job: check the model choice, persist the plan, execute the units, summarise.

The job's files (``JOB/job.json``, ``plan/``, ``scores/``, ``renders/``, ``logs/``, ``summary.json``)
are described in ARCHITECTURE.md. A rerun with the same plan and model resumes: units with a
``.done`` marker are skipped. The driver's log records (ours and the libraries') go to
``JOB/logs/driver.log``, each Ray worker's to ``JOB/logs/worker-NN-pPID.log``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import time
from typing import Any, Optional

from gpvton_core.conditions.labels import variant_categories
from pipelines.cli import is_verbose
from pipelines.config import ConfigError, UserError, resolved
from pipelines.render.config import RenderConfig
from pipelines.render.commit import commit
from pipelines.render.delta import INDEX_COLUMNS, diff, versions
from pipelines.render.plan import (detect_variant, plan_pairs, read_catalogue, read_pairs_file, units_from_pairs,
                                   units_table, with_files)
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

def uses_random_weights(cfg: RenderConfig, s3) -> bool:
    """Both checkpoints, or ``random_weights`` explicitly: returns whether the nets are random.

    Random weights are opt-in: a scheduled job with a forgotten flag must not "succeed" with
    garbage. A missing flag or file is a :class:`ConfigError` that names it.
    """
    from infra.storage import filesystem, strip_scheme

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
            found = filesystem(path, s3).exists(strip_scheme(path))
        except Exception as exc:  # noqa: BLE001 - unreachable store, bad credentials
            raise ConfigError(f"--{label}-checkpoint {path}: cannot check it: {exc}") from exc
        if not found:
            raise ConfigError(f"{label} checkpoint not found: {path} (--{label}-checkpoint)")
    return False


def _checkpoint_meta(label: str, path: str, s3=None) -> dict:
    """Kind and width of a checkpoint (fetched like the workers fetch it), checked against its role
    (a wrong file is a config error)."""
    from gpvton_core.checkpoints import build_from_checkpoint
    from infra.models import fetch_model

    try:
        _, meta = build_from_checkpoint(fetch_model(path, s3).path)
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


def resolve_compile(cfg: RenderConfig, device: str, pairs_per_actor: int, basis: str) -> dict:
    """Whether the workers compile (decided once, on the driver; written into job.json).

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


def _with_compile(cfg: RenderConfig, settings, device: str, pairs: int, basis: str):
    """(settings with the compile decision, the decision) for ``pairs`` spread over the actors."""
    from dataclasses import replace

    actors = cfg.actors if cfg.runner == "ray" else 1
    info = resolve_compile(cfg, device, pairs // max(1, actors), basis)
    return replace(settings, compile=info["mode"], fixed_shapes=info["fixed_shapes"],
                   compile_cache_dir=info["cache_dir"]), info


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
        if not locked_out and not cfg.dry_run and job.exists("job.json"):
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
    from infra.jobfolder import JobFolder, json_digest, new_run_id
    from infra.schema import INDEX
    from workers.render_actor import WorkerSettings, run_units_local, sha256_file

    t_start = time.time()
    random_init = uses_random_weights(cfg, s3)
    persons, garments, index_files, manifest = read_catalogue(cfg, s3)
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
        renderable = variant_categories(ck_variant)
        if (set(garments.column("category").to_pylist()) & set(cfg.categories)) - set(renderable):
            if cfg.categories != list(renderable):
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
    folder = JobFolder(job.root, storage=job)
    pool = None
    compile_info = None
    if cfg.runner == "ray" and not cfg.dry_run and (cfg.force or not job.exists("index/manifest.json")):
        # a new catalogue certainly has work: start the actors now, so that their start-up (Python,
        # torch, the networks) overlaps the planning, hashing and writing below
        settings, compile_info = _with_compile(cfg, settings, device, persons.num_rows * garments.num_rows,
                                               "catalogue bound, new catalogue")
        pool = _start_pool(cfg, settings, s3, stack)

    pairs_list = read_pairs_file(cfg, s3) if cfg.pairing == "pairs" else None
    pairs = plan_pairs(cfg, persons, garments, pairs_list)
    if not len(pairs):
        raise ConfigError(f"nothing to render: no pair of the shards at {cfg.shards} passes the filters, "
                          f"categories {cfg.categories} and pairing '{cfg.pairing}'")

    hashes = {k: sha256_file(p, _s3_dict(s3)) for k, p in
              (("warp", cfg.checkpoints.warp), ("generator", cfg.checkpoints.generator)) if p}
    model_note = RANDOM_NOTE.format(width=width) if random_init else \
        f"checkpoints: warp {cfg.checkpoints.warp}, generator {cfg.checkpoints.generator}"
    if random_init and not cfg.dry_run:
        bar = "!" * 100
        print(f"{bar}\n!! {model_note}\n{bar}", file=sys.stderr)
    model_key = json_digest(model_inputs(cfg, variant, hashes, width, resolution, precision["resolved"], random_init))

    # --- the diff against the catalogue's index ---
    if not cfg.dry_run:
        _take_lock(cfg, job, stack)
        if cfg.force:
            log.warning("--force: discarding the index, change lists, scores and images under %s", cfg.output)
            for key in ("index", "changes", "runs", "scores", "plan", "summary.json", "renders", "debug"):
                job.delete(key)
    index_meta = {} if (cfg.force and not cfg.dry_run) else folder.index_manifest()
    state = folder.run_state()
    committed_area = bool(state) and state.get("run_id") == index_meta.get("run_id")
    if committed_area:
        state = None    # the last run's work area, already in the index (kept for status until a run starts)
    index = folder.read_index(INDEX_COLUMNS, index_meta) if index_meta else INDEX.empty_table()
    delta = diff(pairs, persons, garments, index, model_key, cfg.retry_errors)
    if cfg.dry_run:
        return _dry_run(cfg, delta, index_meta, job.root)

    meta = folder.meta()
    todo = delta.todo
    todo_versions = versions(delta, persons, garments, todo)
    done_rows, old_units, first_id = _resumed_work(folder, state, cfg.retry_errors)
    if done_rows:
        keep = [i for i, (p, g, v) in enumerate(zip(_ids(persons, delta.pairs.person[todo]),
                                                     _ids(garments, delta.pairs.garment[todo]), todo_versions))
                if done_rows.get((p, g)) != v]
        log.info("resuming run %s: %d of %d pairs already rendered", state["run_id"], len(todo) - len(keep),
                 len(todo))
        todo, todo_versions = todo[keep], [todo_versions[i] for i in keep]
    units = units_from_pairs(cfg, persons, garments, delta.pairs.take(todo), first_id, todo_versions)
    run_id = state["run_id"] if state else new_run_id()
    if compile_info is None:
        settings, compile_info = _with_compile(cfg, settings, device, sum(len(u["pairs"]) for u in units),
                                               "pairs to render")
    job.write_json("job.json", {
        "config": _masked_config(cfg), "package_version": _package_version(), "variant": variant,
        "resolution": resolution, "shard_size": list(shard_size), "width": width,
        "checkpoints": {k: {"path": p, "sha256": hashes.get(k)} for k, p in
                        (("warp", cfg.checkpoints.warp), ("generator", cfg.checkpoints.generator))},
        "checkpoint_meta": ck_meta, "random_weights": random_init, "model_note": model_note,
        "model_key": model_key, "pairs": len(pairs), "device": device, "precision": precision, "compile": compile_info,
        "runner": cfg.runner,
        "created": (meta.get("created") if not cfg.force else None) or _now(), "updated": _now(), "run_id": run_id,
    })
    work = bool(units) or state is not None or delta.retired.num_rows > 0
    if work:
        if committed_area:
            folder.clear_work_area()
        folder.start_run({"run_id": run_id, "started": (state or {}).get("started") or _now(),
                          "index_generation": index_meta.get("generation", 0), "model_key": model_key},
                         units_table(old_units + units))
    todo_pairs = sum(len(u["pairs"]) for u in units)
    log.info("plan: %d pairs (%s); %s; rendering %d units / %d pairs on %s (%s)", len(pairs), variant,
             ", ".join(f"{k} {v}" for k, v in delta.changes().items()), len(units), todo_pairs, device, cfg.runner)

    from tqdm import tqdm

    units = [with_files(u, index_files) for u in units]
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
        if units:
            if cfg.runner == "local":
                run_units_local(settings, units, on_result, in_flight=cfg.in_flight_per_actor)
            else:
                (pool or _start_pool(cfg, settings, s3, stack, units=len(units))).run(units, on_result)
    finally:
        bar.close()
    run_elapsed = time.time() - run_start
    speed = rendered / run_elapsed if rendered and run_elapsed > 0 else None

    if work:
        index_meta = commit(folder, delta, persons, garments, run_id, speed or index_meta.get("pairs_per_second"))
    summary = summarise(folder, delta, index_meta, run_id, lost, run_elapsed, rendered, t_start, cfg, model_note,
                        committed=work, units=len(units))
    folder.write_summary(run_id, summary)
    for line in final_lines(summary, job.root):
        print(line)
    return JobResult(summary["exit_code"], summary, job.root)


def model_inputs(cfg: RenderConfig, variant: str, hashes: dict, width: float, resolution: int, precision: str,
                 random_init: bool) -> dict:
    """Everything that changes the delivered pixels of a pair, apart from its person and garment."""
    fmt = cfg.output_format
    return {"variant": variant, "checkpoints": hashes, "width": width, "resolution": resolution,
            "precision": precision, "composite": cfg.composite, "frame": fmt.frame, "format": fmt.format,
            "quality": fmt.quality if fmt.format != "png" else None,
            "random_seed": cfg.model.seed if random_init else None}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _ids(table, rows) -> list[str]:
    ids = table.column(0).to_pylist()
    return [ids[i] for i in rows.tolist()]


def _resumed_work(folder, state: Optional[dict], retry_errors: bool) -> tuple[dict, list[dict], int]:
    """What a crashed run already rendered: (person, garment) → version of its good rows, the
    run's units so far and the next unit id. Rows a rerun re-attempts (transient errors; every
    error with ``--retry-errors``) do not count as rendered."""
    if state is None:
        return {}, [], 0
    from infra.storage import TRANSIENT_PREFIX

    old_units = folder.read_units().to_pylist()
    rows = folder.read_unit_scores(folder.done_units()).select(["person_id", "garment_id", "flag", "error",
                                                                "version"]).to_pylist()
    done = {}
    for r in rows:
        if r["flag"] == "error" and (retry_errors or (r["error"] or "").startswith(TRANSIENT_PREFIX)):
            done.pop((r["person_id"], r["garment_id"]), None)
            continue
        done[(r["person_id"], r["garment_id"])] = r["version"]
    first = max((int(u["unit_id"]) for u in old_units), default=-1) + 1
    return done, old_units, first


def _dry_run(cfg: RenderConfig, delta, index_meta: dict, root: str) -> JobResult:
    """Print what this run would do; write nothing."""
    from pipelines.render.delta import describe

    lines = describe(delta, index_meta.get("pairs_per_second"))
    for line in lines:
        print(f"render --dry-run: {line}")
    summary = {"dry_run": True, "changes": delta.changes(), "by_category": delta.by_category,
               "pairs": len(delta.pairs), "to_render": int(len(delta.todo)), "exit_code": 0}
    return JobResult(0, summary, root)


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
