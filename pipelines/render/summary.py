"""``JOB/summary.json`` and the render's last line, from every completed score file.

The counts and fractions are :class:`pipelines.outcome.Outcome`'s, the same as the report's.
"""

from __future__ import annotations

import io
import time
from typing import Any

from pipelines.outcome import Outcome
from pipelines.render.config import RenderConfig


def read_scores(job) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from infra.schema import SCORES

    tables = [pq.read_table(io.BytesIO(job.read_bytes(key))) for key in job.iter_done("scores")]
    return pa.concat_tables(tables) if tables else SCORES.empty_table()


def summarise(job, units: list[dict], lost: list[dict], run_elapsed: float, rendered: int, started: float,
              cfg: RenderConfig, model_note: str, skipped: int) -> dict:
    scores = read_scores(job)
    outcome = Outcome.from_flags(scores.column("flag").to_pylist(), sum(len(u["pairs"]) for u in units))
    rows = scores.to_pylist()
    worst = [r for r in rows if r["flag"] in ("error", "fail")]
    worst.sort(key=lambda r: (r["flag"] != "error", r["warp_miou"] if r["warp_miou"] is not None else 0))
    return {
        **outcome.as_dict(),
        "max_unrendered_fraction": cfg.max_unrendered_fraction, "max_failed_fraction": cfg.max_failed_fraction,
        "exit_code": 1 if outcome.unrendered_fraction > cfg.max_unrendered_fraction else 0,
        "units": len(units), "units_skipped_done": skipped, "units_lost": [r["unit_id"] for r in lost],
        "lost_errors": [r.get("error") for r in lost][:20],
        "pairs_rendered_this_run": rendered,
        "pairs_per_second": rendered / run_elapsed if run_elapsed > 0 else 0.0,
        "elapsed_seconds": time.time() - started, "render_seconds": run_elapsed,
        "model_note": model_note,
        "failures": [{k: r[k] for k in ("unit_id", "person_id", "garment_id", "category", "flag", "reason", "error")}
                     for r in worst[:50]],
    }


def final_lines(summary: dict, job_url: str) -> list[str]:
    """What a render prints last: where, how fast, then the counts, the exit code and what to do next."""
    outcome = Outcome(planned=summary["pairs"], counts=summary["counts"])
    code = summary["exit_code"]
    lines = [f"render: {summary['pairs_rendered_this_run']} pairs rendered this run "
             f"({summary['pairs_per_second']:.2f} pairs/s); job {job_url}"]
    last = (f"render: {outcome.counts_line()}; unrendered {outcome.unrendered_fraction:.3f} "
            f"(limit {summary['max_unrendered_fraction']}) → exit {code}")
    if summary["units_lost"]:
        last += f"; {len(summary['units_lost'])} units lost: gpvton status {job_url}"
    if outcome.counts.get("fail", 0) or outcome.counts.get("error", 0):
        last += (f"; QA: failed {outcome.failed_fraction:.3f} (limit {summary['max_failed_fraction']}), "
                 f"see gpvton report --job {job_url}")
    lines.append(last)
    return lines
