"""A unit's plan as the worker reads it, and its rows of ``JOB/scores/unit-NNNNN.parquet``.

Every planned pair gets exactly one row: scored (with its image's key) or ``error`` (with why),
so a unit always completes and the report can count what is missing.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Optional

Pair = tuple[str, str]   # (person id, garment id)


@dataclass(frozen=True)
class UnitPlan:
    """The planner's unit dict, read once: ids, pairs in plan order, versions, the worn garments."""

    unit_id: int
    category: str
    pairs: list[Pair]
    versions: dict[Pair, str]            # "" when the pair has no content version
    worn: dict[str, Any]                 # person → the garment the person wears
    person_ids: list[str]
    garment_ids: list[str]
    files: dict[str, dict[str, str]]     # "persons" / "garments" → id → shard part file

    @classmethod
    def of(cls, unit: dict[str, Any]) -> "UnitPlan":
        pairs = [(p["person_id"], p["garment_id"]) for p in unit["pairs"]]
        return cls(unit_id=int(unit["unit_id"]), category=unit["category"], pairs=pairs,
                   versions={(p["person_id"], p["garment_id"]): p.get("version") or "" for p in unit["pairs"]},
                   worn=dict(unit.get("worn") or {}), person_ids=list(unit["person_ids"]),
                   garment_ids=list(unit["garment_ids"]), files=unit.get("files") or {})

    def paired(self, person_id: str, garment_id: str) -> bool:
        """Whether the person wears this garment (the reference-based scores apply)."""
        return self.worn.get(person_id) == garment_id

    def error_row(self, person_id: str, garment_id: str, error: str) -> dict[str, Any]:
        from gpvton_core.scores import SCORE_NAMES

        return dict(unit_id=self.unit_id, person_id=person_id, garment_id=garment_id, category=self.category,
                    paired=self.paired(person_id, garment_id), output_uri=None, output_key=None,
                    **dict.fromkeys(SCORE_NAMES), flag="error", reason=None, error=error[:2000], seconds=None,
                    version=self.versions.get((person_id, garment_id)) or None)

    def scored_row(self, person_id: str, garment_id: str, scores: dict[str, float], flag: str,
                   reason: Optional[str], output_uri: str, output_key: str, seconds: float) -> dict[str, Any]:
        return dict(unit_id=self.unit_id, person_id=person_id, garment_id=garment_id, category=self.category,
                    paired=self.paired(person_id, garment_id), output_uri=output_uri, output_key=output_key,
                    **{k: (None if math.isnan(v) else v) for k, v in scores.items()},
                    flag=flag, reason=reason, error=None, seconds=seconds,
                    version=self.versions.get((person_id, garment_id)) or None)


def mark_write_failed(row: dict[str, Any], exc: BaseException) -> None:
    """Turn a scored row into an error row: its image could not be stored (after the storage's retries).

    A storage failure is not the pair's: the transient prefix makes a plain rerun re-plan it.
    """
    from infra.storage import TRANSIENT_PREFIX, is_transient

    again = TRANSIENT_PREFIX if is_transient(exc) or isinstance(exc, OSError) else ""
    row.update(output_uri=None, output_key=None, flag="error", reason=None,
               error=f"{again}write failed: {type(exc).__name__}: {exc}")


def scores_parquet(plan: UnitPlan, rows: list[dict[str, Any]]) -> bytes:
    """The unit's scores file: its rows in plan order, in the :data:`infra.schema.SCORES` schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from infra.schema import SCORES

    order = {pg: i for i, pg in enumerate(plan.pairs)}
    rows.sort(key=lambda r: order[(r["person_id"], r["garment_id"])])
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=SCORES), buf)
    return buf.getvalue()
