"""The QA gate of a report: failed = fail + error + missing (:class:`pipelines.outcome.Outcome`) over
the scope's planned pairs, against ``--fail-limit``, else the job's ``config.max_failed_fraction``,
else 0.05. The report exits 1 above the limit (it is written either way)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional

from pipelines.outcome import Outcome
from pipelines.report.ordering import FLAG_ORDER
from pipelines.report.scope import finite

DEFAULT_FAIL_LIMIT = 0.05


def fail_limit(given: Optional[float], meta: dict) -> tuple[float, str]:
    """(the limit, where it came from): ``--fail-limit``, the job's config, or the default."""
    if given is not None:
        return given, "--fail-limit"
    job_limit = (meta.get("config") or {}).get("max_failed_fraction")
    return (float(job_limit), "job config max_failed_fraction") if finite(job_limit) else (DEFAULT_FAIL_LIMIT,
                                                                                           "default")


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    limit: float
    limit_source: str

    @property
    def success(self) -> bool:
        return self.outcome.failed_fraction <= self.limit


def judge(flags: list[str], planned: int, given_limit: Optional[float], meta: dict) -> Verdict:
    """The gate over the scope's rows (``flags``) and the pairs it was to cover (``planned``;
    rows beyond it count as planned too)."""
    counts = Counter(flags)
    outcome = Outcome(planned=max(planned, len(flags)), counts={f: counts.get(f, 0) for f in FLAG_ORDER})
    limit, source = fail_limit(given_limit, meta)
    return Verdict(outcome, limit, source)
