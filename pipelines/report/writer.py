"""Writing a report folder cheaply on a rerun: a file is written only when its bytes changed
(``files.json`` holds their hashes), in parallel, and files this report no longer has are deleted."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable


def parallel(fn: Callable, items: list, workers: int) -> list:
    """``[fn(i) for i in items]`` on a thread pool (object-store reads and writes wait on the network)."""
    if len(items) <= 1 or workers <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="report-io") as ex:
        return list(ex.map(fn, items))


class Writer:
    """Writes report files whose bytes changed since the last report (``files.json`` holds their
    hashes), in parallel; deletes the listed files of a prefix that this report no longer has."""

    MANIFEST = "files.json"

    def __init__(self, out, listed: set[str], workers: int):
        self.out, self.listed, self.workers = out, listed, workers
        try:
            old = out.read_json(self.MANIFEST)
        except (FileNotFoundError, ValueError):
            old = {}
        self.old: dict[str, str] = old if isinstance(old, dict) else {}
        self.new: dict[str, str] = {}
        self.pending: list[tuple[str, bytes]] = []
        self.written = 0

    def put(self, key: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()[:24]
        self.new[key] = digest
        if self.old.get(key) != digest or key not in self.listed:
            self.pending.append((key, data))

    def flush(self) -> None:
        parallel(lambda kv: self.out.write_bytes(*kv), self.pending, self.workers)
        self.written += len(self.pending)
        self.pending = []

    def finish(self, prefixes: tuple[str, ...]) -> int:
        """Write what is pending, delete stale files under ``prefixes``, save the hashes; returns deletions."""
        self.flush()
        stale = sorted(k for k in (self.listed | set(self.old)) if k.startswith(prefixes) and k not in self.new)
        parallel(self.out.delete, stale, self.workers)
        self.out.write_json(self.MANIFEST, self.new)
        return len(stale)
