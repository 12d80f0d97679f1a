"""The parser network and its label schemes: shapes at any size, the flip swap tables against the
class names, the GP-29 → LIP collapse against the LIP → GP table, mean IoU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpvton_core.conditions.labels import LABEL_NAMES
from gpvton_core.conditions.parsing import LIP_TO_GP
from gpvton_core.parser import (GP_TO_LIP, LR_PAIRS, SCHEMES, ParserNet, class_names, collapse_gp29,
                                flip_labels, flip_permutation, mean_iou, normalize_rgb)


@pytest.mark.parametrize("size", [(64, 48), (50, 37)])
def test_logits_at_the_input_size(size, one_thread):
    torch.manual_seed(0)
    net = ParserNet(29, width=0.125).eval()
    x = normalize_rgb(torch.randint(0, 256, (2, 3, *size)))
    y = net(x)
    assert y.shape == (2, 29, *size) and torch.isfinite(y).all()
    assert ParserNet(20, width=0.125)(x[:1]).shape[1] == 20


@pytest.fixture
def one_thread():
    """Two threads on a shared 2-core machine spin against each other: 20× slower steps."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_one_photo_per_batch_learns(one_thread):
    """Instance norm without running stats: a few steps on one photo fit its labels."""
    torch.manual_seed(0)
    net = ParserNet(3, width=0.125)
    x = normalize_rgb(torch.randint(0, 256, (1, 3, 32, 32)))
    y = torch.zeros(1, 32, 32, dtype=torch.long)
    y[:, 8:24, 4:16], y[:, 8:24, 16:28] = 1, 2
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def _side(name: str) -> tuple[str, str]:
    n = name.lower().replace("-", "_")
    for side in ("left", "right"):
        if side in n.split("_"):
            return side, "_".join(p for p in n.split("_") if p != side)
    return "", n


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_flip_pairs_are_the_left_right_classes(scheme):
    names = class_names(scheme)
    assert len(names) == SCHEMES[scheme]
    sided = {}
    for i, n in enumerate(names):
        side, base = _side(n)
        if side:
            sided.setdefault(base, {})[side] = i
    want = sorted(tuple(sorted(d.values())) for d in sided.values())
    assert sorted(tuple(sorted(p)) for p in LR_PAIRS[scheme]) == want
    perm = flip_permutation(scheme)
    assert sorted(perm) == list(range(len(names))) and all(perm[perm[i]] == i for i in perm)


def test_flip_labels_mirrors_and_swaps():
    lab = np.array([[15, 0, 9, 2]], np.uint8)              # left arm, bg, left pants, hair
    assert flip_labels(lab, "gp29").tolist() == [[2, 10, 0, 16]]
    assert flip_labels(flip_labels(lab, "gp29"), "gp29").tolist() == lab.tolist()


def test_gp29_to_lip_inverts_lip_to_gp():
    assert len(GP_TO_LIP) == len(LABEL_NAMES)
    for lip, gp in enumerate(LIP_TO_GP):
        assert GP_TO_LIP[gp] == lip, (lip, gp)
    # sleeves fold into their garment, the pants halves into pants
    for gp, lip in ((21, 5), (22, 5), (24, 6), (25, 6), (26, 7), (27, 7), (10, 9)):
        assert GP_TO_LIP[gp] == lip
    gp = np.arange(29, dtype=np.uint8).reshape(1, -1)
    assert collapse_gp29(gp, "gp29") is not None and (collapse_gp29(gp, "lip") < 20).all()
    with pytest.raises(ValueError):
        collapse_gp29(gp, "atr")


def test_mean_iou():
    a = np.array([0, 0, 1, 1, 2])
    assert mean_iou(a, a, 3) == 1.0
    b = np.array([0, 1, 1, 1, 2])                          # IoU: class 0 1/2, class 1 2/3, class 2 1
    assert mean_iou(b, a, 3) == pytest.approx((0.5 + 2 / 3 + 1) / 3)
