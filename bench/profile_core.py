"""Where one pair's time goes: stage timings and the top operators (torch.profiler).

    python bench/profile_core.py [--res 512x384] [--width 1.0] [--threads 1]

Times, for one pair at batch 1, the official monolithic forward (all training outputs) and the
cached inference path split into its stages (garment encoder, person encoder, flow decoder in
inference mode, assembly, generator), then lists the operators that dominate the decoder.
Writes bench/results/profile_core.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from bench_core import _fill, _inputs  # noqa: E402

from gpvton_core import assembly as asm  # noqa: E402
from gpvton_core.generator import TryOnGenerator  # noqa: E402
from gpvton_core.warp import LFGPWarp, stack_parts  # noqa: E402


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", default="512x384")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "profile_core.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    h, w = (int(x) for x in a.res.split("x"))
    warp = _fill(LFGPWarp("vitonhd", a.width))
    gen = _fill(TryOnGenerator(a.width))
    person, garment = _inputs(1, 1, h, w)
    clothes = garment.image * garment.mask
    parts = garment.parts
    L, M, R = parts[:, 0:1], parts[:, 1:2], parts[:, 2:3]
    label = asm.garment_label(parts, "vitonhd", ["upper"])
    cond = person.cond()
    stages: dict[str, float] = {}
    with torch.inference_mode():
        _, stages["monolithic_warp_forward"] = _timed(lambda: warp(
            cond, clothes, garment.mask, label, clothes * L, clothes * M, clothes * R, L, M, R,
            person.preserve_warp, mode="training"))
        gf, stages["encode_garment"] = _timed(lambda: warp.encode_garment(torch.cat([clothes, label], 1)))
        pf, stages["encode_person"] = _timed(lambda: warp.encode_person(cond))
        masks = stack_parts(L, M, R)
        out, stages["decode_inference"] = _timed(lambda: warp.decode(gf, pf, masks, person.preserve_warp,
                                                                    mode="inference"))
        pc, ec = asm.class_table("vitonhd", ["upper"])

        def _assemble():
            cloth, lab = asm.assemble_warp(stack_parts(clothes * L, clothes * M, clothes * R), masks,
                                           out.last_flow, asm.seg_argmax(out.seg_logits),
                                           person.preserve_warp, pc, ec)
            return asm.generator_input(person.image, person.preserve_gen, asm.quantize_uint8(cloth), lab,
                                       person.skin, person.pose, "vitonhd")

        (x, edge), stages["assembly"] = _timed(_assemble)
        _, stages["generator"] = _timed(lambda: gen.infer(x))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            warp.decode(gf, pf, masks, person.preserve_warp, mode="inference")
    ops = [{"op": e.key, "self_cpu_s": e.self_cpu_time_total / 1e6, "calls": e.count}
           for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]]
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e6
    result = {"res": [h, w], "width": a.width, "threads": a.threads, "stages_s": stages,
              "decoder_top_ops": ops, "decoder_profiled_total_s": total}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    for k, v in stages.items():
        print(f"{k:<26} {v:8.2f} s")
    print("decoder, top operators (self CPU):")
    for o in ops:
        print(f"  {o['op']:<40} {o['self_cpu_s']:8.2f} s  ×{o['calls']}")


if __name__ == "__main__":
    main()
