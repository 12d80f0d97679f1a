"""Storage faults: transient vs permanent failures, a retry budget that outlasts an outage, a real restart."""

from __future__ import annotations

import errno
import threading
import time

import pytest

from infra.storage import Storage, is_transient, with_retries


def _client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "PutObject")


def _wrapped(inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as exc:
            raise OSError("s3fs wrapped it") from exc
    except OSError as outer:
        return outer


def test_transient_or_not():
    from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

    transient = [ConnectionError("refused"), TimeoutError("slow"), OSError(errno.ECONNRESET, "reset"),
                 EndpointConnectionError(endpoint_url="http://127.0.0.1:8333/b/k"),
                 ReadTimeoutError(endpoint_url="http://x"), _client_error("SlowDown", 503),
                 _client_error("InternalError", 500), _wrapped(EndpointConnectionError(endpoint_url="http://x"))]
    permanent = [FileNotFoundError("k"), PermissionError("ro"), OSError(errno.ENOSPC, "full"),
                 OSError(errno.EROFS, "read-only"), ValueError("bad parquet"), _client_error("AccessDenied", 403),
                 _client_error("NoSuchBucket", 404)]
    assert [is_transient(e) for e in transient] == [True] * len(transient)
    assert [is_transient(e) for e in permanent] == [False] * len(permanent)


def test_retry_budget_outlasts_an_outage():
    up_at = time.monotonic() + 0.6   # the "store" is down for 0.6 s, far more than 5 quick attempts
    calls = {"n": 0}

    def put() -> str:
        calls["n"] += 1
        if time.monotonic() < up_at:
            raise ConnectionError("connection refused")
        return "stored"

    assert with_retries(put, what="put", attempts=2, base_delay=0.01, max_delay=0.05, budget_s=10) == "stored"
    assert calls["n"] > 2

    def full() -> None:
        calls["n"] += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    calls["n"] = 0
    t0 = time.monotonic()
    with pytest.raises(OSError, match="No space"):
        with_retries(full, what="full", budget_s=10)
    assert calls["n"] == 1 and time.monotonic() - t0 < 1   # permanent: at once


def test_retry_budget_from_the_environment(monkeypatch):
    monkeypatch.setenv("GPVTON_STORAGE_RETRY_S", "0.2")

    def down() -> None:
        raise ConnectionError("refused")

    t0 = time.monotonic()
    with pytest.raises(ConnectionError):
        with_retries(down, what="down", base_delay=0.01)
    assert 0.2 <= time.monotonic() - t0 < 2


@pytest.mark.slow
def test_write_through_a_real_server_restart(tmp_path):
    """SeaweedFS stops for ~4 s while a write is pending: the write lands once, nothing else appears."""
    from infra.s3_local import SeaweedS3

    with SeaweedS3(tmp_path / "weed", "gpvton-faults") as server:
        st = Storage(server.url("job"), server.settings, retry_budget_s=120)
        st.write_bytes("a.bin", b"before")
        server.stop()
        threading.Timer(4.0, server.start).start()
        t0 = time.monotonic()
        st.write_bytes("b.bin", b"during")   # blocks through the outage, retried within the budget
        assert time.monotonic() - t0 >= 3.5
        assert st.read_bytes("a.bin") == b"before" and st.read_bytes("b.bin") == b"during"
        assert server.keys("job/") == ["job/a.bin", "job/b.bin"]


def test_objects_written_by_another_process_are_seen(local_s3):
    """s3fs caches listings per process: a resumed job must still see what its workers wrote since."""
    import boto3

    st = Storage(local_s3.url("stale-cache"), local_s3.settings)
    st.write_bytes("scores/unit-0.parquet", b"0")
    st.mark_done("scores/unit-0.parquet")
    assert list(st.iter_done("scores")) == ["scores/unit-0.parquet"]   # the listing is cached now
    s = local_s3.settings
    other = boto3.client("s3", endpoint_url=s.endpoint_url, aws_access_key_id=s.access_key_id,
                         aws_secret_access_key=s.secret_access_key, region_name=s.region)
    for key, body in (("unit-1.parquet", b"1"), ("unit-1.parquet.done", b"{}")):
        other.put_object(Bucket=local_s3.bucket, Key=f"stale-cache/scores/{key}", Body=body)
    assert st.exists("scores/unit-1.parquet")
    assert list(st.iter_done("scores")) == ["scores/unit-0.parquet", "scores/unit-1.parquet"]
    assert st.read_bytes("scores/unit-1.parquet") == b"1"
