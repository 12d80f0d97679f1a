"""CI rules of tests/conftest.py: what skips on a developer machine fails under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_probe_missing_module():
    """Run only by the test below (GPVTON_CI_PROBE=1): a test that needs a module that is absent."""
    if os.environ.get("GPVTON_CI_PROBE") != "1":
        pytest.skip("probe for test_importorskip_fails_under_ci")
    pytest.importorskip("gpvton_no_such_module", reason="a dev-extra module")


@pytest.mark.parametrize("ci", ["true", ""])
def test_importorskip_fails_under_ci(ci):
    env = {**os.environ, "GPVTON_CI_PROBE": "1", "CI": ci, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          f"{Path(__file__)}::test_probe_missing_module"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    if ci:
        assert res.returncode == 1 and "required module missing under CI: gpvton_no_such_module" in res.stdout, res.stdout
    else:
        assert res.returncode == 0 and "1 skipped" in res.stdout, res.stdout
