import pytest
import torch

from gpvton_core import precision as P


def test_resolve_auto(monkeypatch):
    monkeypatch.setattr(P, "native_bf16", lambda device: (True, "test"))
    assert P.resolve("auto", "cpu")[0] == "bf16"
    monkeypatch.setattr(P, "native_bf16", lambda device: (False, "test"))
    prec, why = P.resolve("auto", "cpu")
    assert prec == "fp32" and "no native bf16" in why
    assert P.resolve("fp32", "cpu") == ("fp32", "requested")
    with pytest.raises(ValueError):
        P.resolve("half", "cpu")


def test_native_bf16_reads_cpu_flags_and_cuda_capability(monkeypatch):
    flags = {"capability": "AVX512", "avx512_bf16": False, "amx_bf16": False, "amx_fp16": False, "mkldnn": True}
    monkeypatch.setattr(P, "cpu_flags", lambda: dict(flags))
    assert P.native_bf16("cpu")[0] is False
    flags["amx_bf16"] = True
    ok, why = P.native_bf16("cpu")
    assert ok and "amx_bf16" in why
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert P.native_bf16("cuda")[0] is False
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert P.native_bf16("cuda")[0] is True


def test_policies():
    assert P.policy_for("fp32") is None and P.policy_for("fp64") is None
    assert P.policy_for("bf16") == P.MIXED and P.policy_for("fp16").dtype == torch.float16
    assert not P.MIXED.encoders and not P.MIXED.flow_heads and not P.MIXED.flow_out and not P.MIXED.corr
    assert P.MIXED.fusion and P.MIXED.seg_head and P.MIXED.generator and not P.MIXED.sample
    assert all(getattr(P.ALL_REDUCED, g) for g in P.GROUPS)
    assert P.MIXED.with_(fusion=False).fusion is False and P.MIXED.fusion
