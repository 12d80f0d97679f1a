"""Parity with the official networks on the reference fixtures (spec/parity).

float64 is the sharpest check (tolerance 1e-9); float32 checks the tolerances a production run
lives with, also on the production path (split encoders + ``decode_pairs``, channels-last), whose
channels-last convolutions and instance norms must stay within them. Every network runs in both.
One module per network (here the generator; the two warping modules beside it) so that parallel test workers can take them apart: the Dress Code float64 case is the
slowest test of the suite, about 90 s on a quiet 2-core machine. ``python -m gpvton_core.parity DIR
--dtype both`` is the same check from the command line.
"""

import shutil

import numpy as np
import pytest
import torch

from gpvton_core import parity

CASES = [
    pytest.param(torch.float64, id="float64"),
    pytest.param(torch.float32, id="float32"),
    pytest.param(parity.Run(torch.float32, "training", True), id="float32-cl"),
]


@pytest.mark.parametrize("dtype", CASES)
def test_generator(parity_case, dtype):
    parity_case("generator", dtype)


def test_cli_exit_codes(parity_fixtures, tmp_path, capsys):
    fixtures = parity_fixtures
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
