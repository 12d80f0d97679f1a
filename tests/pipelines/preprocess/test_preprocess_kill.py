"""Preprocessing killed with SIGKILL in the middle of a run, then rerun: every item exactly once; and\nthe same pipeline on Beam's multi-process direct runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from preprocess_synth import write_good_manifest  # noqa: E402

from infra import failpoints  # noqa: E402
from pipelines.cli import main  # noqa: E402
from pipelines.preprocess.beam_pipeline import read_table  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def test_preprocess_killed_mid_run_then_rerun(tmp_path):
    root, out = tmp_path / "cat", tmp_path / "shards"
    expected = write_good_manifest(root, n_persons=6)          # 8 items in 4 groups
    args = ["preprocess", "--input", f"manifest:{root}", "--output", str(out), "--resolution", "128",
            "--set", "num_shards=4"]
    # each group's marker waits 2 s before it is written: the kill lands between two groups
    env = dict(os.environ, PYTHONPATH=str(REPO), **{failpoints.env("slow_writes"): "_preprocess/gen-0001/group-:2"})
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not list((out / "_preprocess" / "gen-0001").glob("group-*.done")):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no group finished in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = time.time()
    done = sorted(p.name for p in (out / "_preprocess" / "gen-0001").glob("group-*.done"))
    assert 1 <= len(done) < 4, done                            # the kill landed mid-run
    assert not (out / "manifest.json").exists()

    assert main(args) == 0                                     # the rerun finishes the rest
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["groups"] == {"total": 4, "done_now": 4 - len(done), "resumed": len(done)}
    persons = [r["person_id"] for r in read_table(str(out), "persons").to_pylist()]
    garments = [r["garment_id"] for r in read_table(str(out), "garments").to_pylist()]
    assert sorted(persons) == [f"p{i}" for i in range(expected["persons"])]    # every item exactly once
    assert sorted(garments) == [f"g{i}" for i in range(expected["garments"])]
    # a write cut by SIGKILL may leave its temporary file (never listed, never read); the rerun leaves none
    assert all(p.stat().st_mtime <= killed_at for p in out.rglob(".tmp-*"))


def test_preprocess_on_the_multi_process_direct_runner(tmp_path):
    """Beam's direct runner with 2 worker processes: the same shards, every item once."""
    root, out = tmp_path / "cat", tmp_path / "shards"
    expected = write_good_manifest(root, n_persons=4)
    workers: set[int] = set()
    stop = threading.Event()

    def watch() -> None:   # Beam's SDK worker processes, children of this test process's runner
        while not stop.wait(0.1):
            ps = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
            workers.update(int(line.split()[0]) for line in ps.splitlines()
                           if "-m apache_beam.runners.worker.sdk_worker_main" in line and "/bin/sh" not in line)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        rc = main(["preprocess", "--input", f"manifest:{root}", "--output", str(out), "--resolution", "128",
                   "--runner", "DirectRunner", "--set", "num_shards=2", "--",
                   "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"])
    finally:
        stop.set()
        watcher.join()
    assert rc == 0
    assert len(workers) >= 2, workers        # it really ran in several worker processes
    persons = sorted(r["person_id"] for r in read_table(str(out), "persons").to_pylist())
    garments = sorted(r["garment_id"] for r in read_table(str(out), "garments").to_pylist())
    assert persons == [f"p{i}" for i in range(expected["persons"])]
    assert garments == [f"g{i}" for i in range(expected["garments"])]
    import json

    assert json.loads((out / "manifest.json").read_text())["groups"]["total"] == 2
