"""Failpoints: the few places where a test may inject a fault into a real job.

Inert unless armed: with no ``GPVTON_FAILPOINT_*`` variable in the environment every hook
returns at once and changes nothing. A test arms one through the environment, e.g.
``monkeypatch.setenv(failpoints.env("raise_unit"), "2")``; the environment reaches subprocesses,
and Ray actors get :func:`armed_env` in their ``runtime_env``.

==============  ===============  ===========================================================
failpoint       value            effect
==============  ===============  ===========================================================
crash_unit      unit id          the worker process exits at the start of that unit (once:
                                 see crash_marker)
crash_marker    file path        written just before the crash; while it exists, no crash
raise_unit      unit id          processing that unit raises ``RuntimeError`` every time
slow_unit_s     seconds          sleep at the start of every unit (kill / resume tests)
nan_pairs       ``p/g,p/g``      those pairs' try-on outputs become NaN
storage_fails   n                the first n object-store PUTs of the process raise
                                 ``ConnectionError`` (transient failures, retried)
fail_writes     ``TEXT[:n]``     Storage writes of keys containing TEXT raise
                                 ``ConnectionError`` (the first n of the process, or all):
                                 local folders too; retried within the retry budget
slow_writes     ``TEXT:s``       Storage writes of keys containing TEXT first sleep s seconds
                                 (a kill lands between two writes); lease writes too
lease_at        epoch seconds    taking a lease waits until that wall-clock time, so that
                                 processes started apart race for it at the same moment
write_errno     ``TEXT:NAME``    from the first Storage write of a key containing TEXT on,
                                 every write raises OSError(NAME): ``:EROFS`` a read-only
                                 output, ``scores/unit-00001:ENOSPC`` one that fills up there
                                 (permanent errors, not retried)
==============  ===============  ===========================================================
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Optional

log = logging.getLogger(__name__)

PREFIX = "GPVTON_FAILPOINT_"
NAMES = ("crash_unit", "crash_marker", "raise_unit", "slow_unit_s", "nan_pairs", "storage_fails",
         "fail_writes", "slow_writes", "lease_at", "write_errno")


def env(name: str) -> str:
    """The environment variable that arms failpoint ``name``."""
    if name not in NAMES:
        raise KeyError(f"unknown failpoint {name!r}; known: {', '.join(NAMES)}")
    return PREFIX + name.upper()


def value(name: str) -> Optional[str]:
    """The armed value of ``name``, or None."""
    raw = os.environ.get(env(name), "").strip()
    return raw or None


def armed_env() -> dict[str, str]:
    """Every armed failpoint, to forward into worker processes (empty in production)."""
    return {k: v for k, v in os.environ.items() if k.startswith(PREFIX)}


def unit_start(unit_id: int) -> None:
    """At the start of a unit: crash the process, raise, or sleep when a test asked for it."""
    crash, marker = value("crash_unit"), value("crash_marker")
    if crash is not None and int(crash) == unit_id and not (marker and os.path.exists(marker)):
        if marker:
            with open(marker, "w") as fh:
                fh.write(f"crashed on unit {unit_id} pid {os.getpid()}\n")
        log.error("failpoint crash_unit: process %d exits on unit %d", os.getpid(), unit_id)
        os._exit(17)
    raise_unit = value("raise_unit")
    if raise_unit is not None and int(raise_unit) == unit_id:
        raise RuntimeError(f"failpoint raise_unit: injected failure of unit {unit_id}")
    slow = value("slow_unit_s")
    if slow is not None:
        time.sleep(float(slow))


def nan_pairs() -> frozenset[tuple[str, str]]:
    """(person_id, garment_id) pairs whose outputs a test wants non-finite."""
    raw = value("nan_pairs") or ""
    return frozenset(tuple(x.split("/", 1)) for x in raw.split(",") if "/" in x)  # type: ignore[misc]


_write_fails = {"raised": 0}
_errno_latch: set[str] = set()
_write_lock = threading.Lock()


def lease_start() -> None:
    """Before a lease is taken: wait for the wall-clock time ``lease_at`` (a true race in tests)."""
    at = value("lease_at")
    if at is not None:
        time.sleep(max(0.0, float(at) - time.time()))


def storage_write(key: str) -> None:
    """Before a Storage write of ``key``: sleep (``slow_writes``), raise ``ConnectionError``
    (``fail_writes``) or a permanent ``OSError`` (``write_errno``) when a test armed it for such keys."""
    bad = value("write_errno")
    if bad is not None:
        text, _, name = bad.rpartition(":")
        with _write_lock:
            if text in key:
                _errno_latch.add(bad)        # a full disk stays full
            latched = bad in _errno_latch
        if latched:
            import errno as _errno

            code = getattr(_errno, name)
            raise OSError(code, os.strerror(code), key)
    slow = value("slow_writes")
    if slow is not None:
        text, _, seconds = slow.rpartition(":")
        if text in key:
            time.sleep(float(seconds))
    raw = value("fail_writes")
    if raw is None:
        return
    text, _, n = raw.partition(":")
    if text not in key:
        return
    with _write_lock:
        if n and _write_fails["raised"] >= int(n):
            return
        _write_fails["raised"] += 1
    raise ConnectionError(f"failpoint fail_writes: injected transient failure writing {key}")


class _FlakyFS:
    """The first ``n`` ``pipe_file`` calls (object-store PUTs) of the process raise ConnectionError."""

    left: Optional[int] = None   # per process, set from the failpoint on first use
    raised = 0
    _lock = threading.Lock()

    def __init__(self, fs: Any, n: int):
        self._fs = fs
        with _FlakyFS._lock:
            if _FlakyFS.left is None:
                _FlakyFS.left = n

    def pipe_file(self, *a: Any, **k: Any) -> Any:
        with _FlakyFS._lock:
            fail = bool(_FlakyFS.left)
            if fail:
                _FlakyFS.left -= 1  # type: ignore[operator]
                _FlakyFS.raised += 1
        if fail:
            raise ConnectionError("failpoint storage_fails: injected transient object-store failure")
        return self._fs.pipe_file(*a, **k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)


def wrap_filesystem(fs: Any) -> Any:
    """``fs`` itself, or a flaky wrapper of it while ``storage_fails`` is armed."""
    n = value("storage_fails")
    if n is None or isinstance(fs, _FlakyFS):
        return fs
    return _FlakyFS(fs, int(n))


def storage_failures_injected() -> int:
    return _FlakyFS.raised
