"""The preprocess Beam pipeline: items → derivation → Parquet shards (persons, garments, errors).

Layout under the output URL::

    persons/part-NNNNN.parquet   garments/part-NNNNN.parquet   errors/part-NNNNN.parquet
    manifest.json                preprocess_config.json (written by job.py)

Runs on Beam's in-process runner by default (``FnApiRunner``; never the Prism default, which
downloads a binary). ``runner`` plus extra pipeline options are passed through unchanged, so the
same pipeline runs on Flink, Spark or Dataflow. ``s3://`` input and output go through fsspec in
the workers and Beam's S3 filesystem for the Parquet sinks (``--s3_endpoint_url`` etc. are added
from the S3 settings).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from gpvton_core.conditions import DERIVATION_VERSION
from gpvton_core.conditions.resize import working_size
from infra.storage import S3Settings, Storage, filesystem, join
from pipelines.schema import ERRORS, GARMENTS, PERSONS, SCHEMA_VERSION, TABLES

log = logging.getLogger(__name__)
IN_PROCESS_RUNNERS = ("FnApiRunner", "BundleBasedDirectRunner", "DirectRunner")


@dataclass
class PipelineSpec:
    items: list[dict]
    output: str
    resolution: int = 512
    runner: str = "FnApiRunner"
    pipeline_args: list[str] = field(default_factory=list)
    s3: S3Settings | None = None
    num_shards: int = 0          # 0 = one shard per ~200 rows (at least 1)
    max_pixels: int = 64_000_000


def dedupe(items: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """First item per (kind, id) kept; later ones become error rows (stage 'read')."""
    seen: dict[tuple[str, str], str] = {}
    keep, errors = [], []
    for it in items:
        key = (it.get("kind", "?"), it.get("id", ""))
        if key in seen and not it.get("error"):
            errors.append({"item_id": key[1], "kind": key[0], "stage": "read",
                           "reason": f"duplicate {key[0]} id {key[1]!r} (first from {seen[key]})",
                           "source_uri": it.get("source_uri")})
            continue
        if not it.get("error"):
            seen[key] = it.get("source_uri") or "?"
        keep.append(it)
    return keep, errors


class DeriveFn(beam.DoFn):
    """One item → one row on the 'persons' / 'garments' output or one row on 'errors'."""

    def __init__(self, resolution: int, s3: S3Settings | None, max_pixels: int):
        self.resolution, self.s3, self.max_pixels = resolution, s3, max_pixels
        self.ok = {"persons": Metrics.counter("preprocess", "persons_ok"),
                   "garments": Metrics.counter("preprocess", "garments_ok")}
        self.failed = Metrics.counter("preprocess", "items_failed")
        self.seconds = Metrics.distribution("preprocess", "item_ms")
        self._fs: dict[str, Any] = {}
        self._done = 0
        self._failed = 0
        self._t0 = 0.0

    def _read(self, url: str) -> bytes:
        proto = url.split("://", 1)[0] if "://" in url else "file"
        fs = self._fs.get(proto)
        if fs is None:
            fs = self._fs[proto] = filesystem(url, self.s3)
        path = url[len("file://"):] if url.startswith("file://") else url
        with fs.open(path, "rb") as fh:
            return fh.read()

    def _progress(self) -> None:
        self._done += 1
        if self._done % 25 == 0:
            rate = self._done / max(1e-9, time.perf_counter() - self._t0)
            log.info("preprocess: this worker has done %d items (%d failed), %.2f items/s",
                     self._done, self._failed, rate)

    def process(self, item: dict):
        from pipelines.preprocess.derive import ItemError, derive_item

        t0 = time.perf_counter()
        if not self._t0:
            self._t0 = t0
        try:
            table, row = derive_item(item, self._read, self.resolution, self.max_pixels)
        except ItemError as exc:
            self.failed.inc()
            self._failed += 1
            log.warning("preprocess: %s", exc)
            yield beam.pvalue.TaggedOutput("errors", exc.row())
            return
        finally:
            self.seconds.update(int((time.perf_counter() - t0) * 1000))
            self._progress()
        self.ok[table].inc()
        yield beam.pvalue.TaggedOutput(table, row)


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


def _shards(n_rows: int, spec: PipelineSpec) -> int:
    return spec.num_shards if spec.num_shards > 0 else max(1, (n_rows + 199) // 200)


def build(p: beam.Pipeline, spec: PipelineSpec, items: list[dict], pre_errors: list[dict]) -> None:
    out = spec.output.rstrip("/")
    n_p = sum(1 for i in items if i.get("kind") == "person")
    n_g = len(items) - n_p
    results = (p | "Items" >> beam.Create(items, reshuffle=False)
               | "Spread" >> beam.Reshuffle()
               | "Derive" >> beam.ParDo(DeriveFn(spec.resolution, spec.s3, spec.max_pixels))
               .with_outputs("persons", "garments", "errors"))
    errors = ((results.errors, p | "PreErrors" >> beam.Create(pre_errors))
              | "AllErrors" >> beam.Flatten())
    for name, pcoll, schema, n in (("persons", results.persons, PERSONS, n_p),
                                   ("garments", results.garments, GARMENTS, n_g),
                                   ("errors", errors, ERRORS, max(1, len(pre_errors)))):
        _ = pcoll | f"Write{name}" >> beam.io.WriteToParquet(
            file_path_prefix=join(out, name, "part"), schema=schema, file_name_suffix=".parquet",
            shard_name_template="-SSSSS", num_shards=_shards(n, spec), codec="snappy")


def _finalize_tables(storage: Storage) -> dict[str, int]:
    """Row counts per table from the Parquet footers; an empty shard is written for a table that
    got none (readers then always find part-00000)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    counts = {}
    for name, schema in TABLES.items():
        keys = [k for k in storage.list(name, ".parquet") if k.split("/")[-1].startswith("part-")]
        if not keys:
            buf = io.BytesIO()
            pq.write_table(pa.Table.from_pylist([], schema=schema), buf)
            storage.write_bytes(f"{name}/part-00000.parquet", buf.getvalue())
            counts[name] = 0
            continue
        total = 0
        for k in keys:
            with storage.fs.open(storage._path(k), "rb") as fh:
                total += pq.ParquetFile(fh).metadata.num_rows
        counts[name] = total
    return counts


def run_pipeline(spec: PipelineSpec) -> dict[str, Any]:
    """Run the pipeline and write ``manifest.json``; returns the manifest plus metrics."""
    items, pre_errors = dedupe(spec.items)
    storage = Storage(spec.output, spec.s3)
    for name in TABLES:               # a rerun replaces earlier shards (deterministic names)
        for k in storage.list(name, ".parquet"):
            storage.delete(k)
    t0 = time.perf_counter()
    opts = beam_options(spec)
    p = beam.Pipeline(options=opts)
    build(p, spec, items, pre_errors)
    result = p.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - t0
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
    counts = _finalize_tables(storage)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "derivation_version": DERIVATION_VERSION,
        "resolution": spec.resolution,
        "height": working_size(spec.resolution)[0],
        "width": working_size(spec.resolution)[1],
        "counts": counts,
        "inputs": len(spec.items),
        "runner": spec.runner,
        "seconds": round(seconds, 3),
        "metrics": metrics,
        "tables": {name: f"{name}/part-*.parquet" for name in TABLES},
    }
    storage.write_json("manifest.json", manifest)
    return manifest


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
