"""Job log files: records kept under JOB/logs/ on any storage, whole-file rewrites, bounded size."""

from __future__ import annotations

import logging

from infra.joblog import JobLogHandler
from infra.storage import Storage


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    lg = logging.getLogger(name)
    lg.setLevel(logging.DEBUG)
    lg.propagate = False
    lg.handlers = [handler]
    return lg


def test_records_written_on_flush_and_appended_on_rerun(tmp_path):
    st = Storage(str(tmp_path / "job"))
    h = JobLogHandler(st, "logs/driver.log")
    lg = _logger("test.joblog.a", h)
    lg.debug("not kept at INFO")
    lg.info("first")
    assert not st.exists("logs/driver.log")          # nothing written before a flush
    h.flush()
    lg.warning("second\nwith two lines")
    h.close()
    text = st.read_bytes("logs/driver.log").decode()
    assert "INFO" in text and "first" in text and "second" in text and "with two lines" in text
    assert "not kept" not in text
    h2 = JobLogHandler(st, "logs/driver.log", append=True)
    _logger("test.joblog.b", h2).error("third")
    h2.flush()
    lines = st.read_bytes("logs/driver.log").decode().splitlines()
    assert "first" in lines[0] and "third" in lines[-1] and len(lines) == 4


def test_size_is_capped_oldest_lines_dropped(tmp_path):
    st = Storage(str(tmp_path / "job"))
    h = JobLogHandler(st, "logs/w.log", max_bytes=2000)
    lg = _logger("test.joblog.c", h)
    for i in range(200):
        lg.info("line %03d %s", i, "x" * 20)
    h.flush()
    text = st.read_bytes("logs/w.log").decode()
    assert len(text) < 2100 and "line 199" in text and "line 000" not in text
    assert text.startswith("[") and "older lines dropped" in text.splitlines()[0]


def test_flush_never_raises(tmp_path):
    class Broken:
        def write_bytes(self, key, data):
            raise ConnectionError("store down")

    h = JobLogHandler(Broken(), "logs/x.log")
    _logger("test.joblog.d", h).info("kept in memory")
    h.flush()
    assert "kept in memory" in h.text()
