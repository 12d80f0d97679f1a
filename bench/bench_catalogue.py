"""The catalogue's bookkeeping at scale: no-op rerun, status and dry run over fabricated jobs.

    python bench/bench_catalogue.py --garments 10000 --persons 20 --out bench/results/catalogue_200k.json
    python bench/bench_catalogue.py --garments 10000 --persons 1000 --change 0.01 --skip noop,status
    python bench/bench_catalogue.py --garments 1000 --persons 20 --s3        # request counts on the S3 server

Shards (id columns, content keys, 1-pixel images) are written with the project's schemas; the job
is a finished catalogue in the render job's own format (index parts bucketed as ``JobFolder``
writes them, manifest, job.json with the model key the render computes), so ``gpvton render``
sees every pair as rendered. Each measurement runs the real CLI in a fresh process (wall time
and peak RSS of that process). With ``--s3`` the shards and the job live on the project's moto
server and the requests of each command are counted by method. Run alone on the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from sysinfo import finish, machine_info  # noqa: E402

H, W = 128, 96
WIDTH = 0.0625
PART_ROWS = 5000


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    return buf.getvalue()


def _key(kind: str, i: int, salt: str = "") -> str:
    return hashlib.sha256(f"{kind}{i}{salt}".encode()).hexdigest()[:32]


def write_shards(storage, n_garments: int, n_persons: int, changed: set[int]) -> None:
    """persons / garments parts (upper only) through the schemas in infra/schema.py."""
    from infra.schema import GARMENTS, PERSONS

    png = _png()
    for name, n, schema in (("persons", n_persons, PERSONS), ("garments", n_garments, GARMENTS)):
        schema = schema if "content_key" in schema.names else schema.append(pa.field("content_key", pa.string()))
        parts = []
        for start in range(0, n, PART_ROWS):
            ids = list(range(start, min(n, start + PART_ROWS)))
            m = len(ids)
            cols = {}
            for f in schema:
                if f.name == "person_id" or f.name == "garment_id":
                    cols[f.name] = [f"{name[0]}{i:07d}" for i in ids]
                elif f.name == "content_key":
                    cols[f.name] = [_key(name, i, "v2" if name == "garments" and i in changed else "") for i in ids]
                elif f.name == "categories":
                    cols[f.name] = [["upper"]] * m
                elif f.name == "category":
                    cols[f.name] = ["upper"] * m
                elif f.name in ("height", "photo_height"):
                    cols[f.name] = [H] * m
                elif f.name in ("width", "photo_width"):
                    cols[f.name] = [W] * m
                elif f.name == "keypoints":
                    cols[f.name] = [[0.0] * 75] * m
                elif pa.types.is_binary(f.type):
                    cols[f.name] = [png] * m
                elif f.name in ("source", "source_uri", "provenance"):
                    cols[f.name] = ["bench"] * m if f.name != "provenance" else ["{}"] * m
                else:
                    cols[f.name] = [None] * m
            key = f"{name}/part-{len(parts):05d}.parquet"
            buf = io.BytesIO()
            pq.write_table(pa.table(cols, schema=schema), buf)
            storage.write_bytes(key, buf.getvalue())
            parts.append(key)
    errors_schema = __import__("infra.schema", fromlist=["ERRORS"]).ERRORS
    buf = io.BytesIO()
    pq.write_table(errors_schema.empty_table(), buf)
    storage.write_bytes("errors/part-00000.parquet", buf.getvalue())
    storage.write_json("manifest.json", {"resolution": H, "height": H, "width": W, "variant": "vitonhd"})


def write_job(job, shards_url: str, n_garments: int, n_persons: int) -> dict:
    """A finished catalogue: index bucket parts, manifest and job.json, in the render's format."""
    from infra.jobfolder import INDEX_PREFIX, _bucket_of, buckets_for, pair_version, unit_counts
    from infra.schema import FLAGS, INDEX
    from pipelines.render import RenderConfig
    from pipelines.render.model import model_inputs
    from pipelines.render.runtime import resolve_precision
    from infra.jobfolder import json_digest

    cfg = RenderConfig(shards=shards_url, output=job.root, random_weights=True, categories=["upper"],
                       model={"variant": "vitonhd", "width": WIDTH}, runner="local")
    prec = resolve_precision(cfg.precision, "cpu")["resolved"]
    model_key = json_digest(model_inputs(cfg, "vitonhd", {}, WIDTH, H, prec, True))
    pairs = n_garments * n_persons
    buckets = buckets_for(pairs)
    gids = [f"g{i:07d}" for i in range(n_garments)]
    by_bucket: dict[int, list[int]] = {}
    for i, g in enumerate(gids):
        by_bucket.setdefault(_bucket_of(g, buckets), []).append(i)
    pids = np.array([f"p{i:07d}" for i in range(n_persons)], dtype=object)
    pkeys = np.array([_key("persons", i) for i in range(n_persons)], dtype=object)
    parts = {}
    rng = np.random.default_rng(0)
    for b, gs in sorted(by_bucket.items()):
        g_arr = np.array([gids[i] for i in gs], dtype=object)
        gk_arr = np.array([_key("garments", i) for i in gs], dtype=object)
        n = len(gs) * n_persons
        p_col = np.repeat(pids, len(gs))
        g_col = np.tile(g_arr, n_persons)
        pk_col = np.repeat(pkeys, len(gs))
        gk_col = np.tile(gk_arr, n_persons)
        versions = [pair_version(a, c, model_key) for a, c in zip(pk_col.tolist(), gk_col.tolist())]
        keys = [f"renders/upper/{p}/{g}-{v}.jpg" for p, g, v in zip(p_col.tolist(), g_col.tolist(), versions)]
        flags = np.where(rng.random(n) < 0.97, "ok", "warn").astype(object)
        cols = {"person_id": p_col, "garment_id": g_col, "category": ["upper"] * n, "person_key": pk_col,
                "garment_key": gk_col, "model_key": [model_key] * n, "version": versions, "run_id": ["bench"] * n,
                "paired": [False] * n, "output_uri": [f"{job.root}/{k}" for k in keys], "output_key": keys,
                "warp_miou": rng.random(n).astype(np.float32), "preserve_ssim": rng.random(n).astype(np.float32),
                "ssim": [None] * n, "parse_miou": [None] * n, "flag": flags, "reason": [None] * n,
                "error": [None] * n, "seconds": np.full(n, 0.1, np.float32)}
        t = pa.table({k: pa.array(v.tolist() if isinstance(v, np.ndarray) and v.dtype == object else v,
                                  type=INDEX.field(k).type) for k, v in cols.items()}, schema=INDEX)
        t = t.sort_by([("category", "ascending"), ("person_id", "ascending"), ("garment_id", "ascending")])
        key = f"{INDEX_PREFIX}/g00001/bucket-{b:04d}.parquet"
        buf = io.BytesIO()
        pq.write_table(t, buf, compression="zstd")
        job.write_bytes(key, buf.getvalue())
        parts[str(b)] = {"key": key, "rows": n, **unit_counts(flags.tolist(), [None] * n)}
    counts = {f: sum(p["counts"].get(f, 0) for p in parts.values()) for f in FLAGS}
    job.write_json(f"{INDEX_PREFIX}/manifest.json", {
        "generation": 1, "buckets": buckets, "run_id": "bench", "committed": "bench", "rows": pairs,
        "counts": counts, "transient_errors": 0, "error_reasons": {}, "parts": parts, "pairs_per_second": 150.0,
        "plan_pairs": pairs, "model_key": model_key})
    job.write_json("job.json", {"config": {"max_unrendered_fraction": 0.05, "max_failed_fraction": 0.05},
                                "model_key": model_key, "pairs": pairs, "created": "bench", "run_id": "bench",
                                "model_note": "bench"})
    return {"pairs": pairs, "buckets": buckets, "model_key": model_key}


#: runs ``python -m pipelines.cli ARGS`` and prints the process's own peak RSS (VmHWM, in kB) at exit:
#: ru_maxrss would include the fabricating parent's memory, which a fork copies and exec keeps counting
WRAP = ("import atexit, runpy, sys\n"
        "atexit.register(lambda: print('VMHWM_KB', open('/proc/self/status').read().split('VmHWM:')[1].split()[0],"
        " file=sys.stderr))\n"
        "sys.argv = ['gpvton', *sys.argv[1:]]\n"
        "runpy.run_module('pipelines.cli', run_name='__main__')\n")


def timed(cmd: list[str], env: dict) -> dict:
    """Wall seconds and the command's own peak RSS (a fresh process per measurement)."""
    args = cmd[3:] if cmd[1:3] == ["-m", "pipelines.cli"] else cmd
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAP, *args], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    hwm = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("VMHWM_KB")]
    return {"seconds": round(wall, 2), "exit": proc.returncode,
            "peak_rss_mb": round(hwm[-1] / 1024, 1) if hwm else None,
            "stdout_tail": proc.stdout.strip().splitlines()[-4:],
            "stderr_tail": [x for x in proc.stderr.strip().splitlines() if not x.startswith("VMHWM")][-3:]}


class RequestCounter(logging.Handler):
    """Counts the moto server's requests by kind (its werkzeug access log)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        for method in ("GET", "PUT", "HEAD", "DELETE", "POST"):
            if f'"{method} ' in msg or f"m{method} " in msg:
                kind = "LIST" if method == "GET" and "list-type" in msg else method
                self.counts[kind] += 1
                return

    def take(self) -> dict[str, int]:
        out = dict(self.counts)
        self.counts.clear()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--garments", type=int, default=10000)
    ap.add_argument("--persons", type=int, default=20)
    ap.add_argument("--change", type=float, default=0.01, help="fraction of garments changed for the dry run")
    ap.add_argument("--skip", default="", help="comma list of: noop,status,dryrun")
    ap.add_argument("--s3", action="store_true", help="shards and job on the project's S3 server; count requests")
    ap.add_argument("--out", help="write the JSON result here")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    result = {"machine": machine_info(), "garments": args.garments, "persons": args.persons,
              "pairs": args.garments * args.persons}
    from infra.storage import Storage

    env = dict(os.environ, PYTHONPATH=str(REPO), GPVTON_STORAGE_RETRY_S="30")
    gpvton = [sys.executable, "-m", "pipelines.cli"]
    counter = None
    with tempfile.TemporaryDirectory(prefix="bench-catalogue-") as tmp:
        if args.s3:
            from infra.s3_local import LocalS3

            server = LocalS3("bench").start()
            env.update(server.env())
            os.environ.update(server.env())
            counter = RequestCounter()
            wz = logging.getLogger("werkzeug")
            wz.setLevel(logging.INFO)
            wz.addHandler(counter)
            base = server.url("catalogue")
        else:
            base = tmp
        s3 = None
        shards1, shards2, job_url = f"{base}/shards1", f"{base}/shards2", f"{base}/job"
        t0 = time.perf_counter()
        n_changed = max(1, int(round(args.garments * args.change)))
        changed = set(np.random.default_rng(1).choice(args.garments, n_changed, replace=False).tolist())
        write_shards(Storage(shards1, s3), args.garments, args.persons, set())
        write_shards(Storage(shards2, s3), args.garments, args.persons, changed)
        result["job"] = write_job(Storage(job_url, s3), shards1, args.garments, args.persons)
        result["fabricate_seconds"] = round(time.perf_counter() - t0, 1)
        if counter:
            counter.take()
        render = [*gpvton, "render", "--shards", shards1, "--output", job_url, "--random-weights", "--runner", "local",
                  "--no-progress", "--set", "categories=[upper]", "--set", "model.variant=vitonhd",
                  "--set", f"model.width={WIDTH}"]
        runs = {}

        def measure(name: str, cmd: list[str], **extra) -> None:
            runs[name] = {**timed(cmd, env), **extra}
            if counter:
                time.sleep(0.5)        # the server's last log records
                runs[name]["requests"] = counter.take()

        if "noop" not in skip:
            measure("noop_rerun", render)
        if "status" not in skip:
            measure("status", [*gpvton, "status", job_url, "--json"])
        if "dryrun" not in skip:
            dry = [a if a != shards1 else shards2 for a in render] + ["--dry-run"]
            measure("dry_run_change", dry, garments_changed=n_changed, pairs_changed=n_changed * args.persons)
        for name, r in runs.items():
            print(f"{name}: {r['seconds']} s, peak RSS {r['peak_rss_mb']} MB, exit {r['exit']}"
                  + (f", requests {r['requests']}" if counter else ""), flush=True)
        result["runs"] = runs
        if args.s3:
            server.stop()
    finish(result["machine"])
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
