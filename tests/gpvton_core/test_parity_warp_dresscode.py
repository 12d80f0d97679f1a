"""Parity of the dresscode warping module with the official one (spec/parity/warp_dresscode.npz): float64 on
the training path (tolerance 1e-9), float32 on it and on the production path (split encoders +
``decode_pairs``, channels-last). A module of its own so that parallel test workers can run it
beside the other networks' (see test_parity.py)."""

import pytest
import torch

from gpvton_core import parity


@pytest.mark.parametrize("dtype", [
    pytest.param(torch.float64, id="float64"),
    pytest.param(torch.float32, id="float32"),
    pytest.param(parity.Run(torch.float32, "inference", True), id="float32-inference-cl"),
])
def test_warp_dresscode(parity_case, dtype):
    parity_case("warp_dresscode", dtype)
