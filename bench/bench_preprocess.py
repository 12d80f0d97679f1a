"""Preprocess throughput: items per second per core for persons and garments at 512×384.

    python bench/bench_preprocess.py [--shared ../shared/data] [--repeat 3] [--out bench/results/preprocess.json]

Runs the per-item derivation (read → decode → derive → PNG encode, exactly what a Beam worker
does per element) in this process with one torch thread, on the VITON-HD and Dress Code samples:

* persons/vitonhd: release parsing or LIP-derived parsing, DensePose inverted from the colour
  rendering, pc_ratio (which re-derives the worn garment's parts);
* persons/dresscode: ATR-derived parsing, grey DensePose, pc_ratio;
* garments: given or white-background mask, shape-based parts.

Beam's own overhead (start-up, shuffles, Parquet writes) is measured separately by running the
whole pipeline once in-process on the same inputs (``pipeline_items_per_s``, 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from sysinfo import finish, machine_info  # noqa: E402  (CPU model, bf16 flags, threads, torch, load)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("GPVTON_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "preprocess.json"))
    ap.add_argument("--no-pipeline", action="store_true", help="skip the end-to-end Beam run")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from pipelines.preprocess.derive import derive_item
    from pipelines.preprocess.readers import read_inputs

    machine = machine_info(1)
    shared = Path(args.shared)
    inputs = [("vitonhd", str(shared / "vitonhd")), ("dresscode", str(shared / "dresscode"))]
    items = read_inputs(inputs)

    def read(url: str) -> bytes:
        with open(url, "rb") as fh:
            return fh.read()

    groups = {"persons/vitonhd": [], "persons/dresscode": [], "garments": []}
    for it in items:
        key = "garments" if it["kind"] == "garment" else f"persons/{it['source']}"
        groups[key].append(it)
    derive_item(items[0], read, 512)          # warm-up (imports, allocator)
    results = {}
    groups["persons"] = groups["persons/vitonhd"] + groups["persons/dresscode"]
    for key, group in groups.items():
        rates, cpu_rates = [], []
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            for it in group:
                derive_item(it, read, 512)
            rates.append(len(group) / (time.perf_counter() - t0))
            cpu_rates.append(len(group) / (time.process_time() - c0))
        # wall-clock rate (one process, one torch thread) and the rate per CPU-second, which
        # does not drop when other processes share the cores
        results[key] = {"items": len(group), "items_per_s_per_core": round(statistics.median(rates), 3),
                        "items_per_cpu_s": round(statistics.median(cpu_rates), 3),
                        "ms_per_item": round(1000 / statistics.median(rates), 1)}

    if not args.no_pipeline:
        import logging

        logging.disable(logging.WARNING)
        from pipelines.preprocess.beam_pipeline import PipelineSpec, run_pipeline

        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            r = run_pipeline(PipelineSpec(items=items, output=tmp + "/shards"))
            wall = time.perf_counter() - t0
        results["pipeline"] = {"items": len(items), "seconds": round(wall, 2),
                               "items_per_s": round(len(items) / wall, 3), "cores": os.cpu_count(),
                               "runner": "FnApiRunner", "counts": r["counts"]}

    report = {"machine": finish(machine), "resolution": "512x384", "torch_threads": 1, "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
