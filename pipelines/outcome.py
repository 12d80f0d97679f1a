"""How a render job went: one set of definitions for render's summary, the report, status and exit codes.

Every planned pair ends as a score row flagged ``ok`` / ``warn`` / ``fail`` / ``error``, or as
**missing** (no row: its unit was lost or has not run yet). Two fractions of the planned pairs:

* **unrendered** = error + missing — pairs that produced no image. ``gpvton render`` exits 1 when
  ``unrendered_fraction > max_unrendered_fraction``: the rendering itself did not work.
* **failed** = fail + error + missing — pairs not fit to publish. ``gpvton report`` (the QA gate)
  exits 1 when ``failed_fraction > max_failed_fraction`` (or ``--fail-limit``).

Both are in ``JOB/summary.json`` and ``JOB/report/summary.json`` under these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from infra.schema import FLAGS
DEFINITIONS = {
    "missing": "planned pairs without a score row (unit lost or not run)",
    "unrendered": "error + missing: pairs without an image (render's exit code: max_unrendered_fraction)",
    "failed": "fail + error + missing: pairs not fit to publish (report's exit code: max_failed_fraction)",
}


@dataclass(frozen=True)
class Outcome:
    """Counts of one job's pairs and the two fractions derived from them."""

    planned: int
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_flags(cls, flags: Iterable[str], planned: int) -> "Outcome":
        flags = list(flags)
        counts = {f: flags.count(f) for f in FLAGS}
        return cls(planned=max(planned, len(flags)), counts=counts)

    @property
    def scored(self) -> int:
        return sum(self.counts.get(f, 0) for f in FLAGS)

    @property
    def missing(self) -> int:
        return max(0, self.planned - self.scored)

    @property
    def unrendered(self) -> int:
        return self.counts.get("error", 0) + self.missing

    @property
    def failed(self) -> int:
        return self.counts.get("fail", 0) + self.counts.get("error", 0) + self.missing

    def fraction(self, n: int) -> float:
        return n / self.planned if self.planned else 0.0

    @property
    def unrendered_fraction(self) -> float:
        return self.fraction(self.unrendered)

    @property
    def failed_fraction(self) -> float:
        return self.fraction(self.failed)

    def as_dict(self) -> dict[str, Any]:
        """The named fields both summaries carry."""
        return {"pairs": self.planned, "scored": self.scored, "missing": self.missing,
                "counts": {f: self.counts.get(f, 0) for f in FLAGS},
                "unrendered": self.unrendered, "unrendered_fraction": self.unrendered_fraction,
                "failed": self.failed, "failed_fraction": self.failed_fraction,
                "definitions": DEFINITIONS}

    def counts_line(self) -> str:
        c = self.counts
        return (f"ok {c.get('ok', 0)}, warn {c.get('warn', 0)}, fail {c.get('fail', 0)}, "
                f"error {c.get('error', 0)}, missing {self.missing} of {self.planned} pairs")
