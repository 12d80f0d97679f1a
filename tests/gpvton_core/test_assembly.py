import pytest
import torch

from gpvton_core import assembly as asm


def _identity_flow(b: int, h: int, w: int) -> torch.Tensor:
    """align_corners=False identity grid (pixel centres)."""
    xs = (2 * torch.arange(w, dtype=torch.float64) + 1) / w - 1
    ys = (2 * torch.arange(h, dtype=torch.float64) + 1) / h - 1
    return torch.stack((xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w))).expand(b, 2, h, w)


def test_part_classes_table():
    assert asm.part_classes("vitonhd", "upper") == ((1, 2, 3), (4, 5, 6))
    assert asm.part_classes("dresscode", "upper") == ((1, 2, 3), (7, 8, 9))
    assert asm.part_classes("dresscode", "dresses") == ((1, 2, 3), (7, 8, 9))
    assert asm.part_classes("dresscode", "lower") == ((4, 5, 6), (7, 8, 9))
    with pytest.raises(ValueError):
        asm.part_classes("vitonhd", "lower")


def test_seg_argmax_ties_go_to_lowest_class():
    logits = torch.zeros(1, 7, 2, 2)
    logits[0, 3, 0, 0] = 0.5
    logits[0, 5, 0, 0] = 0.5
    s = asm.seg_argmax(logits)
    assert s[0, 0, 0, 0] == 3 and s[0, 0, 1, 1] == 0


def test_assemble_selects_parts_by_parsing_and_removes_preserve():
    b, h, w = 2, 8, 6
    g = torch.Generator().manual_seed(0)
    img = torch.rand(b, 3, h, w, generator=g, dtype=torch.float64) * 2 - 1
    masks = torch.zeros(b, 3, h, w, dtype=torch.float64)
    masks[:, 0, :, 4:] = 1
    masks[:, 1, :, 2:4] = 1
    masks[:, 2, :, :2] = 1
    part_images = (img.unsqueeze(1) * masks.unsqueeze(2)).transpose(0, 1).reshape(3 * b, 3, h, w)
    part_masks = masks.transpose(0, 1).reshape(3 * b, 1, h, w)
    flow = _identity_flow(3 * b, h, w)
    # sample 0 (VITON-HD-like classes): parsing says "torso" (2) everywhere except an arm row
    seg = torch.full((b, 1, h, w), 2, dtype=torch.long)
    seg[:, :, 0] = 4
    seg[1] = 5  # sample 1 (Dress Code lower): middle part everywhere
    preserve = torch.zeros(b, 1, h, w, dtype=torch.float64)
    preserve[:, :, -1] = 1
    pc, ec = asm.class_table("dresscode", ["upper", "lower"])
    pc[0], ec[0] = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])  # sample 0 uses VITON-HD classes
    cloth, label = asm.assemble_warp(part_images, part_masks, flow, seg, preserve, pc, ec)
    mid = masks[:, 1:2]
    expect = img * mid * (seg != 4) * (1 - preserve)
    assert torch.allclose(cloth, expect, atol=1e-12)
    assert label[0, 0, 0].tolist() == [4] * w  # arm label added after the preserve step
    assert label[0, 0, 3].tolist() == [0, 0, 2, 2, 0, 0]
    assert label[0, 0, -1].tolist() == [0] * w  # preserved
    assert label[1, 0, 3].tolist() == [0, 0, 5, 5, 0, 0]


def test_quantize_uint8_matches_official_handover():
    x = torch.tensor([0.0, -1.0, 1.0, 0.5, -0.9999])
    q = asm.quantize_uint8(x)
    assert q[0].item() == pytest.approx(-0.0039216, abs=1e-7)  # grey 127
    assert q[1] == -1 and q[2] == 1
    assert asm.to_uint8(x).tolist() == [127, 0, 255, 191, 0]


@pytest.mark.parametrize("variant", ["vitonhd", "dresscode"])
def test_generator_input_channels(variant):
    b, h, w = 1, 4, 4
    lab = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0, 0, 0, 0], dtype=torch.float32).view(1, 1, h, w)
    img = torch.ones(b, 3, h, w)
    pres = torch.ones(b, 1, h, w)
    cloth = torch.full((b, 3, h, w), 0.25)
    skin = torch.tensor([[0.1, 0.2, 0.3]])
    pose = -torch.ones(b, 25, h, w)
    x, edge = asm.generator_input(img, pres, cloth, lab, skin, pose, variant)
    assert x.shape == (b, 36, h, w)
    flat = lambda c: x[0, c].flatten().tolist()  # noqa: E731
    if variant == "vitonhd":
        assert flat(6)[:10] == [0, 1, 1, 1, 0, 0, 0, 0, 0, 0]
        assert flat(7)[:10] == pytest.approx([0, 0, 0, 0, 1 / 3, 2 / 3, 1, 0, 0, 0])
        assert flat(0)[:10] == [1] * 10  # VITON-HD keeps the preserve mask as is
    else:
        assert flat(6)[:10] == [0, 1, 1, 1, 1, 1, 1, 0, 0, 0]
        assert flat(7)[:10] == pytest.approx([0, 0, 0, 0, 0, 0, 0, 1 / 3, 2 / 3, 1])
        assert flat(0)[:10] == [1, 0, 0, 0, 0, 0, 0, 1, 1, 1]  # × (1 − warped mask)
    assert torch.equal(x[0, 8:11, 2, 2], skin[0]) and torch.equal(edge, x[:, 6:7])
    assert torch.all(x[:, 11:] == -1) and torch.all(x[:, 3:6] == 0.25)


def test_compose():
    raw = torch.randn(2, 4, 8, 8)
    cloth = torch.rand(2, 3, 8, 8)
    edge = (torch.rand(2, 1, 8, 8) > 0.5).float()
    tryon, rendered, mask = asm.compose(raw, cloth, edge)
    assert torch.allclose(mask, torch.sigmoid(raw[:, 3:]) * edge)
    assert torch.allclose(tryon[edge.expand_as(tryon) == 0], torch.tanh(raw[:, :3])[edge.expand_as(tryon) == 0])
    assert torch.allclose(tryon, cloth * mask + rendered * (1 - mask))


def test_half_resolution_helpers():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert asm.half_nearest(x)[0, 0].tolist() == [[0, 2], [8, 10]]  # even indices
    assert asm.half_bilinear(x)[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]  # exact 2×2 means
    lab = torch.tensor([[[[1, 2], [3, 4]]]])
    assert asm.upsample_labels(lab)[0, 0].tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert asm.upsample_labels(lab).dtype == lab.dtype
    flow = torch.rand(3, 2, 4, 3)
    assert asm.upsample_flow(flow).shape == (3, 2, 8, 6)


def test_garment_label_and_type_map():
    parts = torch.zeros(2, 3, 2, 2)
    parts[:, 0, 0, 0] = parts[:, 1, 0, 1] = parts[:, 2, 1, 0] = 1
    lab = asm.garment_label(parts, "dresscode", ["upper", "lower"])
    assert lab[0, 0].flatten().tolist() == pytest.approx([1 / 6, 2 / 6, 3 / 6, 0])
    assert lab[1, 0].flatten().tolist() == pytest.approx([4 / 6, 5 / 6, 1, 0])
    assert asm.garment_label(parts[:1], "vitonhd", ["upper"])[0, 0, 0, 1] == pytest.approx(2 / 3)
    tm = asm.type_map(["upper", "lower", "dresses"], (2, 3))
    assert tm.shape == (3, 1, 2, 3) and tm[:, 0, 0, 0].tolist() == pytest.approx([1 / 3, 2 / 3, 1])
