"""Render pipeline efficiency: end-to-end pairs/s ÷ model-only pairs/s on the same CPUs.

    python bench/bench_render.py [--persons 12] [--garments 54] [--size 256] [--width 0.25]
                                 [--precision auto] [--actors 2]

* **model-only**: the same networks (same width, seed, precision, one thread) on the same cross
  product, inputs already decoded in memory: encode every garment and person once, then decode +
  assemble + generate every pair in batches. No shard reads, no scores, no composition, no image
  encoding, no writes, no Ray. Measured in ``--actors`` processes at once (one thread each, the
  way the actors run), so the reference uses the same CPUs as the end-to-end run.
* **end-to-end**: ``run_job`` on Ray (Ray already initialised, so ``ray.init`` is not counted;
  planning, actor start-up and model construction are), writing images, scores Parquet and
  markers; 1 actor and ``--actors`` actors.
* ``pipeline_efficiency`` = e2e(``--actors``) ÷ model-only(``--actors`` processes) (goal ≥ 0.9 at
  width 0.25); ``pipeline_efficiency_1_actor`` the same with one; ``actor_speedup`` = e2e(N) ÷ e2e(1);
  ``pipeline_efficiency_steady`` leaves out planning and start-up (first unit read → last unit
  computed, from the units' markers). ``--rounds`` alternates model-only and end-to-end at N
  actors; the median round is reported (a shared VM's speed drifts by ±5 % over minutes).

Results: ``bench/results/render.json`` with bench/sysinfo.py's machine block. Run it alone on the
machine: anything else running distorts every number.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def model_only(shards: Path, variant: str, width: float, batch_size: int, threads: int, precision: str,
               start_at: float = 0.0) -> dict:
    import pyarrow.parquet as pq
    import torch

    from gpvton_core import inputs as gi
    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.inference import TryOnPipeline
    from gpvton_core.tryon_batches import GarmentInputs, PersonInputs
    from gpvton_core.rows import decode_garment_row, decode_person_row
    from gpvton_core.warp import LFGPWarp

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    warp, gen = LFGPWarp(variant, width).eval(), TryOnGenerator(width).eval()
    def rows(table: str) -> list[dict]:
        return [r for f in sorted((shards / table).glob("part-*.parquet")) for r in pq.read_table(f).to_pylist()]

    prow = [r for r in rows("persons") if "upper" in r["categories"]]
    grow = [r for r in rows("garments") if r["category"] == "upper"]
    P = [gi.person_inputs(r["person_id"], d["image"], d["parsing"], d["densepose"], d["keypoints"], "upper", variant)
         for r in prow for d in [decode_person_row(r)]]
    G = [gi.garment_inputs(r["garment_id"], d["image"], d["mask"], d["parts"], "upper", variant)
         for r in grow for d in [decode_garment_row(r)]]
    pipe = TryOnPipeline(warp, gen, resolution=tuple(P[0].inputs.image.shape[-2:]), precision=precision)
    while time.time() < start_at:   # parallel copies start together
        time.sleep(0.01)
    t0 = time.perf_counter()
    gb = pipe.encode_garments(GarmentInputs.cat(G))
    pb = pipe.encode_persons(PersonInputs.cat([p.inputs for p in P]))
    out = pipe.cross(gb, pb, batch_size=batch_size)
    pairs = range(len(out.tryon))
    el = time.perf_counter() - t0
    return {"pairs": len(pairs), "seconds": el, "pairs_per_second": len(pairs) / el, "precision": pipe.precision}


def model_only_parallel(shards: Path, n: int, width: float, batch_size: int, precision: str) -> dict:
    """``n`` single-thread model-only runs at once (separate processes, like ``n`` actors)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(n, mp_context=mp.get_context("spawn")) as ex:
        start_at = time.time() + 20.0   # time to import torch and build the networks in every process
        runs = list(ex.map(model_only, *zip(*[(shards, "vitonhd", width, batch_size, 1, precision, start_at)] * n)))
    return {"processes": n, "runs": runs, "pairs_per_second": sum(r["pairs_per_second"] for r in runs),
            "precision": runs[0]["precision"]}


def end_to_end(shards: Path, out: Path, actors: int, width: float, batch_size: int, unit_size: int,
               precision: str) -> dict:
    from infra.storage import Storage
    from pipelines.render import RenderConfig, run_job

    cfg = RenderConfig(shards=str(shards), output=str(out), runner="ray", actors=actors, num_cpus=1.0,
                       categories=["upper"], model={"variant": "vitonhd", "width": width},
                       batch_size=batch_size, unit_size=unit_size, progress=False, random_weights=True,
                       precision=precision)
    res = run_job(cfg)
    st = Storage(str(out))
    infos = [st.read_json(k) for k in st.list("scores", ".done")]
    # steady state: from the first unit's reading to the last unit's compute (no start-up, no planning)
    span = max(i["phases"]["compute"][1] for i in infos) - min(i["phases"]["prep"][0] for i in infos)
    compute = sum(i["phases"]["compute"][1] - i["phases"]["compute"][0] for i in infos)
    return {"actors": actors, "pairs": res.summary["pairs"], "seconds": res.summary["render_seconds"],
            "pairs_per_second": res.summary["pairs_per_second"], "steady_seconds": span,
            "steady_pairs_per_second": res.summary["pairs"] / span, "compute_seconds_per_pair": compute / res.summary["pairs"],
            "units": len(infos), "precision": st.read_json("job.json")["precision"]["resolved"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=12)
    ap.add_argument("--garments", type=int, default=54, help="catalogue garments (about 1/4 are upper)")
    ap.add_argument("--size", type=int, default=256, choices=[128, 256, 512])
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--unit-size", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3, help="model-only / end-to-end pairs at N actors")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "render.json"))
    args = ap.parse_args()

    import ray

    sys.path.insert(0, str(REPO / "bench"))
    from sysinfo import finish, machine_info

    from pipelines.demo import SIZES, build_shards
    from pipelines.synthetic.catalogue import make_catalogue

    machine = machine_info(threads=1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-render-"))
    h, w = SIZES[args.size]
    make_catalogue(tmp / "cat", n_garments=args.garments, n_persons=args.persons, height=h, width=w, seed=0)
    build_shards(tmp / "cat", tmp / "shards", args.size)
    n = args.actors
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=256 * 1024 * 1024)
    mo1 = model_only_parallel(tmp / "shards", 1, args.width, args.batch_size, args.precision)
    e1 = end_to_end(tmp / "shards", tmp / "job1", 1, args.width, args.batch_size, args.unit_size, args.precision)
    rounds = []   # model-only and end-to-end alternate, so that a slow spell of the machine hits both
    for r in range(args.rounds):
        mon = model_only_parallel(tmp / "shards", n, args.width, args.batch_size, args.precision)
        en = end_to_end(tmp / "shards", tmp / f"job{n}-{r}", n, args.width, args.batch_size, args.unit_size,
                        args.precision)
        rounds.append({"model_only": mon, "end_to_end": en,
                       "pipeline_efficiency": en["pairs_per_second"] / mon["pairs_per_second"],
                       "pipeline_efficiency_steady": en["steady_pairs_per_second"] / mon["pairs_per_second"]})
    ray.shutdown()
    from statistics import median

    result = {
        "machine": finish(machine),
        "setup": {"resolution": [h, w], "width": args.width, "variant": "vitonhd", "batch_size": args.batch_size,
                  "unit_size": args.unit_size, "threads_per_actor": 1, "pairs": mo1["runs"][0]["pairs"],
                  "actors": n, "precision": e1["precision"], "rounds": args.rounds,
                  "note": "random-init networks at the given width (official width is far too slow on 2 CPU cores)"},
        "model_only_1": mo1, "end_to_end_1_actor": e1, "rounds": rounds,
        "pipeline_efficiency": median(r["pipeline_efficiency"] for r in rounds),
        "pipeline_efficiency_rounds": [r["pipeline_efficiency"] for r in rounds],
        "pipeline_efficiency_steady": median(r["pipeline_efficiency_steady"] for r in rounds),
        "pipeline_efficiency_1_actor": e1["pairs_per_second"] / mo1["pairs_per_second"],
        "actor_speedup": rounds[0]["end_to_end"]["pairs_per_second"] / e1["pairs_per_second"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("pipeline_efficiency", "pipeline_efficiency_rounds",
                                             "pipeline_efficiency_1_actor", "pipeline_efficiency_steady",
                                             "actor_speedup")}, indent=2))
    for r in rounds:
        print(f"{n} actors: model-only {r['model_only']['pairs_per_second']:.2f} pairs/s, "
              f"end-to-end {r['end_to_end']['pairs_per_second']:.2f}")
    print(f"1 actor: model-only {mo1['pairs_per_second']:.2f}, end-to-end {e1['pairs_per_second']:.2f} → {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
