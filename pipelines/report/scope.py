"""What a report covers: the last run's change list (joined with the index columns it lacks) by
default, the whole catalogue (the index) with ``--all``, and what its gate counts them against.

It never reads the per-unit score files: they are only the last run's work area.
"""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass, field
from typing import Any, Optional

from pipelines.outcome import Outcome

SCORE_NAMES = ("warp_miou", "preserve_ssim", "ssim", "parse_miou")
#: index columns the report reads (never the whole row)
ROW_COLUMNS = ["person_id", "garment_id", "category", "paired", "output_key", *SCORE_NAMES, "flag", "reason",
               "error", "seconds", "person_key", "garment_key", "run_id"]
#: what the index adds to a change-list row (the change list lacks them)
JOINED_COLUMNS = ["paired", "seconds", "person_key", "garment_key", "run_id"]


def finite(v: Any) -> bool:
    """A number that counts (scores and limits may be missing, None or NaN)."""
    return isinstance(v, (int, float)) and math.isfinite(v)


@dataclass
class Scope:
    """The rows a report covers, and what its gate counts them against."""

    name: str                       # "changes" or "all"
    run_id: Optional[str]
    rows: Any                       # pa.Table, ROW_COLUMNS (+ "change" for the changes scope)
    retired: Any                    # pa.Table of this run's retired pairs (empty for --all)
    planned: int
    catalogue: Outcome
    notes: list[str] = field(default_factory=list)


def catalogue_outcome(summary: dict, manifest: dict) -> Outcome:
    """The catalogue's counts: the index manifest's, over render's planned pairs (as summary.json)."""
    planned = summary.get("pairs")
    if not isinstance(planned, int):
        planned = manifest.get("plan_pairs") if isinstance(manifest.get("plan_pairs"), int) else manifest.get("rows", 0)
    return Outcome(planned=int(planned or 0), counts=dict(manifest.get("counts") or {}))


def _last_change_list(folder, summary: dict) -> tuple[Optional[str], Optional[str], int]:
    """(run id, change-list key, pairs the run was to render) of the last run."""
    if summary.get("run_id"):
        ch = summary.get("changes") or {}
        planned = sum(int(ch.get(k) or 0) for k in ("added", "updated", "retried"))
        return summary["run_id"], summary.get("change_list"), planned
    # no summary (a run that stopped before its end): the newest change list
    lists = folder.change_lists()
    key = lists[-1] if lists else None
    return (posixpath.basename(key)[:-len(".parquet")] if key else None), key, 0


def read_scope(folder, summary: dict, all_pairs: bool, columns: list[str] = ROW_COLUMNS) -> Scope:
    """The index (``all_pairs``) or the last run's change list, joined with the index columns it lacks."""
    import pyarrow.compute as pc

    from infra.schema import CHANGES

    manifest = folder.index_manifest()
    catalogue = catalogue_outcome(summary, manifest)
    if all_pairs:
        rows = folder.read_index(columns=columns, manifest=manifest) if manifest else _empty(columns)
        return Scope("all", manifest.get("run_id"), rows, _empty(["person_id"]), catalogue.planned, catalogue)
    notes: list[str] = []
    run_id, key, planned = _last_change_list(folder, summary)
    changes = CHANGES.empty_table()
    if key:
        try:
            changes = folder.read_changes(run_id=posixpath.basename(key)[:-len(".parquet")])
        except FileNotFoundError:
            notes.append(f"change list {key} not found")
    change = changes.column("change")
    retired = changes.filter(pc.equal(change, "retired"))
    current = changes.filter(pc.not_equal(change, "retired"))
    rows = _join_index(folder, manifest, current, [c for c in JOINED_COLUMNS if c in columns])
    rows = rows.select([c for c in columns if c in rows.column_names] + ["change"])
    return Scope("changes", run_id, rows, retired, max(planned, rows.num_rows), catalogue, notes)


def _empty(columns: list[str]):
    import pyarrow as pa

    from infra.schema import INDEX

    return pa.schema([INDEX.field(c) for c in columns]).empty_table()


def _join_index(folder, manifest: dict, changes, columns: list[str]):
    """``changes`` with ``columns`` of their index rows, reading only the index parts of their buckets."""
    import pyarrow as pa

    from infra.jobfolder import bucket_column

    parts = manifest.get("parts") or {}
    if changes.num_rows and parts and columns:
        buckets = {int(b) for b in bucket_column(changes.column("garment_id"), int(manifest.get("buckets") or 1))}
        sub = {**manifest, "parts": {b: p for b, p in parts.items() if int(b) in buckets}}
        index = folder.read_index(columns=["person_id", "garment_id", *columns], manifest=sub)
        index = index.cast(pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type)
                                               else f.type) for f in index.schema]))
        joined = changes.join(index, keys=["person_id", "garment_id"], join_type="left outer")
    else:   # no index (or nothing to join): the columns, empty
        joined = changes
        for f in _empty(columns).schema:
            joined = joined.append_column(f.name, pa.nulls(changes.num_rows, f.type))
    return joined
