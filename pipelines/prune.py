"""``gpvton prune JOB``: remove what the catalogue no longer serves.

    gpvton prune JOB [--keep-runs N] [--dry-run]

Renders are content-versioned (``renders/CAT/PERSON/GARMENT-VERSION.EXT``): an updated pair gets a
new image next to the old one, and a retired pair's image stays, so that a publisher working from
last night's change list never finds a file gone underneath it. Prune deletes every image (and
debug image) that the current index does not name, and the change lists and run summaries of
all but the last ``--keep-runs`` runs. It takes the job's lease (never beside a running render)
and refuses while a run is stopped half-way (its new images are not in the index yet: rerun the
render first).

Exit codes: 0 done (or nothing to prune), 2 no job at the URL, a lease held, or a stopped run.
"""

from __future__ import annotations

import argparse
import logging
import posixpath

from pipelines.config import StorageURL, StrictModel, UserError, load_config

log = logging.getLogger("gpvton.prune")


class PruneConfig(StrictModel):
    job: StorageURL
    keep_runs: int = 30
    dry_run: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="render job URL (the --output of gpvton render)")
    parser.add_argument("--keep-runs", type=int, default=30, help="change lists / run summaries kept (default 30)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be deleted; delete nothing")


def _stem(key: str) -> str:
    """``renders/c/p/g-v.jpg`` and ``debug/c/p/g-v.warped.png`` → ``c/p/g-v``."""
    rest = key.split("/", 1)[1]
    head, base = posixpath.split(rest)
    return posixpath.join(head, base.split(".", 1)[0])


def prune(cfg: PruneConfig) -> dict[str, int]:
    from infra.jobfolder import JobFolder
    from infra.lease import Lease, LeaseHeld

    folder = JobFolder(cfg.job)
    if folder.read_json("job.json") is None:
        raise UserError(f"no render job at {folder.root} (job.json not found)")
    lease = Lease(folder.storage, "lock.json", ttl_s=120.0, what="prune")
    try:
        lease.acquire()
    except LeaseHeld as exc:
        raise UserError(str(exc)) from None
    try:
        index = folder.index_manifest()
        state = folder.run_state()
        if state and state.get("run_id") != index.get("run_id"):
            raise UserError(f"run {state.get('run_id')} of {folder.root} stopped before it was committed: rerun "
                            f"'gpvton render' on it first (its images are not in the index yet)")
        keys = folder.read_index(["output_key"], index).column("output_key").to_pylist() if index else []
        current = {_stem(k) for k in keys if k}
        stale = [k for prefix in ("renders", "debug") for k in folder.storage.list(prefix) if _stem(k) not in current]
        runs = folder.change_lists()
        old_runs = runs[:max(0, len(runs) - max(0, cfg.keep_runs))]
        old_summaries = [f"runs/{posixpath.basename(k)[:-len('.parquet')]}.json" for k in old_runs]
        if not cfg.dry_run:
            for k in stale + old_runs:
                folder.storage.delete(k)
            for k in old_summaries:
                try:
                    folder.storage.delete(k)
                except FileNotFoundError:
                    pass
        return {"images": len(stale), "change_lists": len(old_runs), "kept_images": len(current)}
    finally:
        lease.release()


def run(args: argparse.Namespace) -> int:
    cfg = load_config(PruneConfig, None, {"job": args.job, "keep_runs": args.keep_runs, "dry_run": args.dry_run})
    out = prune(cfg)
    verb = "would delete" if cfg.dry_run else "deleted"
    print(f"prune: {verb} {out['images']} images no longer in the catalogue and {out['change_lists']} old change "
          f"lists; {out['kept_images']} current renders kept → {cfg.job}")
    return 0
