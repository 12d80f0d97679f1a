"""Parity with the official networks on the reference fixtures (spec/parity).

float64 is the sharpest check (tolerance 1e-9); float32 checks the tolerances a production run
lives with, also on the production path (split encoders + ``decode_pairs``, channels-last), whose
channels-last convolutions and instance norms must stay within them. Every network runs in both (the Dress Code float64 case is the slowest test of the
suite, about a minute on a quiet 2-core machine). ``python -m gpvton_core.parity DIR --dtype both``
is the same check from the command line.
"""

import shutil

import numpy as np
import pytest
import torch

from gpvton_core import parity

CASES = [
    pytest.param("warp_vitonhd", torch.float64, id="warp_vitonhd-float64"),
    pytest.param("generator", torch.float64, id="generator-float64"),
    pytest.param("generator", torch.float32, id="generator-float32"),
    pytest.param("warp_dresscode", torch.float32, id="warp_dresscode-float32"),
    pytest.param("warp_vitonhd", torch.float32, id="warp_vitonhd-float32"),
    pytest.param("warp_dresscode", torch.float64, id="warp_dresscode-float64"),
    pytest.param("warp_vitonhd", parity.Run(torch.float32, "inference", True), id="warp_vitonhd-float32-inference-cl"),
    pytest.param("warp_dresscode", parity.Run(torch.float32, "inference", True), id="warp_dresscode-float32-inference-cl"),
    pytest.param("generator", parity.Run(torch.float32, "training", True), id="generator-float32-cl"),
]


@pytest.fixture(scope="module")
def fixtures(spec_dir):
    d = spec_dir / "parity"
    if not any(d.glob("*.npz")):
        pytest.fail(f"no parity fixtures in {d}")
    return d


@pytest.mark.parametrize("name,dtype", CASES)
def test_fixture(fixtures, name, dtype):
    path = fixtures / f"{name}.npz"
    assert path.is_file(), f"parity fixture missing: {path}"
    lines: list[str] = []
    fill = parity.load_fill_weights(fixtures, None)
    checks = parity.run_fixture(path, fill, fixtures.parent / "checkpoints", [dtype], log=lines.append)
    print("\n".join(lines))
    assert checks, "fixture not recognised"
    failed = [c.line() for c in checks if not c.ok]
    assert not failed, "\n".join(failed)
    names = {c.name for c in checks}
    if name == "generator":
        assert {"in_gen_inputs", "ref_gen_raw", "ref_p_tryon"} <= names
    elif isinstance(dtype, parity.Run) and dtype.path == "inference":  # no training-only debug outputs
        assert {"ref_last_flow", "ref_seg_logits", "ref_warped_cloth", "ref_warped_label"} == names
    else:
        assert {"ref_last_flow", "ref_seg_logits", "ref_warped_cloth", "ref_warped_label", "dbg_attention_l0",
                "dbg_delta_l1_refine"} <= names


def test_cli_exit_codes(fixtures, tmp_path, capsys):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    shutil.copy(fixtures / "generator.npz", good / "generator.npz")
    with np.load(fixtures / "generator.npz", allow_pickle=False) as f:
        z = {k: f[k] for k in f.files}
    z["ref_gen_raw"] = z["ref_gen_raw"] + 1e-3  # far above the float32 tolerance (2e-5)
    np.savez_compressed(bad / "generator.npz", **z)
    keys = ["--spec", str(fixtures), "--keys-dir", str(fixtures.parent / "checkpoints")]
    assert parity.main([str(good), *keys, "--dtype", "float32"]) == 0
    assert parity.main([str(bad), *keys, "--dtype", "float32"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "ref_gen_raw" in out
    with pytest.raises(FileNotFoundError):
        parity.main([str(tmp_path), *keys])
