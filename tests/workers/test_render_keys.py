"""Output keys stay under the job root whatever the retailer ids look like."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from infra.jobfolder import unit_key
from workers.render.images import ImageWriter


@pytest.mark.parametrize("pid,gid", [("../../etc/passwd", "g1"), ("a/b", "..\\c"), ("/abs", " sp ace "),
                                     (".", ".."), ("p" * 400, "ünïcode/ßku")])
def test_output_keys_are_safe_and_distinct(pid, gid):
    fake = SimpleNamespace(image_format="jpg")
    key = ImageWriter.output_key(fake, "upper", pid, gid)
    parts = key.split("/")
    assert parts[0] == "renders" and parts[1] == "upper" and len(parts) == 4
    assert all(p not in ("", ".", "..") and not p.startswith(".") for p in parts)
    assert key.endswith(".jpg") and len(key) < 300
    other = ImageWriter.output_key(fake, "upper", pid + "x", gid)
    assert other != key


def test_unit_key():
    assert unit_key(7) == "scores/unit-00007.parquet"


def test_the_last_units_go_to_idle_actors_only():
    """Queue a second unit behind a busy actor only while work is plentiful; near the end an idle
    actor takes what is left."""
    from workers.render.runners import takes_unit

    assert takes_unit([0, 0], 0, pending=1, in_flight=2)           # idle: always
    assert takes_unit([1, 1], 0, pending=5, in_flight=2)           # plenty left: queue one more
    assert not takes_unit([2, 1], 0, pending=5, in_flight=2)       # full
    assert not takes_unit([1, 1], 0, pending=1, in_flight=2)       # last unit: wait for an idle actor
    assert takes_unit([1, 0], 1, pending=1, in_flight=2)
    assert takes_unit([1], 0, pending=1, in_flight=2)              # one actor: the queue keeps it busy
