"""The preprocess Beam pipeline: items → derivation (with estimators) → Parquet shards, incrementally.

A catalogue is preprocessed every night and changes a little. Each item carries a
``content_key`` (:mod:`pipelines.preprocess.identity`: its source bytes, given values and the
settings); an item whose id and key match a current shard row is not derived again. Shards are
updated in **generations**: one run that changes something is one generation ``N``.

Layout under the output URL::

    manifest.json                 the current generation: its part files per table, counts, changes
    persons/part-NNNNN.parquet    part files, immutable; generation 1 (a fresh build) keeps the
    persons/part-gNNNN-NNNNN.parquet  historic names, later generations name theirs; ``-cNNNNN``
    garments/…  errors/…              parts are copies (kept rows of rewritten parts, compacted)
    preprocess_config.json        (written by job.py)
    _preprocess/gen-NNNN/plan.json        the generation's plan and its fingerprint
    _preprocess/gen-NNNN/group-NNNNN.done one marker per derived group (its three part files)
    _preprocess/gen-NNNN/copy-TABLE-NNNNN.done  one marker per copied part
    _preprocess/gen-NNNN/changes.parquet  kind, id, category, change (added / changed / retired)
    _preprocess/sources.parquet           stat cache of source-file hashes (identity.py)

A run: hash the inputs, read the current rows' ``(id, content_key)``, diff. New and changed items
(and items that errored last time: they have no row) are derived into the generation's own part
files, in deterministic groups through Beam (a group writes its parts, then its marker). Current
parts whose rows all stay are kept by reference; a part that lost rows (changed or retired ids)
is rewritten without them — a copy, no derivation — and, once a table holds more than
``MAX_SMALL_PARTS`` parts under half of ``GROUP_SIZE`` rows, those are merged into full ones.
Then ONE write of ``manifest.json`` commits the new set; readers follow the manifest
(:class:`infra.shards.ShardSet`), never a listing, so they never see half an update. A crash
resumes: the same inputs give the same generation plan and its finished groups and copies are
kept; a plan that changed meanwhile discards the uncommitted generation. Part files are deleted
once neither the new nor the previous manifest lists them, so a render reading the previous
generation keeps its files. A run that would change nothing writes no generation. ``force``
derives every item again (still a new generation, so readers of the old one are safe).

Shape: Create(items of pending groups) → Reshuffle → BatchElements → DeriveBatchFn (estimators
built once per worker in ``setup``; the parser sees a whole batch) → GroupByKey(group) →
WriteGroupFn. Runs on Beam's in-process runner by default (``FnApiRunner``; never the Prism
default, which downloads a binary); ``runner`` plus extra pipeline options pass through
unchanged, so the same pipeline runs on Flink, Spark or Dataflow. Storage is fsspec throughout
(local folders and ``s3://`` alike).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from gpvton_core.conditions import DERIVATION_VERSION
from gpvton_core.conditions.resize import working_size
from infra.schema import SCHEMA_VERSION, TABLES
from infra.shards import ShardSet
from infra.storage import S3Settings, Storage, filesystem
from pipelines.preprocess.estimators.bundle import Estimators, EstimatorsConfig

log = logging.getLogger(__name__)
IN_PROCESS_RUNNERS = ("FnApiRunner", "BundleBasedDirectRunner", "DirectRunner")
STATE = "_preprocess"
GROUP_SIZE = 64          # items per group: the unit of resume, and the rows of a full part
MAX_SMALL_PARTS = 4      # more parts than this under GROUP_SIZE/2 rows in a table: merge them
ID_COLUMN = {"persons": "person_id", "garments": "garment_id", "errors": "item_id"}
KIND_TABLE = {"person": "persons", "garment": "garments"}
CHANGE_KINDS = ("added", "changed", "unchanged", "retired")


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


def plan_groups(items: list[dict], num_groups: int = 0) -> list[list[dict]]:
    """Deterministic groups: items sorted by (kind, id, source), cut into equal runs."""
    if not items:
        return []
    ordered = sorted(items, key=lambda it: (it.get("kind", "?"), str(it.get("id", "")), str(it.get("source_uri"))))
    n = num_groups if num_groups > 0 else max(1, -(-len(ordered) // GROUP_SIZE))
    n = max(1, min(n, len(ordered)))
    size = -(-len(ordered) // n)
    return [g for g in (ordered[i * size:(i + 1) * size] for i in range(n)) if g]


def gen_dir(gen: int) -> str:
    return f"{STATE}/gen-{gen:04d}"


def part_key(table: str, gen: int, index: int, copy: bool = False) -> str:
    """Generation 1 keeps the historic ``part-NNNNN`` names; later ones carry their number."""
    if gen == 1 and not copy:
        return f"{table}/part-{index:05d}.parquet"
    return f"{table}/part-g{gen:04d}-{'c' if copy else ''}{index:05d}.parquet"


def _gen_file_pattern(gen: int) -> re.Pattern:
    if gen == 1:
        return re.compile(r"^part-\d{5}\.parquet$")
    return re.compile(rf"^part-g{gen:04d}-c?\d{{5}}\.parquet$")


def _reader(s3: S3Settings | None):
    cache: dict[str, Any] = {}

    def read(url: str) -> bytes:
        proto = url.split("://", 1)[0] if "://" in url else "file"
        fs = cache.get(proto)
        if fs is None:
            fs = cache[proto] = filesystem(url, s3)
        path = url[len("file://"):] if url.startswith("file://") else url
        with fs.open(path, "rb") as fh:
            return fh.read()

    return read


class DeriveBatchFn(beam.DoFn):
    """A batch of ``(group, item)`` → ``(group, (table, row))``; estimators load once per worker.

    A content row gets its item's ``content_key`` here, after derivation (derive.py knows nothing
    of generations)."""

    def __init__(self, resolution: int, s3: S3Settings | None, max_pixels: int, estimators: EstimatorsConfig):
        self.resolution, self.s3, self.max_pixels, self.cfg = resolution, s3, max_pixels, estimators
        self.ok = {"persons": Metrics.counter("preprocess", "persons_ok"),
                   "garments": Metrics.counter("preprocess", "garments_ok")}
        self.failed = Metrics.counter("preprocess", "items_failed")
        self.derived = Metrics.counter("preprocess", "items_derived")
        self.seconds = Metrics.distribution("preprocess", "item_ms")
        self.est: Estimators | None = None

    def setup(self) -> None:
        self.est = Estimators(self.cfg, self.s3)
        self._read = _reader(self.s3)
        self._done, self._t0 = 0, 0.0

    def teardown(self) -> None:
        if self.est is not None:
            self.est.close()

    def process(self, batch: list[tuple[int, dict]]):
        from pipelines.preprocess.derive import derive_batch

        t0 = time.perf_counter()
        self._t0 = self._t0 or t0
        results = derive_batch([item for _, item in batch], self._read, self.resolution, self.max_pixels, self.est)
        per_item = int((time.perf_counter() - t0) * 1000 / max(1, len(batch)))
        for (gid, item), (table, row) in zip(batch, results):
            self.seconds.update(per_item)
            self.derived.inc()
            if table == "errors":
                self.failed.inc()
                log.warning("preprocess: %s %r [%s] %s", row["kind"], row["item_id"], row["stage"], row["reason"])
            else:
                row = {**row, "content_key": item["content_key"]}
                self.ok[table].inc()
            yield gid, (table, row)
        self._done += len(batch)
        log.info("preprocess: this worker has done %d items, %.2f items/s", self._done,
                 self._done / max(1e-9, time.perf_counter() - self._t0))


def _write_parquet(storage: Storage, key: str, table) -> None:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    storage.write_bytes(key, buf.getvalue())


class WriteGroupFn(beam.DoFn):
    """All rows of one group → its three part files (atomic writes), then its done-marker."""

    def __init__(self, output: str, s3: S3Settings | None, sizes: dict[int, int], gen: int = 1):
        self.output, self.s3, self.sizes, self.gen = output, s3, sizes, gen

    def process(self, element: tuple[int, Iterable[tuple[str, dict]]]):
        import pyarrow as pa

        gid, rows = element
        rows = list(rows)
        if len(rows) != self.sizes[gid]:
            raise RuntimeError(f"group {gid}: {len(rows)} rows for {self.sizes[gid]} items")
        storage = Storage(self.output, self.s3)
        counts = {}
        for name, schema in TABLES.items():
            key = ID_COLUMN[name]
            got = sorted((r for t, r in rows if t == name), key=lambda r: (str(r.get("kind", "")), str(r[key])))
            _write_parquet(storage, part_key(name, self.gen, gid), pa.Table.from_pylist(got, schema=schema))
            counts[name] = len(got)
        storage.mark_done(f"{gen_dir(self.gen)}/group-{gid:05d}", counts)
        yield gid


def beam_options(spec: PipelineSpec) -> PipelineOptions:
    args = [f"--runner={spec.runner}"] + list(spec.pipeline_args)
    s3 = spec.s3
    if s3 is not None and not any(a.startswith("--s3_") for a in spec.pipeline_args):
        if s3.endpoint_url:
            args.append(f"--s3_endpoint_url={s3.endpoint_url}")
        if s3.access_key_id:
            args.append(f"--s3_access_key_id={s3.access_key_id}")
        if s3.secret_access_key:
            args.append(f"--s3_secret_access_key={s3.secret_access_key}")
        if s3.region:
            args.append(f"--s3_region_name={s3.region}")
    return PipelineOptions(args)


def build(p: beam.Pipeline, spec: PipelineSpec, todo: list[tuple[int, dict]], sizes: dict[int, int],
          gen: int = 1) -> None:
    _ = (p | "Items" >> beam.Create(todo, reshuffle=False)
         | "Spread" >> beam.Reshuffle()
         | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=spec.estimators.batch_size)
         | "Derive" >> beam.ParDo(DeriveBatchFn(spec.resolution, spec.s3, spec.max_pixels, spec.estimators))
         | "ByGroup" >> beam.GroupByKey()
         | "Write" >> beam.ParDo(WriteGroupFn(spec.output, spec.s3, sizes, gen)))


# --- the current generation and the diff --------------------------------------------------------

@dataclass
class Current:
    """What the committed manifest says: its generation (0: no shards) and, per content table,
    each part's rows as ``id → (content_key, category)`` in file order."""

    manifest: dict[str, Any]
    generation: int
    parts: dict[str, list[str]]
    rows: dict[str, dict[str, dict[str, tuple[str | None, str]]]]


def _category(table: str, value: Any) -> str:
    if table == "persons":
        return ";".join(value or [])
    return str(value or "")


def read_current(shards: ShardSet) -> Current:
    manifest = shards.manifest
    if not manifest:      # no committed shards (a fresh output, or an older run that crashed)
        return Current({}, 0, {t: [] for t in TABLES}, {"persons": {}, "garments": {}})
    gen = int(manifest.get("generation") or 1)
    parts = {t: shards.parts(t) for t in TABLES}
    rows: dict[str, dict[str, dict[str, tuple[str | None, str]]]] = {}
    for table in ("persons", "garments"):
        cols = [ID_COLUMN[table], "content_key", "categories" if table == "persons" else "category"]

        def ids(key: str, cols=cols, table=table) -> dict[str, tuple[str | None, str]]:
            t = shards.read_part(key, cols).to_pydict()
            return {i: (k, _category(table, c)) for i, k, c in zip(t[cols[0]], t["content_key"], t[cols[2]])}

        with ThreadPoolExecutor(8) as pool:
            rows[table] = dict(zip(parts[table], pool.map(ids, parts[table])))
    return Current(manifest, gen, parts, rows)


@dataclass
class Update:
    """The plan of one generation: what to derive, keep, copy; what changed."""

    generation: int
    groups: list[list[dict]]
    keep: dict[str, list[str]]                                  # table → parts kept by reference
    copies: dict[str, list[list[tuple[str, list[str]]]]]       # table → new parts: [(source, ids)]
    counts: dict[str, dict[str, int]]                           # table → change kind → ids
    changes: list[dict[str, str]]                               # kind, id, category, change
    dropped: dict[str, list[str]]                               # current parts that leave
    by_category: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def derive(self) -> list[dict]:
        return [it for g in self.groups for it in g]

    def is_noop(self, current: Current) -> bool:
        """Nothing to derive or copy, no part with rows leaves, and no error rows to clear."""
        with_rows = {p for parts in current.rows.values() for p, ids in parts.items() if ids}
        return (not self.groups and not any(self.copies.values())
                and not with_rows.intersection(p for ps in self.dropped.values() for p in ps)
                and not (current.manifest.get("counts") or {}).get("errors"))


def diff(items: list[dict], current: Current, force: bool = False, num_groups: int = 0) -> Update:
    """Classify every id (added / changed / unchanged / retired) and plan the generation."""
    by_id: dict[str, dict[str, dict]] = {"persons": {}, "garments": {}}
    for it in items:
        table = KIND_TABLE.get(it.get("kind", ""))
        if table is not None and (not it.get("error") or it.get("id") not in by_id[table]):
            by_id[table][str(it.get("id"))] = it
    counts = {t: {k: 0 for k in CHANGE_KINDS} for t in by_id}
    by_cat: dict[str, dict[str, dict[str, int]]] = {t: {} for t in by_id}
    changes: list[dict[str, str]] = []
    stay: dict[str, set[str]] = {}
    for table, inputs in by_id.items():
        cur = {i: v for part in current.rows.get(table, {}).values() for i, v in part.items()}
        stay[table] = set()
        for i, it in sorted(inputs.items()):
            cat = _category(table, it.get("categories") if table == "persons" else it.get("category"))
            if i not in cur:
                change = "added"
            elif it.get("error") or it.get("content_key") != cur[i][0]:
                change = "changed"
            else:
                change = "unchanged"
                if not force:
                    stay[table].add(i)
            counts[table][change] += 1
            by_cat[table].setdefault(cat, dict.fromkeys(CHANGE_KINDS, 0))[change] += 1
            if change != "unchanged":
                changes.append({"kind": table[:-1], "id": i, "category": cat, "change": change})
        for i in sorted(set(cur) - set(inputs)):
            counts[table]["retired"] += 1
            by_cat[table].setdefault(cur[i][1], dict.fromkeys(CHANGE_KINDS, 0))["retired"] += 1
            changes.append({"kind": table[:-1], "id": i, "category": cur[i][1], "change": "retired"})
    derive = [it for it in items
              if it.get("error") or str(it.get("id")) not in stay.get(KIND_TABLE.get(it.get("kind", ""), ""), ())]
    gen = current.generation + 1
    keep: dict[str, list[str]] = {}
    copies: dict[str, list[list[tuple[str, list[str]]]]] = {}
    dropped: dict[str, list[str]] = {}
    for table in ("persons", "garments"):
        parts = current.rows.get(table, {})
        whole = [p for p, ids in parts.items() if ids and set(ids) <= stay[table]]
        rewrite = [p for p, ids in parts.items() if set(ids) & stay[table] and p not in whole]
        small = [p for p in whole if len(parts[p]) < GROUP_SIZE // 2]
        if len(small) > MAX_SMALL_PARTS:        # compaction: many small parts become full ones
            rewrite += small
            whole = [p for p in whole if p not in small]
        keep[table] = whole
        dropped[table] = [p for p in current.parts.get(table, []) if p not in whole]
        rows = [(p, i) for p in sorted(rewrite) for i in parts[p] if i in stay[table]]
        chunks = [rows[k:k + GROUP_SIZE] for k in range(0, len(rows), GROUP_SIZE)]
        copies[table] = [[(p, [i for q, i in chunk if q == p]) for p in dict.fromkeys(q for q, _ in chunk)]
                         for chunk in chunks]
    dropped["errors"] = list(current.parts.get("errors", []))
    upd = Update(gen, plan_groups(derive, num_groups), keep, copies, counts, changes, dropped, by_cat)
    upd.fingerprint = hashlib.sha256(json.dumps(
        {"base": current.generation, "base_plan": current.manifest.get("plan"), "force": force,
         "groups": upd.groups, "keep": keep, "copies": copies}, sort_keys=True, default=str).encode()).hexdigest()
    return upd


# --- one generation ------------------------------------------------------------------------------

def _discard(storage: Storage, gen: int) -> None:
    """Remove an uncommitted generation's state and part files (no manifest lists them)."""
    for k in storage.list(gen_dir(gen)):
        storage.delete(k)
    pattern = _gen_file_pattern(gen)
    for table in TABLES:
        for k in storage.list(table, ".parquet"):
            if pattern.match(k.split("/", 1)[1]):
                storage.delete(k)
    for k in storage.list(STATE):        # the flat state of gpvton before generations
        name = k[len(STATE) + 1:]
        if name == "plan.json" or (name.startswith("group-") and name.endswith(".done")):
            storage.delete(k)


def prepare(storage: Storage, upd: Update, spec: PipelineSpec) -> tuple[list[int], list[tuple[str, int]]]:
    """Write (or resume) the generation's plan: the pending group ids and copy parts."""
    plan_key = f"{gen_dir(upd.generation)}/plan.json"
    old = storage.read_json(plan_key) if storage.exists(plan_key) else None
    if old is None or old.get("fingerprint") != upd.fingerprint or spec.max_pixels != old.get("max_pixels"):
        if old is not None:
            log.info("preprocess: the inputs changed since generation %d was started; starting it again",
                     upd.generation)
        _discard(storage, upd.generation)
        storage.write_json(plan_key, {"fingerprint": upd.fingerprint, "generation": upd.generation,
                                      "groups": len(upd.groups), "sizes": [len(g) for g in upd.groups],
                                      "copies": {t: len(c) for t, c in upd.copies.items()},
                                      "max_pixels": spec.max_pixels})
    done = {k.rsplit("/", 1)[1] for k in storage.iter_done(gen_dir(upd.generation))}
    pending = [g for g in range(len(upd.groups)) if f"group-{g:05d}" not in done]
    copies = [(t, c) for t, chunks in upd.copies.items() for c in range(len(chunks))
              if f"copy-{t}-{c:05d}" not in done]
    return pending, copies


def _copy(storage: Storage, shards: ShardSet, upd: Update, table: str, index: int) -> None:
    """One copy part: the kept rows of rewritten parts, byte for byte the same values."""
    import pyarrow as pa

    key = ID_COLUMN[table]
    pieces = [shards.read_part(src, filters=[(key, "in", ids)]) for src, ids in upd.copies[table][index]]
    t = pa.concat_tables(pieces, promote_options="default").cast(TABLES[table])
    _write_parquet(storage, part_key(table, upd.generation, index, copy=True), t)
    storage.mark_done(f"{gen_dir(upd.generation)}/copy-{table}-{index:05d}", {table: t.num_rows})


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


def run_pipeline(spec: PipelineSpec) -> dict[str, Any]:
    """Hash, diff and plan; then (unless a dry run or nothing changed) derive, copy and commit one
    generation. Returns the manifest (for a dry run or a no-op: the current one, plus ``update``)."""
    from pipelines.preprocess.identity import assign_content_keys, save_source_cache

    t0 = time.perf_counter()
    storage = Storage(spec.output, spec.s3)
    items, hasher = assign_content_keys(dedupe(spec.items), spec.resolution, spec.estimators, spec.s3, storage)
    shards = ShardSet(spec.output, spec.s3, storage=storage)
    current = read_current(shards)
    upd = diff(items, current, spec.force, spec.num_shards)
    noop = upd.is_noop(current) and not spec.force
    plan = {"generation": upd.generation, "changes": upd.counts, "by_category": upd.by_category,
            "derive": len(upd.derive), "copy_parts": sum(len(c) for c in upd.copies.values()),
            "keep_parts": sum(len(k) for k in upd.keep.values()), "noop": noop, "dry_run": spec.dry_run,
            "hashed": {"read": hasher.read, "cached": hasher.reused}}
    log.info("preprocess: plan %s", json.dumps(plan, sort_keys=True))
    if spec.dry_run or noop:
        return {**current.manifest, "update": plan, "inputs": len(spec.items),
                "seconds": round(time.perf_counter() - t0, 3)}
    save_source_cache(storage, hasher)

    pending, copies = prepare(storage, upd, spec)
    metrics: dict[str, Any] = {}
    if pending:
        todo = [(g, item) for g in pending for item in upd.groups[g]]
        log.info("preprocess: generation %d: %d of %d groups to do (%d items)", upd.generation, len(pending),
                 len(upd.groups), len(todo))
        p = beam.Pipeline(options=beam_options(spec))
        build(p, spec, todo, {g: len(upd.groups[g]) for g in pending}, upd.generation)
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
        metrics = _metrics(result)
        if spec.progress is not None:
            spec.progress(len(todo), len(todo))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda tc: _copy(storage, shards, upd, *tc), copies))
    manifest = _commit(storage, shards, upd, current, spec, metrics, pending, t0)
    _collect_garbage(storage, manifest, current)
    return {**manifest, "update": plan}


def _commit(storage: Storage, shards: ShardSet, upd: Update, current: Current, spec: PipelineSpec,
            metrics: dict[str, Any], pending: list[int], t0: float) -> dict[str, Any]:
    """Check the new set (one row per id), write the change list, then ``manifest.json`` once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    state = gen_dir(upd.generation)
    markers = [storage.read_json(f"{state}/group-{g:05d}.done") for g in range(len(upd.groups))]
    for table in TABLES:
        new = [part_key(table, upd.generation, c, copy=True) for c in range(len(upd.copies.get(table, [])))]
        new += [part_key(table, upd.generation, g) for g, m in enumerate(markers) if m.get(table, 1)]  # with rows

        def ids(key: str, table=table) -> list[str]:
            return shards.read_part(key, [ID_COLUMN[table]]).column(0).to_pylist()

        with ThreadPoolExecutor(8) as pool:
            new_ids = dict(zip(new, pool.map(ids, new)))
        kept = upd.keep.get(table, [])
        # this generation's empty group parts are listed too (a fresh build has all three tables'
        # part-00000 files, as before generations); the next generation drops them
        listed = kept + sorted([k for k in new if new_ids[k]] +
                               [part_key(table, upd.generation, g) for g, m in enumerate(markers) if m.get(table, 1) == 0])
        every = [i for p in kept for i in current.rows[table][p]] + [i for k in new for i in new_ids[k]]
        if table != "errors" and len(every) != len(set(every)):
            dup = sorted({i for i in every if every.count(i) > 1})[:5]
            raise RuntimeError(f"generation {upd.generation}: {table} ids on more than one row: {dup}")
        parts[table], counts[table] = listed, len(every)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(upd.changes, schema=pa.schema(
        [("kind", pa.string()), ("id", pa.string()), ("category", pa.string()), ("change", pa.string())])), buf)
    storage.write_bytes(f"{gen_dir(upd.generation)}/changes.parquet", buf.getvalue())
    h, w = working_size(spec.resolution)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "derivation_version": DERIVATION_VERSION,
        "resolution": spec.resolution,
        "height": h,
        "width": w,
        "generation": upd.generation,
        "previous_generation": current.generation or None,
        "parts": parts,
        "counts": counts,
        "changes": upd.counts,
        "derived": len(upd.derive),
        "copied": sum(len(ids) for c in upd.copies.values() for chunk in c for _, ids in chunk),
        "forced": spec.force,
        "inputs": len(spec.items),
        "groups": {"total": len(upd.groups), "done_now": len(pending), "resumed": len(upd.groups) - len(pending)},
        "plan": upd.fingerprint,
        "runner": spec.runner,
        "seconds": round(time.perf_counter() - t0, 3),
        "metrics": metrics,
    }
    storage.write_json("manifest.json", manifest)
    return manifest


def _collect_garbage(storage: Storage, manifest: dict[str, Any], previous: Current) -> None:
    """Delete part files that neither this nor the previous generation lists, and the finished
    generations' markers and plans (their change lists stay)."""
    referenced = {k for keys in manifest["parts"].values() for k in keys}
    referenced |= {k for keys in previous.parts.values() for k in keys}
    for table in TABLES:
        for k in storage.list(table, ".parquet"):
            if k not in referenced:
                storage.delete(k)
    for k in storage.list(STATE):
        name = k.rsplit("/", 1)[1]
        if k.startswith(f"{STATE}/gen-") and name != "changes.parquet":
            storage.delete(k)
        elif k.count("/") == 1 and (name == "plan.json" or name.startswith("group-")):
            storage.delete(k)            # the flat state of gpvton before generations


def _metrics(result) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    try:
        q = result.metrics().query()
        for c in q["counters"]:
            metrics[c.key.metric.name] = c.committed if c.committed is not None else c.attempted
        for d in q["distributions"]:
            r = d.committed if d.committed is not None else d.attempted
            if r is not None and r.count:
                metrics[d.key.metric.name] = {"count": r.count, "mean": round(r.mean, 1),
                                              "min": r.min, "max": r.max}
    except Exception:  # noqa: BLE001 - some runners do not report metrics
        pass
    return metrics


def read_table(output: str, name: str, s3: S3Settings | None = None):
    """Read one table back (the manifest's current parts, empty ones included) as a pyarrow Table."""
    return ShardSet(output, s3).read_table(name)
