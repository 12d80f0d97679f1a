"""``gpvton status JOB``: what a render job has done so far, from its files alone.

    gpvton status JOB [--errors N] [--log-lines N] [--json] [--change-list]

Reads ``JOB/job.json``, the index manifest (the catalogue's counts and error messages), the work
area (``JOB/plan/``, the done-markers under ``JOB/scores/``, which carry their counts),
``JOB/summary.json`` and ``JOB/logs/`` — small files only, never a score file — so it works while
a job runs, after it crashed, on ``s3://`` jobs, and at 10M pairs. It prints the catalogue's pair
counts (the same :class:`pipelines.outcome.Outcome` as render and report), the run in progress or
the last run (units planned / done / lost, its changes), the error messages and the last lines of
every log file.

Exit codes: 0 the last run is committed and the catalogue's unrendered fraction is within the
job's limit; 1 a run is in progress or stopped (units missing), or the job is over its limit;
2 no job at the URL.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from collections import Counter
from typing import Any

from pipelines.config import StorageURL, StrictModel, UserError, load_config
from pipelines.outcome import FLAGS, Outcome

log = logging.getLogger("gpvton.status")


class StatusConfig(StrictModel):
    job: StorageURL
    errors: int = 10
    log_lines: int = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="render job URL (the --output of gpvton render)")
    parser.add_argument("--errors", type=int, default=10, help="error messages to show (default 10)")
    parser.add_argument("--log-lines", type=int, default=5, help="last lines of each log file (default 5)")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--change-list", action="store_true",
                        help="print only the URL of the last run's change list (for a publishing step)")


def job_status(cfg: StatusConfig) -> dict[str, Any]:
    """The job's state as plain data (what ``--json`` prints), from small files only: job.json,
    the index manifest (the catalogue's counts), the work area's run.json, units and done-markers
    (a run in progress or stopped), summary.json and the log tails — never a score file."""
    import pyarrow.parquet as pq

    from infra.jobfolder import JobFolder

    folder = JobFolder(cfg.job)
    meta = folder.read_json("job.json")
    if meta is None:
        raise UserError(f"no render job at {folder.root} (job.json not found): pass the --output of 'gpvton render'")
    index = folder.index_manifest()
    state = folder.run_state()
    summary = folder.summary()
    in_progress = bool(state) and state.get("run_id") != index.get("run_id")
    planned: dict[int, int] = {}
    done: dict[int, dict] = {}
    if state:
        try:
            units = pq.read_table(io.BytesIO(folder.storage.read_bytes("plan/units.parquet")),
                                  columns=["unit_id", "pairs"])
            planned = {int(u): len(p) for u, p in zip(units.column("unit_id").to_pylist(),
                                                      units.column("pairs").to_pylist())}
        except FileNotFoundError:
            planned = {}
        done = folder.done_units()
    reasons: Counter[str] = Counter(index.get("error_reasons") or {})
    run_counts: Counter[str] = Counter()
    for info in done.values():
        run_counts.update(info.get("counts") or {})
        if in_progress:
            reasons.update(info.get("error_reasons") or {})
    outcome = Outcome(planned=int(meta.get("pairs") or index.get("plan_pairs") or 0),
                      counts=dict(index.get("counts") or {}))
    lost_last_run = [u for u in summary.get("units_lost", []) if u not in done] if summary else []
    limit = float((meta.get("config") or {}).get("max_unrendered_fraction", 0.05))
    logs = {}
    for key in folder.storage.list("logs", ".log"):
        try:
            lines = folder.storage.read_bytes(key).decode("utf-8", "replace").splitlines()
        except Exception as exc:  # noqa: BLE001 - a log being rewritten right now
            lines = [f"(cannot read: {exc})"]
        logs[key] = lines[-cfg.log_lines:] if cfg.log_lines > 0 else []
    not_done = sorted(set(planned) - set(done))
    complete = not in_progress and bool(index)
    return {
        "job": folder.root, "model_key": meta.get("model_key"), "created": meta.get("created"),
        "updated": meta.get("updated"), "model_note": meta.get("model_note"),
        "run": {"run_id": (state or {}).get("run_id") or index.get("run_id"),
                "in_progress": in_progress, "started": (state or {}).get("started"),
                "counts": {f: run_counts.get(f, 0) for f in FLAGS}},
        "units": {"planned": len(planned), "done": len(set(done) & set(planned)),
                  "not_done": not_done if in_progress or lost_last_run else [],
                  "failed_last_run": lost_last_run},
        "index": {"generation": index.get("generation"), "rows": index.get("rows", 0),
                  "committed": index.get("committed"), "parts": len(index.get("parts") or {})},
        **outcome.as_dict(),
        "max_unrendered_fraction": limit,
        "max_failed_fraction": (meta.get("config") or {}).get("max_failed_fraction"),
        "errors": [{"message": m, "pairs": n} for m, n in reasons.most_common(cfg.errors)],
        "error_messages": len(reasons),
        "lost_errors": summary.get("lost_errors", []) if lost_last_run else [],
        "last_run": {k: summary.get(k) for k in ("run_id", "exit_code", "elapsed_seconds", "pairs_rendered_this_run",
                                                 "pairs_per_second", "changes", "change_list")} if summary else None,
        "logs": logs,
        "complete": complete,
        "exit_code": 0 if complete and outcome.unrendered_fraction <= limit else 1,
    }


def print_status(st: dict[str, Any]) -> None:
    u = st["units"]
    run = st["run"]
    outcome = Outcome(planned=st["pairs"], counts=st["counts"])
    print(f"job {st['job']} (model {st['model_key']}, created {st['created']}, updated {st['updated']})")
    if st["model_note"]:
        print(f"  model: {st['model_note']}")
    ix = st["index"]
    print(f"catalogue: {ix['rows']} pairs rendered of {st['pairs']} planned (index generation {ix['generation']}, "
          f"{ix['parts']} parts, committed {ix['committed']})")
    not_done = u["not_done"]
    state = "in progress or stopped" if run["in_progress"] else "committed"
    print(f"run {run['run_id']} ({state}): units: {u['planned']} planned, {u['done']} done, {len(not_done)} not done"
          + (f" ({', '.join(map(str, not_done[:10]))}{', …' if len(not_done) > 10 else ''})" if not_done else "")
          + (f"; failed in the last run: {', '.join(map(str, u['failed_last_run']))}" if u["failed_last_run"] else ""))
    for e in st["lost_errors"][:5]:
        print(f"  unit error: {e}")
    print(f"pairs: {outcome.counts_line()}")
    print(f"  unrendered {st['unrendered_fraction']:.3f} (limit {st['max_unrendered_fraction']}), "
          f"failed {st['failed_fraction']:.3f} (QA limit {st['max_failed_fraction']}: gpvton report)")
    if st["errors"]:
        print(f"errors: {sum(e['pairs'] for e in st['errors'])} pairs, {st['error_messages']} distinct messages")
        for e in st["errors"]:
            print(f"  {e['pairs']:>5} × {e['message']}")
    last = st["last_run"]
    if last is None:
        print("last run: no summary.json yet (running, or stopped before the end)")
    else:
        ch = last.get("changes") or {}
        print(f"last run: exit {last['exit_code']}, {last['pairs_rendered_this_run']} pairs rendered in "
              f"{last['elapsed_seconds'] or 0:.0f} s; changes: " + ", ".join(f"{k} {v}" for k, v in ch.items()))
    for key, lines in st["logs"].items():
        print(f"{key}:")
        for line in lines:
            print(f"  {line}")
    if not st["logs"]:
        print("logs: none under logs/")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(StatusConfig, None, {"job": args.job, "errors": args.errors, "log_lines": args.log_lines})
    if getattr(args, "change_list", False):
        from infra.jobfolder import JobFolder

        folder = JobFolder(cfg.job)
        key = (folder.summary() or {}).get("change_list")
        if not key:
            raise UserError(f"{folder.root} has no change list yet (no render run has finished)")
        print(folder.url(key))
        return 0
    st = job_status(cfg)
    if args.json:
        print(json.dumps(st, indent=2, default=str))
    else:
        print_status(st)
    return int(st["exit_code"])
