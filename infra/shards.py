"""TEMPORARY minimal shard reader (replaced by the preprocess branch's infra/shards.py at merge)."""

from __future__ import annotations

import io
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from infra.storage import S3Settings, Storage


class ShardSet:
    def __init__(self, root: str, s3: S3Settings | None = None, retry_budget_s: float | None = None):
        self.storage = Storage(root, s3, retry_budget_s=retry_budget_s)
        self.root = self.storage.root

    def url(self, key: str = "") -> str:
        return self.storage.url(key)

    @property
    def manifest(self) -> dict:
        try:
            return self.storage.read_json("manifest.json")
        except FileNotFoundError:
            return {}

    def parts(self, table: str) -> list[str]:
        listed = (self.manifest.get("parts") or {}).get(table)
        return list(listed) if listed is not None else self.storage.list(table, ".parquet")

    def read_part(self, key: str, columns: Optional[list[str]] = None) -> pa.Table:
        pf = pq.ParquetFile(io.BytesIO(self.storage.read_bytes(key)))
        cols = None if columns is None else [c for c in columns if c in pf.schema_arrow.names]
        return pf.read(columns=cols)
