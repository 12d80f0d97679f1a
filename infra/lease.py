"""A lease on a job's output: one run at a time, and a crashed run does not leave it stuck.

The lease is one small JSON object (``JOB/lock.json``) naming its owner (host, pid, run id) and
when it expires. The owner renews it from a heartbeat thread every ``ttl_s / 4`` seconds; a run
that dies stops renewing, and its lease is free ``ttl_s`` seconds later (at once when the dead
owner was a process on this host).

Two runs that start at the same moment must not both win, and two plain PUTs on an object store
would both succeed (the last writer wins). So every change of the record is conditional:

* S3 (and S3-compatible stores that implement it): taking a free lease is a PUT with
  ``If-None-Match: *``, taking over an expired one and renewing are PUTs with ``If-Match`` on the
  version (ETag) that was read; a store that refuses the condition means another run got there
  first.
* local folders: a free lease is created with ``link()`` (fails when the file exists); an expired
  one is first moved aside with ``rename()`` (only one mover gets it) and checked to be the
  record that was judged expired.
* other fsspec stores: a plain write.

Whatever the store, the writer then reads the record back after ``settle_s`` and keeps the lease
only if it still names it: the safety net for a store that ignores the conditions.
"""

from __future__ import annotations

import contextlib
import json
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
        return self._read()[0]

    def _read(self) -> tuple[Optional[dict[str, Any]], Optional[str]]:
        """(record, version): the version is the object's ETag on S3 (what ``If-Match`` compares)."""
        kind = self._kind()
        for _ in range(5):
            tag = None
            if kind == "s3":
                tag = self._etag()
                if tag is None:
                    return None, None
            if not self.storage.exists(self.key):
                return None, None
            try:
                rec = self.storage.read_json(self.key)
            except FileNotFoundError:
                return None, None
            except ValueError:
                rec = {}        # unreadable: a lease of nobody, expired
            if kind != "s3" or self._etag() == tag:     # the record and its version belong together
                return (rec if isinstance(rec, dict) else {}), tag
        return None, None

    def _kind(self) -> str:
        from infra.storage import protocol

        proto = protocol(self.storage.root)
        return "s3" if proto in ("s3", "s3a") else "file" if proto == "file" else "other"

    def _path(self) -> str:
        return self.storage.path(self.key)

    def _etag(self) -> Optional[str]:
        from infra.storage import with_retries

        fs, path = self.storage.fs, self._path()

        def info() -> Optional[str]:
            fs.invalidate_cache(path)
            try:
                return str(fs.info(path).get("ETag"))
            except FileNotFoundError:
                return None
        return with_retries(info, what=f"info {self.key}")

    def _put(self, expect: Optional[dict[str, Any]], tag: Optional[str]) -> bool:
        """Write our record if the lease is still what we read (``expect`` with version ``tag``;
        None = no lease); False when another run changed it first."""
        from infra import failpoints

        data = json.dumps(self._record(), indent=2, sort_keys=True).encode()
        failpoints.storage_write(self.key)
        kind, fs, path = self._kind(), self.storage.fs, self._path()
        if kind == "s3":
            try:
                if expect is None:
                    fs.pipe_file(path, data, mode="create")
                else:
                    fs.pipe_file(path, data, IfMatch=tag)
            except (FileExistsError, FileNotFoundError):
                return False
            except OSError as exc:
                if "pre-condition" in str(exc) or "PreconditionFailed" in str(exc):
                    return False
                raise
            fs.invalidate_cache(path)
            return True
        if kind == "file":
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if expect is not None:
                aside = f"{path}.stale-{self.run_id}"
                try:
                    os.rename(path, aside)                    # one mover wins
                except FileNotFoundError:
                    return False
                try:
                    with open(aside, "rb") as fh:
                        moved = json.loads(fh.read() or b"{}")
                except ValueError:
                    moved = {}
                if moved.get("run_id") != expect.get("run_id"):  # a fresh lease moved: put it back
                    with contextlib.suppress(FileExistsError):
                        os.link(aside, path)
                    os.unlink(aside)
                    return False
                os.unlink(aside)
            tmp = f"{path}.tmp-{self.run_id}"
            with open(tmp, "wb") as fh:
                fh.write(data)
            try:
                os.link(tmp, path)                            # create-if-absent
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            return True
        self.storage.write_bytes(self.key, data)
        return True

    def _renew(self) -> bool:
        """Renew our record; False when it is no longer ours."""
        rec, tag = self._read()
        if rec is None or rec.get("run_id") != self.run_id:
            return False
        if self._kind() == "s3":
            return self._put(rec, tag)
        self.storage.write_json(self.key, self._record())   # atomic replace; ours was checked above
        return True

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
        from infra import failpoints

        failpoints.lease_start()
        for _ in range(3):
            rec, tag = self._read()
            if rec is not None and rec.get("run_id") != self.run_id and self.is_live(rec):
                raise self._refuse(rec)
            if rec is not None:
                log.warning("%s: taking over the lease of a run that is gone (host %s, pid %s)",
                            self.storage.url(self.key), rec.get("host"), rec.get("pid"))
            self.acquired = time.time()
            if self._put(rec, tag):
                break
            self.acquired = 0.0   # another run changed the lease first: look again
        else:
            raise self._refuse(self.holder() or {})
        time.sleep(self.settle_s)  # a store that ignored the condition: the later write wins
        rec = self.holder()
        if rec is None or rec.get("run_id") != self.run_id:
            raise self._refuse(rec or {})
        self._thread = threading.Thread(target=self._heartbeat, name="gpvton-lease", daemon=True)
        self._thread.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                if not self._renew():
                    rec = self.holder() or {}
                    log.error("%s: the lease was taken by host %s pid %s; this run no longer holds it",
                              self.storage.url(self.key), rec.get("host"), rec.get("pid"))
                    return
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
