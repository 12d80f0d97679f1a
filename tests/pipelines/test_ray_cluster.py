"""A real two-node Ray cluster (``ray start --head`` + ``ray start --address``, on this machine):
``gpvton render --address`` and ``gpvton train --address`` run with work placed on both nodes.

Each node offers one CPU and actors / train workers ask for one, so Ray must put one on each node;
the test checks it from the processes themselves (each Ray worker process is a child of its
node's raylet).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _procs() -> list[tuple[int, int, str]]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3:
            rows.append((int(parts[0]), int(parts[1]), parts[2]))
    return rows


@pytest.fixture(scope="module")
def cluster():
    """(address, env, {raylet pid: node name}) of a head node and a second node, stopped afterwards."""
    tmp = tempfile.mkdtemp(prefix="gpvray-", dir="/tmp")   # short: Ray's socket paths have a length limit
    ray_bin = str(Path(sys.executable).parent / "ray")
    env = dict(os.environ, RAY_TMPDIR=tmp, RAY_AUTH_MODE="token", PYTHONPATH=str(REPO))
    port = _free_port()
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats",
              "--node-ip-address=127.0.0.1"]
    try:
        subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false",
                        '--resources={"node_a": 1}', *common], env=env, check=True, capture_output=True)
        subprocess.run([ray_bin, "start", f"--address=127.0.0.1:{port}", '--resources={"node_b": 1}', *common],
                       env=env, check=True, capture_output=True)
        raylets = sorted(pid for pid, _, args in _procs() if "raylet/raylet" in args and tmp in args)
        assert len(raylets) == 2, raylets
        yield f"127.0.0.1:{port}", env, raylets
    finally:
        mine = [pid for pid, _, args in _procs() if tmp in args]   # only the processes of this cluster
        children = [pid for pid, ppid, _ in _procs() if ppid in mine]
        for pid in mine + children:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


class NodeWatch:
    """Which raylets (nodes) own the Ray worker processes whose title contains ``needle``, while a job runs."""

    def __init__(self, needle: str, raylets: list[int]):
        self.needle, self.raylets, self.seen = needle, set(raylets), set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.seen |= {ppid for _, ppid, args in _procs() if self.needle in args and ppid in self.raylets}

    def __enter__(self) -> "NodeWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_render_on_a_two_node_cluster(cluster, synthetic_shards, tmp_path):
    address, env, raylets = cluster
    shards = synthetic_shards(n_garments=9, n_persons=4, seed=0)
    job = tmp_path / "job"
    cmd = [sys.executable, "-m", "pipelines.cli", "render", "--shards", str(shards), "--output", str(job),
           "--address", address, "--actors", "2", "--unit-size", "1", "--batch-size", "1", "--no-progress",
           "--random-weights", "--set", "num_cpus=1", "--set", "categories=[upper]",
           "--set", "model.variant=vitonhd", "--set", "model.width=0.0625", "--set", "garments.include=[g0002, g0007]"]
    with NodeWatch("RenderActor", raylets) as watch:
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert watch.seen == set(raylets), "render actors did not run on both nodes"
    summary = json.loads((job / "summary.json").read_text())
    assert summary["counts"]["error"] == 0 and summary["scored"] == summary["pairs"] == 6
    logs = sorted((job / "logs").glob("worker-*.log"))
    assert {p.name.split("-p")[0] for p in logs} == {"worker-00", "worker-01"}
    assert all("unit " in p.read_text() for p in logs), "each actor rendered units"


def test_train_on_a_two_node_cluster(cluster, training_shards, tmp_path):
    """The try-on family's run through the CLI and Ray Train's start-up (test_train.py runs the
    other warp / generator jobs with the loop in-process)."""
    from gpvton_core.checkpoints import safetensors_meta

    address, env, raylets = cluster
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pipelines.cli", "train", "warp", "--shards", training_shards, "--output", str(out),
           "--address", address, "--workers", "2", "--steps", "2", "--no-perceptual", "--resolution", "128x96",
           "--width", "0.0625", "--set", "threads=1", "--set", "progress=false", "--set", "batch_size=1",
           "--set", "mask_epoch=0", "--set", "checkpoint_every=0"]
    with NodeWatch("RayTrainWorker", raylets) as watch:
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert watch.seen == set(raylets), "train workers did not run on both nodes"
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[-1]["replica_spread"] == 0.0   # the two nodes' replicas hold identical weights
    meta = safetensors_meta((out / "warp.safetensors").read_bytes())
    assert meta["ray_train"] is True and meta["world_size"] == 2
