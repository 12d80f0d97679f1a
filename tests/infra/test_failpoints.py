"""Failpoints: inert unless armed; armed, each does what tests rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra import failpoints

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _disarmed(monkeypatch):
    for k in failpoints.armed_env():
        monkeypatch.delenv(k)
    monkeypatch.setattr(failpoints._FlakyFS, "left", None)
    monkeypatch.setattr(failpoints._FlakyFS, "raised", 0)


def test_unarmed_failpoints_do_nothing():
    fs = object()
    assert failpoints.armed_env() == {}
    assert failpoints.wrap_filesystem(fs) is fs
    assert failpoints.nan_pairs() == frozenset()
    for uid in range(3):
        assert failpoints.unit_start(uid) is None


def test_armed_failpoints(monkeypatch, tmp_path):
    monkeypatch.setenv(failpoints.env("raise_unit"), "2")
    monkeypatch.setenv(failpoints.env("nan_pairs"), "p0/g1,p2/g3")
    failpoints.unit_start(1)
    with pytest.raises(RuntimeError, match="injected failure of unit 2"):
        failpoints.unit_start(2)
    assert failpoints.nan_pairs() == {("p0", "g1"), ("p2", "g3")}
    assert set(failpoints.armed_env()) == {failpoints.env("raise_unit"), failpoints.env("nan_pairs")}
    with pytest.raises(KeyError):
        failpoints.env("no_such_failpoint")


def test_storage_fails_first_n_puts(monkeypatch):
    class FS:
        puts = 0

        def pipe_file(self, path, data):
            FS.puts += 1

        def exists(self, path):
            return True

    monkeypatch.setenv(failpoints.env("storage_fails"), "2")
    fs = failpoints.wrap_filesystem(FS())
    assert failpoints.wrap_filesystem(fs) is fs and fs.exists("x")
    for _ in range(2):
        with pytest.raises(ConnectionError):
            fs.pipe_file("k", b"")
    fs.pipe_file("k", b"")
    assert FS.puts == 1 and failpoints.storage_failures_injected() == 2


def test_crash_unit_exits_once(tmp_path):
    marker = tmp_path / "crashed"
    code = "from infra import failpoints; failpoints.unit_start(3); print('survived')"
    env = {failpoints.env("crash_unit"): "3", failpoints.env("crash_marker"): str(marker), "PYTHONPATH": str(REPO)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert first.returncode == 17 and marker.read_text().startswith("crashed on unit 3")
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "survived" in again.stdout


def test_production_render_worker_has_no_fault_injection_code():
    """Fault injection lives in infra/failpoints.py only; the actor just calls its hooks."""
    files = sorted((REPO / "workers" / "render").glob("*.py"))
    assert files
    src = "".join(p.read_text() for p in files)
    for needle in ("GPVTON_FAULT", "os._exit", "_FlakyFS", "os.environ", "injected failure"):
        assert needle not in src, needle
