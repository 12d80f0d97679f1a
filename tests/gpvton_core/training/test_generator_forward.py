"""The generator stage trains on the warps ``gpvton render`` makes: at 1024 rows and up the same
half-resolution warp, the same assembly, the same composition (tiny width, 1024×64 pictures)."""

from __future__ import annotations

import torch

from gpvton_core import assembly as asm
from gpvton_core.generator import TryOnGenerator
from gpvton_core.inference import TryOnPipeline
from gpvton_core.tryon_batches import GarmentInputs, PersonInputs
from gpvton_core.training.generator_forward import generator_forward
from gpvton_core.training.paired import assembled_warp
from gpvton_core.warp import LFGPWarp

from ..conftest import TINY, make_inputs

H, W = 1024, 64   # 1024 rows take the half-resolution warp; a narrow picture keeps it cheap


def _training_batch(person: PersonInputs, garment: GarmentInputs, variant: str) -> dict:
    """The keys of a collated training batch (gpvton_core.training.batch) the forward reads."""
    cats = garment.category
    part_cls, extra_cls = asm.class_table(variant, cats)
    clothes = garment.image * garment.mask
    return {"cond": person.cond(), "preserve": person.preserve_warp, "garment": clothes,
            "garment_input": torch.cat((clothes, asm.garment_label(garment.parts, variant, cats)), 1),
            "garment_parts": garment.parts[:, :, None], "type_map": asm.type_map(cats, (H, W), clothes.dtype),
            "part_classes": part_cls.tolist(), "extra_classes": extra_cls.tolist(), "image": person.image,
            "preserve_gen": person.preserve_gen, "skin": person.skin, "pose": person.pose}


def test_training_forward_at_1024_is_the_render_path(single_thread):
    torch.manual_seed(0)
    warp, gen = LFGPWarp("dresscode", TINY), TryOnGenerator(TINY)
    # float64: uint8 truncation would turn float32 rounding noise into 1/255 steps
    pipe = TryOnPipeline(warp, gen, resolution=(H, W), precision="fp64", channels_last=False)
    assert pipe.half_res_warp and asm.half_res_warp(H)
    person, garment = make_inputs(2, 2, H, W, ["lower", "dresses"], seed=2)
    out = pipe.run_pairs(pipe.encode_garments(garment), pipe.encode_persons(person), [0, 1], [0, 1])
    b = {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v
         for k, v in _training_batch(person, garment, "dresscode").items()}
    with torch.no_grad():
        w = assembled_warp(warp, b)
        x, rendered, tryon, mask, real = generator_forward(gen.eval(), warp, b, "dresscode")
    assert torch.equal(w["seg"], out.seg) and torch.equal(w["label"].round().long(), out.warped_label)
    s = w["seg"][:, 0]                              # the argmax came back ×2 nearest from half resolution
    assert torch.equal(s[:, ::2, ::2], s[:, 1::2, 1::2])
    torch.testing.assert_close(asm.quantize_uint8(w["cloth"]), out.warped_cloth, rtol=0, atol=1e-9)
    torch.testing.assert_close(w["part_masks"], out.warped_part_masks, rtol=0, atol=1e-9)
    assert x.shape == (2, 36, H, W) and torch.equal(real, b["image"])
    torch.testing.assert_close(tryon, out.tryon, rtol=0, atol=1e-9)
    torch.testing.assert_close(mask, out.composition_mask, rtol=0, atol=1e-9)
