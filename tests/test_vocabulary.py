"""One vocabulary: the labels every layer names agree, and infra's copies match gpvton_core's."""

from __future__ import annotations

import numpy as np

from gpvton_core import scores
from gpvton_core.conditions import densepose, labels
from gpvton_core.conditions.labels import BODY_25, LABEL_NAMES, Joint, Label, Part
from infra import schema


def test_infra_tables_hold_gpvton_cores_categories_and_flags():
    # infra cannot import gpvton_core (layer contract): its copies must not drift.
    assert schema.CATEGORIES == labels.CATEGORIES
    assert schema.FLAGS == scores.FLAGS


def test_label_names_are_the_gp29_names():
    ids = {n: v for n, v in vars(Label).items() if n.isupper()}
    assert {n.lower(): v for n, v in ids.items()} == {n: i for i, n in enumerate(LABEL_NAMES)}


def test_joint_names_are_the_body25_names():
    ids = {n: v for n, v in vars(Joint).items() if n.isupper()}
    assert sorted(ids.values()) == list(range(len(BODY_25)))
    for name, i in ids.items():   # R_SHOULDER ↔ "RShoulder", MID_HIP ↔ "MidHip", L_BIG_TOE ↔ "LBigToe"
        assert name.replace("_", "").lower() == BODY_25[i].lower(), (name, BODY_25[i])


def test_densepose_parts_and_their_mirror():
    ids = {n: v for n, v in vars(Part).items() if n.isupper()}
    assert sorted(ids.values()) == list(range(1, labels.NUM_PARTS))
    for name, i in ids.items():
        if "RIGHT" in name or "LEFT" in name:
            other = name.replace("RIGHT", "@").replace("LEFT", "RIGHT").replace("@", "LEFT")
            assert densepose.MIRROR[i] == ids[other], name
        else:
            assert densepose.MIRROR[i] == i, name
    assert np.array_equal(densepose.MIRROR[densepose.MIRROR], np.arange(labels.NUM_PARTS))


def test_variant_categories():
    assert labels.variant_categories("vitonhd") == ("upper",)
    assert labels.variant_categories("dresscode") == labels.CATEGORIES
