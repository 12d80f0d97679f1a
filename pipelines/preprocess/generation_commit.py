"""One generation's state on storage: its plan (start or resume), its copy parts, and its commit.

A crash resumes: the same inputs give the same plan fingerprint, and the groups and copies whose
markers exist are kept; a plan that changed meanwhile discards the uncommitted generation. The
commit checks the new set (one row per id) and then writes ``manifest.json`` ONCE: readers follow
the manifest, never a listing, so they never see half an update.
"""

from __future__ import annotations

import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gpvton_core.conditions import DERIVATION_VERSION
from gpvton_core.conditions.resize import working_size
from infra.schema import SCHEMA_VERSION, TABLES
from infra.shards import ShardSet
from infra.storage import Storage
from pipelines.preprocess.generation_cleanup import discard_generation
from pipelines.preprocess.generation_layout import ID_COLUMN, gen_dir, part_key, write_parquet
from pipelines.preprocess.update_plan import Current, Update

log = logging.getLogger(__name__)


def start_or_resume(storage: Storage, upd: Update, max_pixels: int) -> tuple[list[int], list[tuple[str, int]]]:
    """Write (or resume) the generation's plan: the pending group ids and copy parts."""
    plan_key = f"{gen_dir(upd.generation)}/plan.json"
    old = storage.read_json(plan_key) if storage.exists(plan_key) else None
    if old is None or old.get("fingerprint") != upd.fingerprint or max_pixels != old.get("max_pixels"):
        if old is not None:
            log.info("preprocess: the inputs changed since generation %d was started; starting it again",
                     upd.generation)
        discard_generation(storage, upd.generation)
        storage.write_json(plan_key, {"fingerprint": upd.fingerprint, "generation": upd.generation,
                                      "groups": len(upd.groups), "sizes": [len(g) for g in upd.groups],
                                      "copies": {t: len(c) for t, c in upd.copies.items()},
                                      "max_pixels": max_pixels})
    done = {k.rsplit("/", 1)[1] for k in storage.iter_done(gen_dir(upd.generation))}
    pending = [g for g in range(len(upd.groups)) if f"group-{g:05d}" not in done]
    copies = [(t, c) for t, chunks in upd.copies.items() for c in range(len(chunks))
              if f"copy-{t}-{c:05d}" not in done]
    return pending, copies


def copy_part(storage: Storage, shards: ShardSet, upd: Update, table: str, index: int) -> None:
    """One copy part: the kept rows of rewritten parts, byte for byte the same values."""
    import pyarrow as pa

    key = ID_COLUMN[table]
    pieces = [shards.read_part(src, filters=[(key, "in", ids)]) for src, ids in upd.copies[table][index]]
    t = pa.concat_tables(pieces, promote_options="default").cast(TABLES[table])
    write_parquet(storage, part_key(table, upd.generation, index, copy=True), t)
    storage.mark_done(f"{gen_dir(upd.generation)}/copy-{table}-{index:05d}", {table: t.num_rows})


def _table_parts(shards: ShardSet, upd: Update, current: Current, table: str,
                 markers: list[dict[str, int]]) -> tuple[list[str], int]:
    """The parts the new manifest lists for ``table`` and its row count; an error when an id
    would be on more than one row."""
    new = [part_key(table, upd.generation, c, copy=True) for c in range(len(upd.copies.get(table, [])))]
    new += [part_key(table, upd.generation, g) for g, m in enumerate(markers) if m.get(table, 1)]  # with rows

    def ids(key: str) -> list[str]:
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
    return listed, len(every)


def _write_changes(storage: Storage, upd: Update) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(upd.changes, schema=pa.schema(
        [("kind", pa.string()), ("id", pa.string()), ("category", pa.string()), ("change", pa.string())])), buf)
    storage.write_bytes(f"{gen_dir(upd.generation)}/changes.parquet", buf.getvalue())


def commit(storage: Storage, shards: ShardSet, upd: Update, current: Current, *, resolution: int, forced: bool,
           inputs: int, runner: str, metrics: dict[str, Any], pending: list[int], t0: float) -> dict[str, Any]:
    """Check the new set (one row per id), write the change list, then ``manifest.json`` once."""
    parts: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    state = gen_dir(upd.generation)
    markers = [storage.read_json(f"{state}/group-{g:05d}.done") for g in range(len(upd.groups))]
    for table in TABLES:
        parts[table], counts[table] = _table_parts(shards, upd, current, table, markers)
    _write_changes(storage, upd)
    h, w = working_size(resolution)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "derivation_version": DERIVATION_VERSION,
        "resolution": resolution,
        "height": h,
        "width": w,
        "generation": upd.generation,
        "previous_generation": current.generation or None,
        "parts": parts,
        "counts": counts,
        "changes": upd.counts,
        "derived": len(upd.derive),
        "copied": sum(len(ids) for c in upd.copies.values() for chunk in c for _, ids in chunk),
        "forced": forced,
        "inputs": inputs,
        "groups": {"total": len(upd.groups), "done_now": len(pending), "resumed": len(upd.groups) - len(pending)},
        "plan": upd.fingerprint,
        "runner": runner,
        "seconds": round(time.perf_counter() - t0, 3),
        "metrics": metrics,
    }
    storage.write_json("manifest.json", manifest)
    return manifest
