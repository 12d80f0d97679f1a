"""A lease on a job's output: one run at a time, and a crashed run does not leave it stuck.

The lease is one small JSON object (``JOB/lock.json``) naming its owner (host, pid, run id) and
when it expires. The owner renews it from a heartbeat thread every ``ttl_s / 4`` seconds; a run
that dies stops renewing, and its lease is free ``ttl_s`` seconds later (at once when the dead
owner was a process on this host). Object stores have no portable create-if-absent, so taking
a lease is write-then-verify: the writer reads the object back after ``settle_s`` and keeps
the lease only if it still names it; of two runs that start together the later write wins and
the other refuses.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Optional

log = logging.getLogger(__name__)


class LeaseHeld(RuntimeError):
    """Another live run holds the lease; ``holder`` is its lease record."""

    def __init__(self, message: str, holder: dict[str, Any]):
        super().__init__(message)
        self.holder = holder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    """``with Lease(storage, "lock.json", ttl_s=120): ...`` — raises :class:`LeaseHeld` when taken."""

    def __init__(self, storage: Any, key: str = "lock.json", ttl_s: float = 120.0, settle_s: float = 0.5,
                 what: str = "job"):
        self.storage, self.key, self.ttl_s, self.settle_s, self.what = storage, key, ttl_s, settle_s, what
        self.run_id = uuid.uuid4().hex
        self.host, self.pid = socket.gethostname(), os.getpid()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.acquired = 0.0

    # -- records --
    def _record(self) -> dict[str, Any]:
        now = time.time()
        return {"run_id": self.run_id, "host": self.host, "pid": self.pid, "acquired": self.acquired or now,
                "renewed": now, "expires": now + self.ttl_s, "ttl_s": self.ttl_s}

    def holder(self) -> Optional[dict[str, Any]]:
        """The current lease record, or None when there is none (or it cannot be parsed)."""
        if not self.storage.exists(self.key):
            return None
        try:
            rec = self.storage.read_json(self.key)
        except (ValueError, FileNotFoundError):
            return None
        return rec if isinstance(rec, dict) else None

    def is_live(self, rec: dict[str, Any]) -> bool:
        """Whether ``rec`` belongs to a run that may still be working."""
        if float(rec.get("expires", 0)) < time.time():
            return False
        if rec.get("host") == self.host and isinstance(rec.get("pid"), int) and rec["pid"] != self.pid:
            return _pid_alive(rec["pid"])
        return True

    def _refuse(self, rec: dict[str, Any]) -> LeaseHeld:
        left = max(0.0, float(rec.get("expires", 0)) - time.time())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(rec.get("acquired", 0))))
        return LeaseHeld(
            f"{self.storage.url(self.key)}: another {self.what} run is using this output (host {rec.get('host')}, "
            f"pid {rec.get('pid')}, since {since} UTC); wait for it to finish, or use another output. A run "
            f"that died frees it by itself within {left:.0f}s (its lease is renewed every "
            f"{float(rec.get('ttl_s', self.ttl_s)) / 4:.0f}s while it runs)", rec)

    # -- life cycle --
    def acquire(self) -> "Lease":
        rec = self.holder()
        if rec is not None and rec.get("run_id") != self.run_id and self.is_live(rec):
            raise self._refuse(rec)
        if rec is not None:
            log.warning("%s: taking over the lease of a run that is gone (host %s, pid %s)",
                        self.storage.url(self.key), rec.get("host"), rec.get("pid"))
        self.acquired = time.time()
        self.storage.write_json(self.key, self._record())
        time.sleep(self.settle_s)  # a run that wrote at the same moment: the later write wins
        rec = self.holder()
        if rec is None or rec.get("run_id") != self.run_id:
            raise self._refuse(rec or {})
        self._thread = threading.Thread(target=self._heartbeat, name="gpvton-lease", daemon=True)
        self._thread.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                rec = self.holder()
                if rec is not None and rec.get("run_id") != self.run_id:
                    log.error("%s: the lease was taken by host %s pid %s; this run no longer holds it",
                              self.storage.url(self.key), rec.get("host"), rec.get("pid"))
                    return
                self.storage.write_json(self.key, self._record())
            except Exception as exc:  # noqa: BLE001 - keep trying; expiry is the safety net
                log.warning("%s: cannot renew the lease: %s", self.storage.url(self.key), exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            rec = self.holder()
            if rec is not None and rec.get("run_id") == self.run_id:
                self.storage.delete(self.key)
        except Exception as exc:  # noqa: BLE001 - the lease then expires by itself
            log.warning("%s: cannot release the lease (it expires by itself): %s", self.storage.url(self.key), exc)

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
