"""``JOB/summary.json`` and the render's last lines, from the index manifest and the run's change list.

The counts and fractions are :class:`pipelines.outcome.Outcome`'s, the same as the report's.
"""

from __future__ import annotations

import time

from pipelines.outcome import Outcome
from pipelines.render.config import RenderConfig


def summarise(folder, delta, index_meta: dict, run_id: str, lost: list[dict], run_elapsed: float, rendered: int,
              started: float, cfg: RenderConfig, model_note: str, committed: bool, units: int = 0) -> dict:
    """The run's summary: the catalogue's outcome (from the index manifest's counts), this run's
    changes and change list, speed, and the run's worst pairs (from its change list)."""
    outcome = Outcome(planned=len(delta.pairs), counts=dict(index_meta.get("counts") or {}))
    changed = index_meta.get("changed_rows")
    worst = []
    if committed and changed is not None and changed.num_rows:
        rows = [r for r in changed.to_pylist() if r["change"] != "retired" and r["flag"] in ("error", "fail")]
        rows.sort(key=lambda r: (r["flag"] != "error", r["warp_miou"] if r["warp_miou"] is not None else 0))
        worst = rows[:50]
    return {
        **outcome.as_dict(),
        "run_id": run_id,
        "changes": delta.changes(),
        "changes_by_category": delta.by_category,
        "change_list": index_meta.get("change_list") if committed else None,
        "max_unrendered_fraction": cfg.max_unrendered_fraction, "max_failed_fraction": cfg.max_failed_fraction,
        "exit_code": 1 if outcome.unrendered_fraction > cfg.max_unrendered_fraction else 0,
        "units": units,
        "units_lost": [r["unit_id"] for r in lost],
        "lost_errors": [r.get("error") for r in lost][:20],
        "pairs_rendered_this_run": rendered,
        "pairs_per_second": rendered / run_elapsed if rendered and run_elapsed > 0 else None,
        "measured_pairs_per_second": index_meta.get("pairs_per_second"),
        "elapsed_seconds": time.time() - started, "render_seconds": run_elapsed,
        "model_note": model_note,
        "failures": [{k: r.get(k) for k in ("person_id", "garment_id", "category", "flag", "reason", "error")}
                     for r in worst],
    }


def final_lines(summary: dict, job_url: str) -> list[str]:
    """What a render prints last: where, how fast, then the counts, the exit code and what to do next."""
    outcome = Outcome(planned=summary["pairs"], counts=summary["counts"])
    code = summary["exit_code"]
    ch = summary.get("changes") or {}
    speed = summary.get("pairs_per_second")
    lines = [f"render: {summary['pairs_rendered_this_run']} pairs rendered this run"
             + (f" ({speed:.2f} pairs/s)" if speed else "") + f"; job {job_url}",
             f"render: changes: {ch.get('added', 0)} added, {ch.get('updated', 0)} updated, "
             f"{ch.get('retried', 0)} re-attempted, {ch.get('retired', 0)} retired, {ch.get('unchanged', 0)} unchanged"
             + (f"; change list {summary['change_list']}" if summary.get("change_list") else "")]
    last = (f"render: {outcome.counts_line()}; unrendered {outcome.unrendered_fraction:.3f} "
            f"(limit {summary['max_unrendered_fraction']}) → exit {code}")
    if summary["units_lost"]:
        last += f"; {len(summary['units_lost'])} units lost: gpvton status {job_url}"
    if outcome.counts.get("fail", 0) or outcome.counts.get("error", 0):
        last += (f"; QA: failed {outcome.failed_fraction:.3f} (limit {summary['max_failed_fraction']}), "
                 f"see gpvton report --job {job_url}")
    lines.append(last)
    return lines
