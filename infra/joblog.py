"""Log files kept with a job (``JOB/logs/NAME.log``) on any storage, a local folder or ``s3://``.

Ray keeps a worker's output in its session folder, which goes when the cluster does; a job's own
log files stay next to its outputs. Object stores cannot append, so a :class:`JobLogHandler`
keeps the file's text in memory and rewrites the whole file on :meth:`~JobLogHandler.flush`
(the render worker flushes after every unit, the driver at the end of the job). The text is
capped at ``max_bytes``: the oldest lines go first, and the file says so.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"


class JobLogHandler(logging.Handler):
    """A logging handler whose records end up in one file of a job's storage."""

    def __init__(self, storage: Any, key: str, level: int = logging.INFO, max_bytes: int = 4 << 20,
                 append: bool = False):
        super().__init__(level)
        self.storage, self.key, self.max_bytes = storage, key, max_bytes
        self.setFormatter(logging.Formatter(FORMAT))
        self._lines: deque[str] = deque()
        self._size = 0
        self._dropped = 0
        self._dirty = False
        self._flush_lock = threading.Lock()
        if append:
            try:
                if storage.exists(key):
                    for line in storage.read_bytes(key).decode("utf-8", "replace").splitlines():
                        self._add(line)
            except Exception:  # noqa: BLE001 - an unreadable old log must not stop the job
                pass

    def _add(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        while self._size > self.max_bytes and len(self._lines) > 1:
            self._size -= len(self._lines.popleft()) + 1
            self._dropped += 1

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            for line in text.splitlines() or [""]:
                self._add(line)
            self._dirty = True

    def text(self) -> str:
        with self.lock:  # type: ignore[union-attr]
            head = [f"[{self._dropped} older lines dropped]"] if self._dropped else []
            return "\n".join(head + list(self._lines)) + "\n"

    def flush(self) -> None:
        """Write the file now (whole); never raises: logging must not fail a job."""
        with self._flush_lock:   # threads of one worker: the newest text is written last
            if not self._dirty:
                return
            with self.lock:      # a consistent snapshot while other threads log
                self._dirty = False
                text = self.text()
            try:
                self.storage.write_bytes(self.key, text.encode("utf-8"))
            except Exception:  # noqa: BLE001
                self._dirty = True

    def close(self) -> None:
        self.flush()
        super().close()
