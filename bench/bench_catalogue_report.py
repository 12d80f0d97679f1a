"""How long ``gpvton report`` takes on a catalogue: a night's change and ``--all``, at 20k and 200k pairs.

    python bench/bench_catalogue_report.py [--sizes 20000,200000] [--change 2000] [--page-size 100]
                                           [--thumb-pages 3] [--workers 8] [--out FILE] [--keep]

For each size it fabricates a catalogue job (tests/pipelines/gpvton_synthetic_job.py: the index,
change list, work area and renders of a real run; one shared small JPEG per render) and times

* ``all_cold``: ``report --all`` into an empty folder (every page, the worst pages' and every
  fail / error row's thumbnails);
* ``all_rerun``: the same again, nothing changed (writes no page and no thumbnail);
* then a second night re-renders ``--change`` pairs (flags drawn anew) and
  ``changes_cold`` / ``changes_rerun``: the default report (tonight's changes only);
* ``all_after_change``: ``report --all`` again, rewriting only pages whose rows moved.

Each timing is the report itself, in process (imports done before); the JSON also carries the
files written and thumbnails made. Results: ``bench/results/catalogue_report.json`` with
bench/sysinfo.py's machine block. Run it alone on the machine (other work skews every number);
the fabricated jobs at 200k pairs need about 2 GB of disk under ``$TMPDIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "pipelines"))


def _report(job: Path, page_size: int, thumb_pages: int, workers: int, all_pairs: bool) -> dict:
    from pipelines.report.job import ReportConfig, build_report

    cfg = ReportConfig(job=str(job), all=all_pairs, page_size=page_size, thumb_pages=thumb_pages,
                       workers=workers, fail_limit=1.0)
    t = time.perf_counter()
    s = build_report(cfg)
    return {"seconds": round(time.perf_counter() - t, 3), "pairs": s["pairs"], "views": s["views"],
            "files_written": s["files"]["written"], "files_deleted": s["files"]["deleted"],
            "thumbnail_rows": s["thumbnails"]["rows"], "thumbnails_made": s["thumbnails"]["made"]}


def bench_size(root: Path, pairs: int, change: int, args: argparse.Namespace) -> dict:
    import numpy as np
    import pyarrow as pa

    from gpvton_synthetic_job import bulk_pairs, write_job

    persons = 200 if pairs >= 2000 else max(1, pairs // 10)
    garments = max(1, pairs // persons)
    job, shards = root / f"job-{pairs}", root / f"shards-{pairs}"
    table = bulk_pairs(persons, garments, seed=0)
    t = time.perf_counter()
    write_job(str(job), str(shards), table, images="shared", unit_size=2000, max_failed_fraction=0.05)
    fabricate = time.perf_counter() - t
    res = {"pairs": table.num_rows, "persons": persons, "garments": garments,
           "fabricate_seconds": round(fabricate, 2)}
    kw = dict(page_size=args.page_size, thumb_pages=args.thumb_pages, workers=args.workers)
    res["all_cold"] = _report(job, all_pairs=True, **kw)
    res["all_rerun"] = _report(job, all_pairs=True, **kw)

    rng = np.random.default_rng(1)
    pick = np.sort(rng.choice(table.num_rows, size=min(change, table.num_rows), replace=False))
    redraw = bulk_pairs(persons, garments, seed=1).take(pa.array(pick))
    t = time.perf_counter()
    write_job(str(job), str(shards), redraw, images="shared", unit_size=2000, max_failed_fraction=0.05)
    res["change"] = {"pairs": len(pick), "fabricate_seconds": round(time.perf_counter() - t, 2)}
    res["changes_cold"] = _report(job, all_pairs=False, **kw)
    res["changes_rerun"] = _report(job, all_pairs=False, **kw)
    res["all_after_change"] = _report(job, all_pairs=True, **kw)
    if not args.keep:
        shutil.rmtree(job, ignore_errors=True)
        shutil.rmtree(shards, ignore_errors=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20000,200000", help="catalogue sizes in pairs, comma separated")
    ap.add_argument("--change", type=int, default=2000, help="pairs re-rendered by the second night")
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--thumb-pages", type=int, default=3)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "catalogue_report.json"))
    ap.add_argument("--keep", action="store_true", help="keep the fabricated jobs (printed path)")
    args = ap.parse_args()

    from sysinfo import finish, machine_info

    import matplotlib  # noqa: F401 - imported before the timings (the report's histograms)
    import pipelines.report.job  # noqa: F401

    machine = machine_info()
    root = Path(tempfile.mkdtemp(prefix="bench-catalogue-report-"))
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    runs = []
    for n in sizes:
        r = bench_size(root, n, args.change, args)
        runs.append(r)
        print(f"{r['pairs']} pairs: --all {r['all_cold']['seconds']:.2f}s cold, {r['all_rerun']['seconds']:.2f}s "
              f"rerun; {r['change']['pairs']}-pair change {r['changes_cold']['seconds']:.2f}s, rerun "
              f"{r['changes_rerun']['seconds']:.2f}s; --all after it {r['all_after_change']['seconds']:.2f}s",
              file=sys.stderr)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    result = {"machine": finish(machine),
              "setup": {"sizes": sizes, "change": args.change, "page_size": args.page_size,
                        "thumb_pages": args.thumb_pages, "workers": args.workers, "storage": "local disk",
                        "tmp": str(root) if args.keep else os.environ.get("TMPDIR", "/tmp")},
              "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
