"""CI rules of tests/conftest.py: what skips on a developer machine fails under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


PROBE = '''
import pytest


def test_probe_missing_module():
    pytest.importorskip("gpvton_no_such_module", reason="a dev-extra module")
'''


@pytest.mark.parametrize("ci", ["true", ""])
def test_importorskip_fails_under_ci(ci, tmp_path):
    """A probe test beside a copy of tests/conftest.py needs a module that is absent: it skips on a
    developer machine and fails under CI=true. (Written here, never collected by the suite itself.)"""
    (tmp_path / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                          "-c", os.devnull, str(tmp_path / "test_probe.py")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    if ci:
        assert res.returncode == 1 and "required module missing under CI: gpvton_no_such_module" in res.stdout, res.stdout
    else:
        assert res.returncode == 0 and "1 skipped" in res.stdout, res.stdout
