"""The preprocess Beam pipeline: items → derivation (with estimators) → Parquet shards.

Layout under the output URL::

    persons/part-NNNNN.parquet   garments/part-NNNNN.parquet   errors/part-NNNNN.parquet
    manifest.json                preprocess_config.json (written by job.py)
    _preprocess/plan.json        the item groups and the fingerprint of inputs + settings
    _preprocess/group-NNNNN.done one marker per group whose three part files are complete

Items are split into deterministic groups (sorted by kind and id); group ``N`` writes
``part-N`` of each table, then its done-marker. A rerun after a crash redoes only the groups
without a marker; a rerun over other inputs or settings is refused unless ``force`` rebuilds.

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
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from gpvton_core.conditions import DERIVATION_VERSION
from gpvton_core.conditions.resize import working_size
from infra.schema import SCHEMA_VERSION, TABLES
from infra.storage import S3Settings, Storage, filesystem
from pipelines.config import ConfigError
from pipelines.preprocess.estimators.bundle import Estimators, EstimatorsConfig

log = logging.getLogger(__name__)
IN_PROCESS_RUNNERS = ("FnApiRunner", "BundleBasedDirectRunner", "DirectRunner")
STATE = "_preprocess"
GROUP_SIZE = 64          # items per group: the unit of resume


@dataclass
class PipelineSpec:
    items: list[dict]
    output: str
    resolution: int = 512
    runner: str = "FnApiRunner"
    pipeline_args: list[str] = field(default_factory=list)
    s3: S3Settings | None = None
    num_shards: int = 0          # groups (= part files per table); 0 = one per GROUP_SIZE items
    max_pixels: int = 64_000_000
    estimators: EstimatorsConfig = field(default_factory=EstimatorsConfig)
    force: bool = False          # rebuild from scratch even when the output holds another plan


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
    ordered = sorted(items, key=lambda it: (it.get("kind", "?"), str(it.get("id", "")), str(it.get("source_uri"))))
    n = num_groups if num_groups > 0 else max(1, -(-len(ordered) // GROUP_SIZE))
    n = max(1, min(n, len(ordered) or 1))
    size = -(-len(ordered) // n) if ordered else 1
    return [ordered[i * size:(i + 1) * size] for i in range(n)]


def fingerprint(groups: list[list[dict]], spec: PipelineSpec) -> str:
    """What the shards depend on: the items of every group, the resolution, the estimators and
    the derivation version (not the runner, the pipeline options or the storage settings)."""
    h = hashlib.sha256()
    h.update(json.dumps({"resolution": spec.resolution, "max_pixels": spec.max_pixels,
                         "derivation": DERIVATION_VERSION, "schema": SCHEMA_VERSION,
                         "estimators": spec.estimators.model_dump(mode="json")}, sort_keys=True).encode())
    for g in groups:
        h.update(json.dumps(g, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()


def _group_key(gid: int) -> str:
    return f"{STATE}/group-{gid:05d}"


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
    """A batch of ``(group, item)`` → ``(group, (table, row))``; estimators load once per worker."""

    def __init__(self, resolution: int, s3: S3Settings | None, max_pixels: int, estimators: EstimatorsConfig):
        self.resolution, self.s3, self.max_pixels, self.cfg = resolution, s3, max_pixels, estimators
        self.ok = {"persons": Metrics.counter("preprocess", "persons_ok"),
                   "garments": Metrics.counter("preprocess", "garments_ok")}
        self.failed = Metrics.counter("preprocess", "items_failed")
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
        for (gid, _), (table, row) in zip(batch, results):
            self.seconds.update(per_item)
            if table == "errors":
                self.failed.inc()
                log.warning("preprocess: %s %r [%s] %s", row["kind"], row["item_id"], row["stage"], row["reason"])
            else:
                self.ok[table].inc()
            yield gid, (table, row)
        self._done += len(batch)
        log.info("preprocess: this worker has done %d items, %.2f items/s", self._done,
                 self._done / max(1e-9, time.perf_counter() - self._t0))


class WriteGroupFn(beam.DoFn):
    """All rows of one group → its three part files (atomic writes), then its done-marker."""

    def __init__(self, output: str, s3: S3Settings | None, sizes: dict[int, int]):
        self.output, self.s3, self.sizes = output, s3, sizes

    def process(self, element: tuple[int, Iterable[tuple[str, dict]]]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        gid, rows = element
        rows = list(rows)
        if len(rows) != self.sizes[gid]:
            raise RuntimeError(f"group {gid}: {len(rows)} rows for {self.sizes[gid]} items")
        storage = Storage(self.output, self.s3)
        counts = {}
        for name, schema in TABLES.items():
            key = "person_id" if name == "persons" else "garment_id" if name == "garments" else "item_id"
            got = sorted((r for t, r in rows if t == name), key=lambda r: (str(r.get("kind", "")), str(r[key])))
            buf = io.BytesIO()
            pq.write_table(pa.Table.from_pylist(got, schema=schema), buf, compression="snappy")
            storage.write_bytes(f"{name}/part-{gid:05d}.parquet", buf.getvalue())
            counts[name] = len(got)
        storage.mark_done(_group_key(gid), counts)
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


def build(p: beam.Pipeline, spec: PipelineSpec, todo: list[tuple[int, dict]], sizes: dict[int, int]) -> None:
    _ = (p | "Items" >> beam.Create(todo, reshuffle=False)
         | "Spread" >> beam.Reshuffle()
         | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=spec.estimators.batch_size)
         | "Derive" >> beam.ParDo(DeriveBatchFn(spec.resolution, spec.s3, spec.max_pixels, spec.estimators))
         | "ByGroup" >> beam.GroupByKey()
         | "Write" >> beam.ParDo(WriteGroupFn(spec.output, spec.s3, sizes)))


def _count_rows(storage: Storage) -> dict[str, int]:
    """Row counts per table from the Parquet footers."""
    import pyarrow.parquet as pq

    counts = {}
    for name in TABLES:
        total = 0
        for k in storage.list(name, ".parquet"):
            if k.split("/")[-1].startswith("part-"):
                with storage.fs.open(storage._path(k), "rb") as fh:
                    total += pq.ParquetFile(fh).metadata.num_rows
        counts[name] = total
    return counts


def _clear(storage: Storage) -> None:
    for prefix in (*TABLES, STATE):
        for k in storage.list(prefix):
            storage.delete(k)
    if storage.exists("manifest.json"):
        storage.delete("manifest.json")


def prepare(spec: PipelineSpec) -> tuple[list[list[dict]], list[int], str]:
    """(groups, pending group ids, fingerprint); writes the plan, and refuses (ConfigError) an
    output that holds shards of another plan unless ``spec.force``."""
    storage = Storage(spec.output, spec.s3)
    groups = plan_groups(dedupe(spec.items), spec.num_shards)
    fp = fingerprint(groups, spec)
    plan_key = f"{STATE}/plan.json"
    old = storage.read_json(plan_key) if storage.exists(plan_key) else None
    if spec.force:
        _clear(storage)
    elif old is not None and old.get("fingerprint") != fp:
        raise ConfigError(f"{spec.output} holds shards of other inputs or settings (plan "
                          f"{old.get('fingerprint', '?')[:12]}, now {fp[:12]}); pass --force to rebuild "
                          "them, or write to a new --output")
    elif old is None and storage.list("persons", ".parquet") + storage.list("garments", ".parquet"):
        raise ConfigError(f"{spec.output} holds shards that no plan describes (an older gpvton?); "
                          "pass --force to rebuild them, or write to a new --output")
    storage.write_json(plan_key, {"fingerprint": fp, "groups": len(groups),
                                  "items": sum(len(g) for g in groups), "sizes": [len(g) for g in groups]})
    done = {int(k.rsplit("-", 1)[1]) for k in storage.iter_done(STATE) if "/group-" in k}
    pending = [g for g in range(len(groups)) if g not in done]
    return groups, pending, fp


def run_pipeline(spec: PipelineSpec) -> dict[str, Any]:
    """Run the pipeline over the pending groups and write ``manifest.json``; returns the manifest."""
    storage = Storage(spec.output, spec.s3)
    groups, pending, fp = prepare(spec)
    t0 = time.perf_counter()
    metrics: dict[str, Any] = {}
    if pending:
        todo = [(g, item) for g in pending for item in groups[g]]
        if storage.exists("manifest.json"):
            storage.delete("manifest.json")      # readers see a manifest only over complete shards
        log.info("preprocess: %d of %d groups to do (%d items)", len(pending), len(groups), len(todo))
        p = beam.Pipeline(options=beam_options(spec))
        build(p, spec, todo, {g: len(groups[g]) for g in pending})
        result = p.run()
        result.wait_until_finish()
        metrics = _metrics(result)
    seconds = time.perf_counter() - t0
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "derivation_version": DERIVATION_VERSION,
        "resolution": spec.resolution,
        "height": working_size(spec.resolution)[0],
        "width": working_size(spec.resolution)[1],
        "counts": _count_rows(storage),
        "inputs": len(spec.items),
        "groups": {"total": len(groups), "done_now": len(pending), "resumed": len(groups) - len(pending)},
        "plan": fp,
        "runner": spec.runner,
        "seconds": round(seconds, 3),
        "metrics": metrics,
        "tables": {name: f"{name}/part-*.parquet" for name in TABLES},
    }
    storage.write_json("manifest.json", manifest)
    return manifest


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
    """Read one table back (all shards, empty ones included) as a pyarrow Table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    storage = Storage(output, s3)
    parts = []
    for k in storage.list(name, ".parquet"):
        with storage.fs.open(storage._path(k), "rb") as fh:
            parts.append(pq.read_table(fh))
    schema = TABLES[name]
    if not parts:
        return schema.empty_table()
    return pa.concat_tables([t.cast(schema) for t in parts])
