"""The preprocess run: items → derivation (with estimators) → Parquet shards, incrementally.

A catalogue is preprocessed every night and changes a little. Shards are updated in
**generations**: one run that changes something is one generation ``N``
(:mod:`~pipelines.preprocess.generation_layout` has the files). A run: hash the inputs
(:mod:`~pipelines.preprocess.identity`), read the current rows' ``(id, content_key)`` and diff
(:mod:`~pipelines.preprocess.update_plan`); derive the new and changed items through Beam
(:mod:`~pipelines.preprocess.beam_graph`), copy the kept rows of rewritten parts, and commit one
``manifest.json`` (:mod:`~pipelines.preprocess.generation_commit`); then delete the files no
manifest a reader may hold still lists (:mod:`~pipelines.preprocess.generation_cleanup`). A run
that would change nothing writes no generation; ``force`` derives every item again (still a new
generation, so readers of the old one are safe).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import apache_beam as beam

from infra.shards import ShardSet
from infra.storage import S3Settings, Storage
from pipelines.preprocess.beam_graph import beam_metrics, beam_options, build
from pipelines.preprocess.estimators.bundle import EstimatorsConfig
from pipelines.preprocess.generation_cleanup import collect_garbage
from pipelines.preprocess.generation_commit import commit, copy_part, start_or_resume
from pipelines.preprocess.generation_layout import gen_dir
from pipelines.preprocess.update_plan import Current, Update, diff, read_current

log = logging.getLogger(__name__)


@dataclass
class PipelineSpec:
    items: list[dict]
    output: str
    resolution: int = 512
    runner: str = "FnApiRunner"
    pipeline_args: list[str] = field(default_factory=list)
    s3: S3Settings | None = None
    num_shards: int = 0          # groups of this generation (part files per table); 0 = one per GROUP_SIZE
    max_pixels: int = 64_000_000
    estimators: EstimatorsConfig = field(default_factory=EstimatorsConfig)
    force: bool = False          # derive every item again (a new generation all the same)
    dry_run: bool = False        # plan and diff only: write nothing
    progress: Callable[[int, int], None] | None = None   # (items done, items to derive), from the driver


def dedupe(items: Iterable[dict]) -> list[dict]:
    """First item per (kind, id) kept; a later one becomes an error item (stage 'read')."""
    seen: dict[tuple[str, str], str] = {}
    out = []
    for it in items:
        key = (it.get("kind", "?"), it.get("id", ""))
        if key in seen and not it.get("error"):
            out.append({"kind": key[0], "id": key[1], "source_uri": it.get("source_uri"),
                        "error": {"stage": "read", "reason": f"duplicate {key[0]} id {key[1]!r} "
                                                             f"(first from {seen[key]})"}})
            continue
        if not it.get("error"):
            seen[key] = it.get("source_uri") or "?"
        out.append(it)
    return out


def _watch_groups(storage: Storage, upd: Update, pending: list[int], spec: PipelineSpec,
                  stop: threading.Event) -> None:
    """Report progress from the group markers (works on every runner, remote ones included)."""
    total = sum(len(upd.groups[g]) for g in pending)
    seen: set[int] = set()
    while not stop.wait(1.0):
        try:
            done = {int(k.rsplit("-", 1)[1]) for k in storage.iter_done(gen_dir(upd.generation)) if "/group-" in k}
        except Exception:  # noqa: BLE001 - progress must never fail the run
            continue
        new = (done & set(pending)) - seen
        if new:
            seen |= new
            spec.progress(sum(len(upd.groups[g]) for g in seen), total)  # type: ignore[misc]


def _derive_groups(storage: Storage, upd: Update, pending: list[int], spec: PipelineSpec) -> dict[str, Any]:
    """Run the Beam graph over the pending groups (progress from their markers); its metrics."""
    todo = [(g, item) for g in pending for item in upd.groups[g]]
    log.info("preprocess: generation %d: %d of %d groups to do (%d items)", upd.generation, len(pending),
             len(upd.groups), len(todo))
    p = beam.Pipeline(options=beam_options(spec.runner, spec.pipeline_args, spec.s3))
    build(p, todo, {g: len(upd.groups[g]) for g in pending}, upd.generation, output=spec.output, s3=spec.s3,
          resolution=spec.resolution, max_pixels=spec.max_pixels, estimators=spec.estimators)
    stop = threading.Event()
    watcher = None
    if spec.progress is not None:
        watcher = threading.Thread(target=_watch_groups, args=(storage, upd, pending, spec, stop), daemon=True)
        watcher.start()
    try:
        result = p.run()
        result.wait_until_finish()
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
    metrics = beam_metrics(result)
    if spec.progress is not None:
        spec.progress(len(todo), len(todo))
    return metrics


def _plan_summary(upd: Update, noop: bool, dry_run: bool, hashed: dict[str, int]) -> dict[str, Any]:
    """What the run will do, for the log and the caller (``update`` in the returned manifest)."""
    return {"generation": upd.generation, "changes": upd.counts, "by_category": upd.by_category,
            "derive": len(upd.derive), "copy_parts": sum(len(c) for c in upd.copies.values()),
            "keep_parts": sum(len(k) for k in upd.keep.values()), "noop": noop, "dry_run": dry_run,
            "hashed": hashed}


def run_pipeline(spec: PipelineSpec) -> dict[str, Any]:
    """Hash, diff and plan; then (unless a dry run or nothing changed) derive, copy and commit one
    generation. Returns the manifest (for a dry run or a no-op: the current one, plus ``update``)."""
    from pipelines.preprocess.identity import assign_content_keys, save_source_cache

    t0 = time.perf_counter()
    storage = Storage(spec.output, spec.s3)
    items, hasher = assign_content_keys(dedupe(spec.items), spec.resolution, spec.estimators, spec.s3, storage)
    shards = ShardSet(spec.output, spec.s3, storage=storage)
    current: Current = read_current(shards)
    upd = diff(items, current, spec.force, spec.num_shards)
    noop = upd.is_noop(current) and not spec.force
    plan = _plan_summary(upd, noop, spec.dry_run, {"read": hasher.read, "cached": hasher.reused})
    log.info("preprocess: plan %s", json.dumps(plan, sort_keys=True))
    if spec.dry_run or noop:
        return {**current.manifest, "update": plan, "inputs": len(spec.items),
                "seconds": round(time.perf_counter() - t0, 3)}
    save_source_cache(storage, hasher)

    pending, copies = start_or_resume(storage, upd, spec.max_pixels)
    metrics = _derive_groups(storage, upd, pending, spec) if pending else {}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda tc: copy_part(storage, shards, upd, *tc), copies))
    manifest = commit(storage, shards, upd, current, resolution=spec.resolution, forced=spec.force,
                      inputs=len(spec.items), runner=spec.runner, metrics=metrics, pending=pending, t0=t0)
    collect_garbage(storage, manifest, current)
    return {**manifest, "update": plan}


def read_table(output: str, name: str, s3: S3Settings | None = None):
    """Read one table back (the manifest's current parts, empty ones included) as a pyarrow Table."""
    return ShardSet(output, s3).read_table(name)
