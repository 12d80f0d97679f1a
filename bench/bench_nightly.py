"""A nightly delta against the same pairs rendered as a job of their own.

    python bench/bench_nightly.py --garments 60 --persons 12 --change 0.02 --out bench/results/nightly.json

Night 1 renders a generated catalogue (random-weight networks, 128×96, the in-process runner);
night 2 changes the photos of about ``--change`` of the pairs' garments and renders into the same
output (the incremental path: plan, diff against the index, units over the changes, commit, change
list). The reference renders exactly night 2's changed pairs into a fresh output. The ratio
night 2 / reference is the catalogue's bookkeeping overhead on a real delta (target ≤ 1.1).
Rounds alternate (night 2 then the reference, twice). Run alone on the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from sysinfo import finish, machine_info  # noqa: E402


def keyed(src: Path, dst: Path, changed: set[str]) -> None:
    """A copy of the shards whose rows carry content keys; ``changed`` garments get a new photo."""
    from PIL import Image, ImageOps

    from infra.shards import ShardSet

    shutil.rmtree(dst, ignore_errors=True)
    shards = ShardSet(str(src))
    for table in ("persons", "garments", "errors"):
        t = shards.read_table(table)
        rows = t.to_pylist()
        for r in rows:
            if table == "garments" and r["garment_id"] in changed:
                buf = io.BytesIO()
                ImageOps.mirror(Image.open(io.BytesIO(r["image_png"]))).save(buf, format="PNG")
                r["image_png"] = buf.getvalue()
            if table != "errors":
                r["content_key"] = hashlib.sha256(r["image_png"]).hexdigest()[:32]
        (dst / table).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), dst / table / "part-00000.parquet")
    manifest = dict(shards.manifest)
    manifest.pop("parts", None)
    (dst / "manifest.json").write_text(json.dumps(manifest))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--garments", type=int, default=60)
    ap.add_argument("--persons", type=int, default=12)
    ap.add_argument("--change", type=float, default=0.02)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()
    from pipelines.demo import build_shards
    from pipelines.render import RenderConfig, run_job
    from pipelines.synthetic.catalogue import make_catalogue

    result = {"machine": machine_info(), "args": vars(args)}
    base = dict(runner="local", random_weights=True, model={"width": 0.0625}, unit_size=16, batch_size=4,
                progress=False, max_unrendered_fraction=1.0)
    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as tmp:
        tmp = Path(tmp)
        make_catalogue(tmp / "cat", n_garments=args.garments, n_persons=args.persons, height=128, width=96, seed=3)
        build_shards(tmp / "cat", tmp / "raw", 128)
        keyed(tmp / "raw", tmp / "night1", set())
        night1 = tmp / "night1"
        t0 = time.perf_counter()
        first = run_job(RenderConfig(shards=str(night1), output=str(tmp / "job0"), **base))
        result["night1"] = {"pairs": first.summary["pairs"], "seconds": round(time.perf_counter() - t0, 2)}
        garments = pq.read_table(night1 / "garments" / "part-00000.parquet", columns=["garment_id"]).column(0)
        n_change = max(1, round(args.garments * args.change))
        changed = set(sorted(garments.to_pylist())[:: max(1, args.garments // n_change)][:n_change])
        keyed(tmp / "raw", tmp / "night2", changed)
        rounds = []
        for r in range(args.rounds):
            job = tmp / f"job{r}"
            if r:
                shutil.copytree(tmp / "job0-night1", job)
            else:
                shutil.copytree(job, tmp / "job0-night1")       # night 1's state, for the next round
            t0 = time.perf_counter()
            night2 = run_job(RenderConfig(shards=str(tmp / "night2"), output=str(job), **base))
            t_night = time.perf_counter() - t0
            t0 = time.perf_counter()
            ref = run_job(RenderConfig(shards=str(tmp / "night2"), output=str(tmp / f"ref{r}"),
                                       garments={"include": sorted(changed)}, **base))
            t_ref = time.perf_counter() - t0
            assert night2.summary["pairs_rendered_this_run"] == ref.summary["pairs_rendered_this_run"]
            rounds.append({"changes": night2.summary["changes"], "pairs": night2.summary["pairs_rendered_this_run"],
                           "night2_seconds": round(t_night, 2), "reference_seconds": round(t_ref, 2),
                           "ratio": round(t_night / t_ref, 3)})
            print(json.dumps(rounds[-1]), flush=True)
        result["rounds"] = rounds
        result["ratio_median"] = sorted(x["ratio"] for x in rounds)[len(rounds) // 2]
    finish(result["machine"])
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
