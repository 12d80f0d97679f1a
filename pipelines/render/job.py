"""Running a render job: check the model choice, persist the plan, execute the units, summarise.

The job's files (``JOB/job.json``, ``plan/``, ``scores/``, ``renders/``, ``logs/``, ``summary.json``)
are described in ARCHITECTURE.md. A rerun with the same plan and model resumes: units with a
``.done`` marker are skipped. The driver's log records (ours and the libraries') go to
``JOB/logs/driver.log``, each Ray worker's to ``JOB/logs/worker-NN-pPID.log``.

:func:`_run` is the job's steps in order: read the catalogue, choose the model, (start the Ray
pool early), plan the pairs, take the lock, diff against the index (or print the dry run),
resume a crashed run, record ``job.json`` and the work area, dispatch the units, then commit
and summarise.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import time
from dataclasses import dataclass
from typing import Any, Optional

from pipelines.cli import is_verbose
from pipelines.config import ConfigError, UserError, resolved
from pipelines.render.commit import commit
from pipelines.render.config import RenderConfig
from pipelines.render.delta import INDEX_COLUMNS, Delta, diff, versions
from pipelines.render.dispatch import Dispatched, dispatch, start_pool
from pipelines.render.model import (ModelChoice, checkpoint_hashes, choose_model, model_inputs, model_note,
                                    uses_random_weights)
from pipelines.render.plan import (PairSet, detect_variant, plan_pairs, read_catalogue, read_pairs_file,
                                   units_from_pairs, units_table, with_files)
from pipelines.render.runtime import resolve_device, resolve_precision, with_compile
from pipelines.render.summary import final_lines, summarise
from workers.render.settings import WorkerSettings

log = logging.getLogger("gpvton.render")


class JobResult:
    def __init__(self, exit_code: int, summary: dict, job_root: str):
        self.exit_code, self.summary, self.job_root = exit_code, summary, job_root


def s3_settings(cfg: RenderConfig):
    return cfg.s3.settings()


def _s3_dict(s3) -> dict[str, Optional[str]]:
    return {"endpoint_url": s3.endpoint_url, "access_key_id": s3.access_key_id,
            "secret_access_key": s3.secret_access_key, "region": s3.region}


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("gpvton")
    except Exception:  # noqa: BLE001
        return "unknown"


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


@dataclass(frozen=True)
class Catalogue:
    """The shards' id tables and what the job derives from them."""

    persons: Any                         # pyarrow id tables, sorted by id
    garments: Any
    index_files: dict                    # table → id → part file
    variant: str
    shard_size: tuple[int, int]
    resolution: int


@dataclass
class PriorState:
    """What earlier runs left: the index and its manifest, and a crashed run's work area (``state``)."""

    index_meta: dict
    index: Any
    state: Optional[dict]
    committed_area: bool                 # the last run's work area, already in the index


def _run(cfg: RenderConfig, s3, job, stack: contextlib.ExitStack) -> JobResult:
    from infra.jobfolder import JobFolder, json_digest

    t_start = time.time()
    random_init = uses_random_weights(cfg, s3)
    cat = _read_catalogue(cfg, s3)
    model = choose_model(cfg, s3, random_init, cat.garments, cat.variant)
    device = resolve_device(cfg)
    precision = resolve_precision(cfg.precision, device)
    settings = _worker_settings(cfg, job.root, s3, cat, model, device, precision["resolved"])
    folder = JobFolder(job.root, storage=job)
    pool, compile_info = None, None
    if cfg.runner == "ray" and not cfg.dry_run and (cfg.force or not job.exists("index/manifest.json")):
        # a new catalogue certainly has work: start the actors now, so that their start-up (Python,
        # torch, the networks) overlaps the planning, hashing and writing below
        settings, compile_info = with_compile(cfg, settings, device, cat.persons.num_rows * cat.garments.num_rows,
                                              "catalogue bound, new catalogue")
        pool = start_pool(cfg, settings, s3, stack)

    pairs = _plan(cfg, s3, cat)
    hashes = checkpoint_hashes(cfg, s3)
    note = model_note(cfg, model)
    model_key = json_digest(model_inputs(cfg, model.variant, hashes, model.width, cat.resolution,
                                         precision["resolved"], model.random_init))
    if not cfg.dry_run:
        _take_lock(cfg, job, stack)
        if cfg.force:
            _discard_outputs(cfg, job)
    prior = _prior_state(cfg, folder)
    delta = diff(pairs, cat.persons, cat.garments, prior.index, model_key, cfg.retry_errors)
    if cfg.dry_run:
        return _dry_run(cfg, delta, prior.index_meta, job.root)

    units, old_units, run_id = _units_to_render(cfg, folder, cat, delta, prior.state)
    if compile_info is None:
        settings, compile_info = with_compile(cfg, settings, device, sum(len(u["pairs"]) for u in units),
                                              "pairs to render")
    job.write_json("job.json", _job_record(cfg, folder, cat, model, hashes, note, model_key, len(pairs), device,
                                           precision, compile_info, run_id))
    work = _start_run(folder, prior, delta, units, old_units, run_id, model_key)
    log.info("plan: %d pairs (%s); %s; rendering %d units / %d pairs on %s (%s)", len(pairs), model.variant,
             ", ".join(f"{k} {v}" for k, v in delta.changes().items()), len(units),
             sum(len(u["pairs"]) for u in units), device, cfg.runner)
    done = dispatch(cfg, settings, [with_files(u, cat.index_files) for u in units], pool, s3, stack)
    return _finish(cfg, folder, job.root, delta, cat, prior.index_meta, run_id, done, work, t_start, note, len(units))


def _read_catalogue(cfg: RenderConfig, s3) -> Catalogue:
    """The catalogue's id tables, its variant and its one image size (which must suit the networks)."""
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
    return Catalogue(persons=persons, garments=garments, index_files=index_files, variant=variant,
                     shard_size=shard_size, resolution=resolution)


def _worker_settings(cfg: RenderConfig, job_root: str, s3, cat: Catalogue, model: ModelChoice, device: str,
                     precision: str) -> WorkerSettings:
    return WorkerSettings(
        job_root=job_root, shards_root=cfg.shards, variant=model.variant,
        shard_size=tuple(cat.shard_size), batch_size=cfg.batch_size, image_format=cfg.output_format.format,
        quality=cfg.output_format.quality, debug=cfg.output_format.debug, device=device,
        composite=cfg.composite, frame=cfg.output_format.frame,
        precision=precision, warp_checkpoint=cfg.checkpoints.warp,
        generator_checkpoint=cfg.checkpoints.generator, width=model.width, seed=cfg.model.seed,
        thresholds={k: v.model_dump() for k, v in cfg.thresholds.items()}, s3=_s3_dict(s3),
        num_threads=max(1, int(cfg.num_cpus)) if cfg.runner == "ray" else 0, cudnn_benchmark=cfg.cudnn_benchmark,
        log_level=logging.DEBUG if is_verbose() else logging.INFO)


def _plan(cfg: RenderConfig, s3, cat: Catalogue) -> PairSet:
    """The pairs the configuration asks for (none is a configuration error)."""
    pairs_list = read_pairs_file(cfg, s3) if cfg.pairing == "pairs" else None
    pairs = plan_pairs(cfg, cat.persons, cat.garments, pairs_list)
    if not len(pairs):
        raise ConfigError(f"nothing to render: no pair of the shards at {cfg.shards} passes the filters, "
                          f"categories {cfg.categories} and pairing '{cfg.pairing}'")
    return pairs


def _take_lock(cfg: RenderConfig, job, stack: contextlib.ExitStack) -> None:
    """One run per output: a second run refuses; a crashed run's lock expires after ``lock_ttl_s``."""
    from infra.lease import Lease, LeaseHeld

    lease = Lease(job, "lock.json", ttl_s=cfg.lock_ttl_s, what="render")
    try:
        lease.acquire()
    except LeaseHeld as exc:
        raise JobLocked(str(exc)) from None
    stack.callback(lease.release)


def _discard_outputs(cfg: RenderConfig, job) -> None:
    log.warning("--force: discarding the index, change lists, scores and images under %s", cfg.output)
    for key in ("index", "changes", "runs", "scores", "plan", "summary.json", "renders", "debug"):
        job.delete(key)


def _prior_state(cfg: RenderConfig, folder) -> PriorState:
    from infra.schema import INDEX

    index_meta = {} if (cfg.force and not cfg.dry_run) else folder.index_manifest()
    state = folder.run_state()
    committed_area = bool(state) and state.get("run_id") == index_meta.get("run_id")
    if committed_area:
        state = None    # the last run's work area, already in the index (kept for status until a run starts)
    index = folder.read_index(INDEX_COLUMNS, index_meta) if index_meta else INDEX.empty_table()
    return PriorState(index_meta=index_meta, index=index, state=state, committed_area=committed_area)


def _units_to_render(cfg: RenderConfig, folder, cat: Catalogue, delta: Delta,
                     state: Optional[dict]) -> tuple[list[dict], list[dict], str]:
    """(this run's new units, the crashed run's units, the run id): the delta's pairs less those a
    crashed run already rendered, which this run resumes."""
    from infra.jobfolder import new_run_id

    todo = delta.todo
    todo_versions = versions(delta, cat.persons, cat.garments, todo)
    done_rows, old_units, first_id = _resumed_work(folder, state, cfg.retry_errors)
    if done_rows:
        keep = [i for i, (p, g, v) in enumerate(zip(_ids(cat.persons, delta.pairs.person[todo]),
                                                     _ids(cat.garments, delta.pairs.garment[todo]), todo_versions))
                if done_rows.get((p, g)) != v]
        log.info("resuming run %s: %d of %d pairs already rendered", state["run_id"], len(todo) - len(keep),
                 len(todo))
        todo, todo_versions = todo[keep], [todo_versions[i] for i in keep]
    units = units_from_pairs(cfg, cat.persons, cat.garments, delta.pairs.take(todo), first_id, todo_versions)
    return units, old_units, state["run_id"] if state else new_run_id()


def _job_record(cfg: RenderConfig, folder, cat: Catalogue, model: ModelChoice, hashes: dict, note: str,
                model_key: str, pairs: int, device: str, precision: dict, compile_info: dict, run_id: str) -> dict:
    """``job.json``: the configuration, the model and its key, and how this run computes."""
    meta = folder.meta()
    return {
        "config": _masked_config(cfg), "package_version": _package_version(), "variant": model.variant,
        "resolution": cat.resolution, "shard_size": list(cat.shard_size), "width": model.width,
        "checkpoints": {k: {"path": p, "sha256": hashes.get(k)} for k, p in
                        (("warp", cfg.checkpoints.warp), ("generator", cfg.checkpoints.generator))},
        "checkpoint_meta": model.checkpoint_meta, "random_weights": model.random_init, "model_note": note,
        "model_key": model_key, "pairs": pairs, "device": device, "precision": precision, "compile": compile_info,
        "runner": cfg.runner,
        "created": (meta.get("created") if not cfg.force else None) or _now(), "updated": _now(), "run_id": run_id,
    }


def _start_run(folder, prior: PriorState, delta: Delta, units: list[dict], old_units: list[dict], run_id: str,
               model_key: str) -> bool:
    """Open (or keep) the run's work area with its units; False when the run has nothing to do."""
    work = bool(units) or prior.state is not None or delta.retired.num_rows > 0
    if work:
        if prior.committed_area:
            folder.clear_work_area()
        folder.start_run({"run_id": run_id, "started": (prior.state or {}).get("started") or _now(),
                          "index_generation": prior.index_meta.get("generation", 0), "model_key": model_key},
                         units_table(old_units + units))
    return work


def _finish(cfg: RenderConfig, folder, root: str, delta: Delta, cat: Catalogue, index_meta: dict, run_id: str,
            done: Dispatched, work: bool, t_start: float, note: str, units: int) -> JobResult:
    """Commit the run into the index, write ``summary.json`` and print the last lines."""
    if work:
        index_meta = commit(folder, delta, cat.persons, cat.garments, run_id,
                            done.pairs_per_second or index_meta.get("pairs_per_second"))
    summary = summarise(folder, delta, index_meta, run_id, done.lost, done.elapsed, done.rendered, t_start, cfg,
                        note, committed=work, units=units)
    folder.write_summary(run_id, summary)
    for line in final_lines(summary, root):
        print(line)
    return JobResult(summary["exit_code"], summary, root)


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


def _dry_run(cfg: RenderConfig, delta: Delta, index_meta: dict, root: str) -> JobResult:
    """Print what this run would do; write nothing."""
    from pipelines.render.delta import describe

    lines = describe(delta, index_meta.get("pairs_per_second"))
    for line in lines:
        print(f"render --dry-run: {line}")
    summary = {"dry_run": True, "changes": delta.changes(), "by_category": delta.by_category,
               "pairs": len(delta.pairs), "to_render": int(len(delta.todo)), "exit_code": 0}
    return JobResult(0, summary, root)
