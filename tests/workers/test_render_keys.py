"""Output keys stay under the job root whatever the retailer ids look like."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from workers.render_actor import UnitProcessor, unit_key


@pytest.mark.parametrize("pid,gid", [("../../etc/passwd", "g1"), ("a/b", "..\\c"), ("/abs", " sp ace "),
                                     (".", ".."), ("p" * 400, "ünïcode/ßku")])
def test_output_keys_are_safe_and_distinct(pid, gid):
    fake = SimpleNamespace(s=SimpleNamespace(image_format="jpg"))
    key = UnitProcessor.output_key(fake, "upper", pid, gid)
    parts = key.split("/")
    assert parts[0] == "renders" and parts[1] == "upper" and len(parts) == 4
    assert all(p not in ("", ".", "..") and not p.startswith(".") for p in parts)
    assert key.endswith(".jpg") and len(key) < 300
    other = UnitProcessor.output_key(fake, "upper", pid + "x", gid)
    assert other != key


def test_unit_key():
    assert unit_key(7) == "scores/unit-00007.parquet"
