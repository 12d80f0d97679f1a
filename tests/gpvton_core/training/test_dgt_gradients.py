"""DGT: with truncation on, the warped predictions get no gradient inside the truncated region."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gpvton_core.training import dgt, losses as L
from gpvton_core.warp import LFGPWarp
from pipelines.synthetic.catalogue import make_catalogue

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pipelines"))
from synthetic_fixtures import upper_training_batch  # noqa: E402


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("dgt")
    make_catalogue(root, n_garments=3, n_persons=6, height=128, width=96, seed=5)
    return upper_training_batch(root, "vitonhd", n=2, pc_ratio=1.2)


def _grads(batch, truncate: bool):
    torch.manual_seed(0)
    net = LFGPWarp("vitonhd", width=0.0625)
    b = batch
    parts = b["garment_parts"]
    out = net(b["cond"], b["garment"], b["garment_mask"], b["garment_input"][:, 3:4],
              *[b["garment"] * parts[:, k] for k in range(3)], *[parts[:, k] for k in range(3)], b["preserve"])
    for t in out.part_images + out.full_images + out.part_masks + out.full_masks:
        t.retain_grad()
    rng = np.random.default_rng(0)
    choices = [dgt.choose_region(float(r), "vitonhd", c, rng) for r, c in zip(b["pc_ratio"].tolist(), b["category"])]
    pm1, pm2 = dgt.loss_masks(b, choices, "vitonhd")
    tp, tf = dgt.truncation_masks(b, pm1, pm2, "vitonhd")
    terms = L.warp_losses(out, b, "vitonhd", t_parts=tp if truncate else None, t_full=tf if truncate else None)
    # the terms DGT governs (the parsing branch also reads the warped masks: not a DGT term)
    (terms["l1"] + terms["mask"] + terms["full_l1"] + terms["full_mask"]).backward()
    return out, tp, tf


def test_gradients_zero_inside_truncated_region(batch):
    out, tp, tf = _grads(batch, truncate=True)
    for num in range(5):
        size = tuple(out.part_images[num].shape[-2:])
        t = dgt.at_level(tp, size).bool()                                 # 3B×1×h×w
        assert t.any() and (~t).any()
        for x in (out.part_images[num], out.part_masks[num]):
            g = x.grad
            assert g is not None
            inside = g.masked_select(t.expand_as(g))
            assert float(inside.abs().max()) == 0.0
            assert float(g.masked_select((~t).expand_as(g)).abs().max()) > 0
        tfl = dgt.at_level(tf, size).bool()
        for x in (out.full_images[num], out.full_masks[num]):
            assert float(x.grad.masked_select(tfl.expand_as(x.grad)).abs().max()) == 0.0
    # the finest level's truncated region is a real part of the picture
    assert float(dgt.at_level(tp, tuple(out.part_images[-1].shape[-2:])).mean()) > 0.05


def test_gradients_flow_inside_region_without_dgt(batch):
    out, tp, tf = _grads(batch, truncate=False)
    for num in (3, 4):
        size = tuple(out.part_images[num].shape[-2:])
        t = dgt.at_level(tp, size).bool()
        g = out.part_images[num].grad
        assert float(g.masked_select(t.expand_as(g)).abs().max()) > 0
        gm = out.part_masks[num].grad
        assert float(gm.masked_select(t.expand_as(gm)).abs().max()) > 0
