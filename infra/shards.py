"""One reader of condition shards: the part files that ``manifest.json`` lists, never a listing.

Preprocess updates shards in generations (``pipelines/preprocess/beam_pipeline.py``): new part
files are written next to the old ones and one write of ``manifest.json`` commits the new set. A
reader that listed ``persons/*.parquet`` would see two generations at once (duplicate ids, rows
of withdrawn garments); a :class:`ShardSet` reads the manifest once and only the parts it names.
Shards written before manifests listed their parts are read by listing, as they were then.

Every table comes back in the schema of ``infra/schema.py``: columns an older schema lacks are
null, so callers never branch on the shard version.
"""

from __future__ import annotations

import posixpath
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from infra.schema import TABLES
from infra.storage import S3Settings, Storage, with_retries

MANIFEST = "manifest.json"


class ShardSet:
    """The current shards under ``root``: a snapshot taken when the manifest is first read."""

    def __init__(self, root: str, s3: S3Settings | None = None, storage: Storage | None = None):
        self.storage = storage or Storage(root, s3)
        self.root = self.storage.root
        self._manifest: dict[str, Any] | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        """``manifest.json`` (read once per ShardSet), or ``{}`` when there is none."""
        if self._manifest is None:
            try:
                self._manifest = self.storage.read_json(MANIFEST)    # one GET, no HEAD first
            except FileNotFoundError:
                self._manifest = {}
        return self._manifest

    def parts(self, table: str) -> list[str]:
        """Keys (relative to the root) of the table's current part files."""
        listed = (self.manifest.get("parts") or {}).get(table)
        if listed is not None:
            return list(listed)
        # shards of an older gpvton: every part file directly under TABLE/
        return [k for k in self.storage.list(table, ".parquet") if posixpath.dirname(k) == table]

    def url(self, key: str) -> str:
        return self.storage.url(key)

    def read_part(self, key: str, columns: list[str] | None = None,
                  filters: list[tuple[str, str, Any]] | None = None) -> pa.Table:
        """One part file in its table's schema (``filters``: pyarrow DNF, applied after reading)."""
        schema = TABLES.get(key.split("/", 1)[0])

        def read() -> pa.Table:
            with self.storage.fs.open(self.storage.path(key), "rb") as fh:
                pf = pq.ParquetFile(fh)
                names = pf.schema_arrow.names
                return pf.read(columns=None if columns is None else [c for c in columns if c in names])

        t = with_retries(read, what=f"read {key}")
        if filters:
            t = t.filter(pq.filters_to_expression(filters))
        return conform(t, schema, columns)

    def read_table(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """All current parts of ``table`` (empty ones included) as one table."""
        parts = [self.read_part(k, columns) for k in self.parts(table)]
        if not parts:
            return conform(TABLES[table].empty_table(), TABLES[table], columns)
        return pa.concat_tables(parts, promote_options="default")

    def iter_rows(self, table: str, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Rows as dicts, one part in memory at a time."""
        for key in self.parts(table):
            yield from self.read_part(key, columns).to_pylist()


def conform(t: pa.Table, schema: pa.Schema | None, columns: list[str] | None = None) -> pa.Table:
    """``t`` with exactly the wanted columns (default: the schema's), cast to the schema's types;
    a column the file lacks is null (and its field nullable)."""
    if schema is None:
        return t if columns is None else t.select(columns)
    names = list(columns) if columns is not None else schema.names
    arrays, fields = [], []
    for name in names:
        field = schema.field(name) if name in schema.names else None
        if name in t.column_names:
            col = t.column(name)
            if field is not None and col.type != field.type:
                col = col.cast(field.type)
            fields.append(field if field is not None else pa.field(name, col.type))
        elif field is not None:
            col = pa.chunked_array([pa.nulls(t.num_rows, field.type)])
            fields.append(field.with_nullable(True))
        else:
            raise KeyError(f"no column {name!r} in the shards or their schema")
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
