"""The output lease (infra/lease.py) under real concurrency: separate processes racing for one
lock.json on the S3 server (moto) and on a local folder; another host's lease expires after its TTL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra import failpoints
from infra.lease import Lease, LeaseHeld
from infra.storage import Storage

REPO = Path(__file__).resolve().parents[2]

TAKER = """
import sys, time
from infra.lease import Lease, LeaseHeld
from infra.storage import Storage
try:
    lease = Lease(Storage(sys.argv[1]), "lock.json", ttl_s=30, settle_s=0.3).acquire()
except LeaseHeld as exc:
    print("LOST", exc, flush=True)
    sys.exit(2)
print("WON", lease.run_id, flush=True)
time.sleep(float(sys.argv[2]))
lease.release()
"""


def _race(url: str, env: dict[str, str], n: int, slow: tuple[int, ...] = (), hold_s: float = 2.0) -> list[str]:
    """``n`` processes take the lease at the same wall-clock moment; those in ``slow`` stall 1 s
    between reading the lease and writing theirs (a loaded machine, a slow PUT)."""
    at = time.time() + 3.0        # after every interpreter has started
    procs = []
    for i in range(n):
        e = {**os.environ, **env, "PYTHONPATH": str(REPO), failpoints.env("lease_at"): str(at)}
        if i in slow:
            e[failpoints.env("slow_writes")] = "lock.json:1.0"
        procs.append(subprocess.Popen([sys.executable, "-c", TAKER, url, str(hold_s)], env=e, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(o.startswith(("WON", "LOST")) for o in outs), outs
    return outs


@pytest.mark.parametrize("where", ["s3", "local"])
@pytest.mark.parametrize("stale", [False, True], ids=["free", "expired"])
def test_one_winner_when_processes_race(where, stale, local_s3, tmp_path):
    """Of processes racing for a free (or an expired) lease exactly one wins — also when one of
    them stalls between its read and its write, where a plain PUT would let the late writer win too."""
    if where == "s3":
        url, env = local_s3.url(f"lease-race/{stale}"), local_s3.env()
        st = Storage(url, local_s3.settings)
    else:
        url, env = str(tmp_path / "job"), {}
        st = Storage(url)
    if stale:
        st.write_json("lock.json", {"run_id": "dead", "host": "elsewhere", "pid": 1, "acquired": 0,
                                    "expires": time.time() - 1, "ttl_s": 30})
    outs = _race(url, env, 3, slow=(1,))
    assert sum(o.startswith("WON") for o in outs) == 1, outs
    for o in outs:
        if o.startswith("LOST"):
            assert "another job run is using this output (host " in o and ", pid " in o and "since" in o, o
    assert not st.exists("lock.json")            # the winner released it
    assert where == "s3" or not list((tmp_path / "job").glob("lock.json.*"))


def test_another_hosts_lease_expires_after_its_ttl(local_s3):
    st = Storage(local_s3.url("lease-expiry"), local_s3.settings)
    now = time.time()
    st.write_json("lock.json", {"run_id": "r1", "host": "render-node-7", "pid": 4242, "acquired": now,
                                "renewed": now, "expires": now + 2.0, "ttl_s": 2.0})
    with pytest.raises(LeaseHeld, match=r"host render-node-7, pid 4242, since \d{4}-\d\d-\d\d") as exc:
        Lease(st, ttl_s=2.0, settle_s=0).acquire()
    assert exc.value.holder["run_id"] == "r1"
    time.sleep(max(0.0, now + 2.2 - time.time()))
    lease = Lease(st, ttl_s=2.0, settle_s=0).acquire()            # not renewed: free after the TTL
    try:
        assert st.read_json("lock.json")["run_id"] == lease.run_id
    finally:
        lease.release()


def test_the_lease_is_renewed_while_the_run_lives(local_s3):
    st = Storage(local_s3.url("lease-renew"), local_s3.settings)
    lease = Lease(st, ttl_s=1.0, settle_s=0).acquire()
    try:
        first = st.read_json("lock.json")
        time.sleep(2.5)                                           # well past the TTL
        rec = st.read_json("lock.json")
        assert rec["run_id"] == lease.run_id and rec["renewed"] > first["renewed"] + 1.0
        assert rec["expires"] > time.time()
        with pytest.raises(LeaseHeld):
            Lease(st, ttl_s=1.0, settle_s=0).acquire()
    finally:
        lease.release()
    assert not st.exists("lock.json")
