"""The Beam graph that derives a generation's pending groups into their part files.

Shape: Create(items of pending groups) → Reshuffle → BatchElements → DeriveBatchFn (estimators
built once per worker in ``setup``; the parser sees a whole batch) → GroupByKey(group) →
WriteGroupFn (a group writes its three part files, then its marker). ``runner`` plus extra
pipeline options pass through unchanged, so the same graph runs in process (``FnApiRunner``;
never the Prism default, which downloads a binary) or on Flink, Spark or Dataflow. Storage is
fsspec throughout (local folders and ``s3://`` alike).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from infra.schema import TABLES
from infra.storage import S3Settings, Storage, filesystem
from pipelines.preprocess.estimators.bundle import Estimators, EstimatorsConfig
from pipelines.preprocess.generation_layout import ID_COLUMN, gen_dir, part_key, write_parquet

log = logging.getLogger(__name__)


def _reader(s3: S3Settings | None) -> Callable[[str], bytes]:
    """Read a source URL's bytes, one filesystem per protocol (opened once per worker)."""
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
            write_parquet(storage, part_key(name, self.gen, gid), pa.Table.from_pylist(got, schema=schema))
            counts[name] = len(got)
        storage.mark_done(f"{gen_dir(self.gen)}/group-{gid:05d}", counts)
        yield gid


def beam_options(runner: str, pipeline_args: list[str], s3: S3Settings | None) -> PipelineOptions:
    """The runner and the user's extra options; S3 settings unless the user passed their own."""
    args = [f"--runner={runner}"] + list(pipeline_args)
    if s3 is not None and not any(a.startswith("--s3_") for a in pipeline_args):
        if s3.endpoint_url:
            args.append(f"--s3_endpoint_url={s3.endpoint_url}")
        if s3.access_key_id:
            args.append(f"--s3_access_key_id={s3.access_key_id}")
        if s3.secret_access_key:
            args.append(f"--s3_secret_access_key={s3.secret_access_key}")
        if s3.region:
            args.append(f"--s3_region_name={s3.region}")
    return PipelineOptions(args)


def build(p: beam.Pipeline, todo: list[tuple[int, dict]], sizes: dict[int, int], gen: int, *, output: str,
          s3: S3Settings | None, resolution: int, max_pixels: int, estimators: EstimatorsConfig) -> None:
    _ = (p | "Items" >> beam.Create(todo, reshuffle=False)
         | "Spread" >> beam.Reshuffle()
         | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=estimators.batch_size)
         | "Derive" >> beam.ParDo(DeriveBatchFn(resolution, s3, max_pixels, estimators))
         | "ByGroup" >> beam.GroupByKey()
         | "Write" >> beam.ParDo(WriteGroupFn(output, s3, sizes, gen)))


def beam_metrics(result) -> dict[str, Any]:
    """The run's counters and distributions by name (empty where the runner reports none)."""
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
