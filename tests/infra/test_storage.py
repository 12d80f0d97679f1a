"""Storage over fsspec: atomic writes, done-markers, listing and retries, local and on real S3."""

from __future__ import annotations

import os

import pytest

from infra.storage import Storage, sanitize_id, with_retries


def _roundtrip(st: Storage) -> None:
    st.write_bytes("a/b/c.bin", b"payload")
    st.write_json("a/meta.json", {"n": 1})
    assert st.read_bytes("a/b/c.bin") == b"payload"
    assert st.read_json("a/meta.json") == {"n": 1}
    assert not st.is_done("a/b/c.bin")
    st.mark_done("a/b/c.bin", {"rows": 3})
    assert st.is_done("a/b/c.bin")
    assert list(st.iter_done("a")) == ["a/b/c.bin"]
    assert st.list("a", ".json") == ["a/meta.json"]
    st.write_bytes("a/b/c.bin", b"replaced")  # overwrite is atomic too
    assert st.read_bytes("a/b/c.bin") == b"replaced"
    st.delete("a/b")
    assert not st.exists("a/b/c.bin")


def test_local_roundtrip(tmp_path):
    st = Storage(str(tmp_path / "job"))
    _roundtrip(st)
    # no temporary files are left behind
    leftovers = [f for _, _, files in os.walk(tmp_path) for f in files if f.startswith(".tmp-")]
    assert leftovers == []


def test_s3_roundtrip(local_s3):
    _roundtrip(Storage(local_s3.url("storage-test"), local_s3.settings))


def test_missing_key_is_not_retried(tmp_path):
    st = Storage(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        st.read_bytes("nope.bin")
    assert st.list("nothing-here") == []


def test_transient_errors_are_retried_then_raised():
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("503 slow down")
        return "ok"

    assert with_retries(flaky, what="flaky", base_delay=0.001) == "ok"
    assert calls["n"] == 3

    def always():
        raise TimeoutError("gone")

    with pytest.raises(TimeoutError):  # transient: retried for budget_s seconds, then raised
        with_retries(always, what="always", attempts=2, base_delay=0.001, budget_s=0.05)


@pytest.mark.parametrize("raw", ["../x", "a/b", "..", "", "x" * 300, "naïve id", "/abs"])
def test_sanitize_id_never_escapes(raw):
    out = sanitize_id(raw)
    assert "/" not in out and "\\" not in out and out not in ("", ".", "..")
    assert len(out) <= 128
    assert sanitize_id(raw) == out  # deterministic


def test_sanitize_id_keeps_clean_ids_and_separates_collisions():
    assert sanitize_id("00013_00") == "00013_00"
    assert sanitize_id("a/b") != sanitize_id("a_b")


@pytest.mark.parametrize("given,expected", [
    ("rel/shards", "{cwd}/rel/shards"), ("../up", "{parent}/up"), ("~/jobs/j1", "{home}/jobs/j1"),
    ("file://rel", "{cwd}/rel"), ("file:///abs/x", "/abs/x"), ("/abs/y/", "/abs/y"),
    ("s3://bucket/prefix", "s3://bucket/prefix"), ("memory://m", "memory://m"), ("", ""),
])
def test_normalize_url(given, expected, tmp_path, monkeypatch):
    from infra.storage import normalize_url

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert normalize_url(given) == expected.format(cwd=tmp_path, parent=tmp_path.parent, home=tmp_path / "home")


def test_relative_root_lists_keys_from_another_cwd(tmp_path, monkeypatch):
    """A relative root once made list() glue absolute paths onto it (``rel/tmp/.../rel/persons/...``)."""
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    st = Storage("../data/shards")
    st.write_bytes("persons/part-00000.parquet", b"x")
    assert st.root == str(tmp_path / "data" / "shards")
    assert st.list("persons", ".parquet") == ["persons/part-00000.parquet"]
    assert st.read_bytes(st.list("persons")[0]) == b"x"
