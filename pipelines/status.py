"""``gpvton status JOB``: what a render job has done so far, from its files alone.

    gpvton status JOB [--errors N] [--log-lines N] [--json]

Reads ``JOB/job.json``, ``JOB/plan/units.parquet``, the done markers and score files under
``JOB/scores/``, ``JOB/summary.json`` (written at the end of each run) and ``JOB/logs/``, so it
works while a job runs, after it crashed, and on ``s3://`` jobs. It prints the planned / done /
failed units, the pair counts (the same :class:`pipelines.outcome.Outcome` as render and report),
the error rows with their messages and the last lines of every log file.

Exit codes: 0 every planned unit is done and the unrendered fraction is within the job's limit;
1 units are missing (running, lost or crashed) or the job is over its limit; 2 no job at the URL.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from collections import Counter
from typing import Any

from pipelines.config import StorageURL, StrictModel, UserError, load_config
from pipelines.outcome import Outcome

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


def job_status(cfg: StatusConfig) -> dict[str, Any]:
    """The job's state as plain data (what ``--json`` prints)."""
    import pyarrow.parquet as pq

    from infra.storage import Storage

    job = Storage(cfg.job)
    if not job.exists("job.json"):
        raise UserError(f"no render job at {job.root} (job.json not found): pass the --output of 'gpvton render'")
    meta = job.read_json("job.json")
    planned: dict[int, int] = {}
    if job.exists("plan/units.parquet"):
        units = pq.read_table(io.BytesIO(job.read_bytes("plan/units.parquet")), columns=["unit_id", "pairs"])
        planned = {int(u): len(p) for u, p in zip(units.column("unit_id").to_pylist(),
                                                  units.column("pairs").to_pylist())}
    summary = job.read_json("summary.json") if job.exists("summary.json") else {}
    done_keys = list(job.iter_done("scores"))
    done = {int(k.rsplit("unit-", 1)[1].split(".")[0]) for k in done_keys}
    flags: list[str] = []
    errors: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for key in done_keys:
        t = pq.read_table(io.BytesIO(job.read_bytes(key)),
                          columns=["person_id", "garment_id", "category", "flag", "error"])
        for r in t.to_pylist():
            flags.append(r["flag"])
            if r["flag"] == "error":
                msg = (r["error"] or "").strip().splitlines()[0] if r["error"] else "(no message)"
                errors[msg] += 1
                examples.setdefault(msg, f"{r['category']} {r['person_id']} × {r['garment_id']}")
    outcome = Outcome.from_flags(flags, sum(planned.values()) or int(meta.get("pairs") or 0))
    lost_last_run = [u for u in summary.get("units_lost", []) if u not in done]
    limit = float((meta.get("config") or {}).get("max_unrendered_fraction", 0.05))
    logs = {}
    for key in job.list("logs", ".log"):
        try:
            lines = job.read_bytes(key).decode("utf-8", "replace").splitlines()
        except Exception as exc:  # noqa: BLE001 - a log being rewritten right now
            lines = [f"(cannot read: {exc})"]
        logs[key] = lines[-cfg.log_lines:] if cfg.log_lines > 0 else []
    complete = bool(planned) and done >= set(planned)
    return {
        "job": job.root, "fingerprint": meta.get("fingerprint"), "created": meta.get("created"),
        "model_note": meta.get("model_note"),
        "units": {"planned": len(planned), "done": len(done & set(planned)),
                  "not_done": sorted(set(planned) - done), "failed_last_run": lost_last_run},
        **outcome.as_dict(),
        "max_unrendered_fraction": limit,
        "max_failed_fraction": (meta.get("config") or {}).get("max_failed_fraction"),
        "errors": [{"message": m, "pairs": n, "example": examples[m]} for m, n in errors.most_common(cfg.errors)],
        "error_messages": len(errors),
        "lost_errors": summary.get("lost_errors", []) if lost_last_run else [],
        "last_run": {k: summary.get(k) for k in ("exit_code", "elapsed_seconds", "pairs_rendered_this_run",
                                                 "pairs_per_second")} if summary else None,
        "logs": logs,
        "complete": complete,
        "exit_code": 0 if complete and outcome.unrendered_fraction <= limit else 1,
    }


def print_status(st: dict[str, Any]) -> None:
    u = st["units"]
    outcome = Outcome(planned=st["pairs"], counts=st["counts"])
    print(f"job {st['job']} (fingerprint {st['fingerprint']}, created {st['created']})")
    if st["model_note"]:
        print(f"  model: {st['model_note']}")
    not_done = u["not_done"]
    print(f"units: {u['planned']} planned, {u['done']} done, {len(not_done)} not done"
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
            print(f"  {e['pairs']:>5} × {e['message']}  (e.g. {e['example']})")
    run = st["last_run"]
    if run is None:
        print("last run: no summary.json yet (running, or stopped before the end)")
    else:
        print(f"last run: exit {run['exit_code']}, {run['pairs_rendered_this_run']} pairs rendered in "
              f"{run['elapsed_seconds'] or 0:.0f} s")
    for key, lines in st["logs"].items():
        print(f"{key}:")
        for line in lines:
            print(f"  {line}")
    if not st["logs"]:
        print("logs: none under logs/")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(StatusConfig, None, {"job": args.job, "errors": args.errors, "log_lines": args.log_lines})
    st = job_status(cfg)
    if args.json:
        print(json.dumps(st, indent=2, default=str))
    else:
        print_status(st)
    return int(st["exit_code"])
