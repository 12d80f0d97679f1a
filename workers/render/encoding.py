"""The unit's persons and garments through the encoders, once each, cached per worker.

Every garment and every person of a unit is encoded once with
:class:`gpvton_core.inference.TryOnPipeline` (in chunks of ``batch_size``); the pairs then reuse
the encoded rows. An item whose encoding fails fails only its own pairs.
"""

from __future__ import annotations

import logging
from typing import Any

from workers.render.lru import LruCache
from workers.render.score_rows import Pair, UnitPlan

log = logging.getLogger(__name__)


class UnitEncoder:
    """Encoded one-row ``GarmentBatch`` / ``PersonBatch`` per (kind, id, category) (LRU)."""

    def __init__(self, pipe: Any, batch_size: int, capacity: int):
        self.pipe = pipe
        self.batch_size = max(1, batch_size)
        self.cache: LruCache[tuple[str, str, str], Any] = LruCache(capacity)

    def encode(self, kind: str, items: dict[str, Any], category: str) -> dict[str, Any]:
        """Encoded row per id of ``items`` (inputs; an exception stands for a bad row and is skipped)."""
        from gpvton_core.tryon_batches import GarmentInputs, PersonInputs

        feats: dict[str, Any] = {}
        todo = []
        for i, v in items.items():
            key = (kind, i, category)
            if key in self.cache:
                feats[i] = self.cache.get(key)
            elif not isinstance(v, Exception):
                todo.append(i)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            if kind == "garment":
                enc = self.pipe.encode_garments(GarmentInputs.cat([items[i] for i in chunk]))
            else:
                enc = self.pipe.encode_persons(PersonInputs.cat([items[i].inputs for i in chunk]))
            for j, i in enumerate(chunk):
                fi = enc.select([j])
                feats[i] = fi
                self.cache.put((kind, i, category), fi)
        return feats

    def encode_unit(self, plan: UnitPlan, good: list[Pair], persons: dict[str, Any], garments: dict[str, Any],
                    rows: list[dict[str, Any]]) -> tuple[list[Pair], dict[str, Any], dict[str, Any]]:
        """(pairs still good, person features, garment features).

        A failed batch is retried item by item; an item that still fails is put in ``persons`` /
        ``garments`` as its exception and its pairs become error rows in ``rows``.
        """
        try:
            pfeat = self.encode("person", {p: persons[p] for p in {p for p, _ in good}}, plan.category)
            gfeat = self.encode("garment", {g: garments[g] for g in {g for _, g in good}}, plan.category)
            return good, pfeat, gfeat
        except Exception as exc:  # noqa: BLE001 - encoding failed for the batch: per item
            log.warning("unit %d: batched encoding failed (%s); encoding one by one", plan.unit_id, exc)
        pfeat, gfeat = {}, {}
        for kind, src, dst in (("person", persons, pfeat), ("garment", garments, gfeat)):
            for i in sorted({p for p, _ in good} if kind == "person" else {g for _, g in good}):
                try:
                    dst.update(self.encode(kind, {i: src[i]}, plan.category))
                except Exception as e2:  # noqa: BLE001
                    src[i] = e2
        still = []
        for p, g in good:
            if p in pfeat and g in gfeat:
                still.append((p, g))
            else:
                e = persons[p] if p not in pfeat else garments[g]
                rows.append(plan.error_row(p, g, f"encoding failed: {type(e).__name__}: {e}"))
        return still, pfeat, gfeat
