"""A unit's decoded inputs: the chosen shard rows read, decoded (:mod:`gpvton_core.rows`), kept per worker.

Only the unit's own persons and garments are read, located through the part files the planner
attached to the unit. A row that is missing or cannot be decoded becomes its exception, cached
like a good row, so every pair that needs it becomes an error row and the unit still completes.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from workers.render.lru import LruCache
from workers.render.settings import WorkerSettings, s3_settings

# what the inputs cache holds per (kind, id, category): the network inputs or why there are none
Decoded = Union[Any, Exception]


class ShardReader:
    """Reads chosen rows of the persons / garments shards (fsspec; retried)."""

    def __init__(self, shards_root: str, s3: dict[str, Optional[str]]):
        from infra.shards import ShardSet

        self.shards = ShardSet(shards_root, s3_settings(s3))
        self.root = self.shards.root

    def read(self, table: str, ids: list[str], files: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Rows of ``ids``; ``files`` maps each id to its part file (``persons/part-00000.parquet``)."""
        key = "person_id" if table == "persons" else "garment_id"
        by_file: dict[str, list[str]] = {}
        for i in ids:
            f = files.get(i)
            if f is not None:
                by_file.setdefault(f, []).append(i)
        rows: dict[str, dict[str, Any]] = {}
        for f, wanted in sorted(by_file.items()):
            tbl = self.shards.read_part(f, filters=[(key, "in", wanted)])   # retried inside
            for r in tbl.to_pylist():
                rows[r[key]] = r
        return rows


class UnitInputs:
    """Network inputs per person and garment of a unit, decoded once per worker (LRU).

    Also remembers each person's original photo (``source_uri``) and where the working image sits
    in it (``frame_box``), which the ``original`` frame needs when the images are written.
    """

    def __init__(self, settings: WorkerSettings):
        self.s = settings
        self.reader = ShardReader(settings.shards_root, settings.s3)
        self.cache: LruCache[tuple[str, str, str], Decoded] = LruCache(settings.cache_items)
        self._photo_sources: dict[str, tuple[Optional[str], Optional[list[int]]]] = {}

    def load(self, kind: str, ids: list[str], category: str, files: dict[str, str]) -> dict[str, Decoded]:
        """id → inputs (``PersonRow`` / ``GarmentInputs``) or the exception that stands for a bad row."""
        out: dict[str, Decoded] = {}
        missing = []
        for i in ids:
            key = (kind, i, category)
            if key in self.cache:
                out[i] = self.cache.get(key)
            else:
                missing.append(i)
        if missing:
            rows = self.reader.read("persons" if kind == "person" else "garments", missing, files)
            for i in missing:
                try:
                    val = self._decode(kind, i, rows.get(i), category)
                except Exception as exc:  # noqa: BLE001 - a bad row becomes error rows
                    val = exc
                out[i] = val
                self.cache.put((kind, i, category), val)
        return out

    def photo_source(self, person_id: str) -> tuple[Optional[str], Optional[list[int]]]:
        """(source_uri, frame_box) of a person read by this worker ((None, None) when unknown)."""
        return self._photo_sources.get(person_id, (None, None))

    def _decode(self, kind: str, item_id: str, row: Optional[dict[str, Any]], category: str) -> Any:
        from gpvton_core.inputs import garment_inputs, person_inputs
        from gpvton_core.rows import decode_garment_row, decode_person_row

        if row is None:
            raise KeyError(f"{kind} {item_id!r} not found in the shards")
        h, w = self.s.shard_size
        if (row["height"], row["width"]) != (h, w):
            raise ValueError(f"{kind} {item_id}: shard size {row['height']}×{row['width']} != {h}×{w}")
        if kind == "person":
            self._photo_sources[item_id] = (row.get("source_uri"), row.get("frame_box"))
            p = decode_person_row(row)
            return person_inputs(item_id, p["image"], p["parsing"], p["densepose"], p["keypoints"],
                                 category, self.s.variant)
        g = decode_garment_row(row)
        return garment_inputs(item_id, g["image"], g["mask"], g["parts"], category, self.s.variant)
