import pytest
import json

import torch

from gpvton_core.generator import TryOnGenerator

from .conftest import TINY

pytestmark = pytest.mark.usefixtures("single_thread")


def test_keys_identical_at_any_width():
    small = TryOnGenerator(TINY).state_dict()
    assert list(small) == list(TryOnGenerator(0.5).state_dict())
    assert len(small) == 261
    assert all(not k.endswith("bias") or "model.model.0" not in k for k in small)


def test_keys_match_the_official_table(spec_dir):
    """The official checkpoint's key table (shared data: skips locally when absent, fails under CI=true)."""
    table = spec_dir / "checkpoints" / "generator_keys.json"
    assert list(TryOnGenerator(TINY).state_dict()) == list(json.loads(table.read_text()))


def test_shapes_and_resolution():
    g = TryOnGenerator(TINY)
    out = g.infer(torch.randn(2, 36, 64, 96))
    assert out.shape == (2, 4, 64, 96)


def test_infer_is_eval_mode_and_batch_independent():
    torch.manual_seed(0)
    g = TryOnGenerator(TINY).double()
    # non-trivial running statistics, so that train/eval differ
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    g.train()
    x = torch.randn(4, 36, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        train_out = g(x)
        batch = g.infer(x)
        single = torch.cat([g.infer(x[i:i + 1]) for i in range(4)])
        shuffled = g.infer(x[[3, 1, 0, 2]])
    assert not g.training
    assert torch.allclose(batch, single, atol=1e-12)
    assert torch.allclose(shuffled, batch[[3, 1, 0, 2]], atol=1e-12)
    assert not torch.allclose(train_out, batch, atol=1e-3)
