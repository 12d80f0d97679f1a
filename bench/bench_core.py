"""Per-pair time and peak memory of the GP-VTON core, monolithic vs cached cross product.

    python bench/bench_core.py [--res 256x192 512x384] [--width 1.0] [--grid 8] [--max-pairs 8]

Each configuration runs in its own subprocess so that the peak RSS (``ru_maxrss``) belongs to
that configuration alone:

* ``monolithic``: the official way, per pair at batch 1: full warp forward (all training
  outputs, as the official forward computes them) + assembly + generator.
* ``cached_fp32`` / ``cached_bf16``: :class:`gpvton_core.inference.TryOnPipeline` on a
  G×P cross product (G = P = ``--grid``): encoders once per garment / person, decoder +
  assembly + generator per pair. Only ``--max-pairs`` pairs are timed; the per-pair time is
  ``(encode time of all G+P rows) / (G·P) + mean pair time``.

Weights come from the parity weight generator (VITON-HD warp, gain 1) so the networks are in a
realistic numeric regime; inputs are the parity fixture's persons / garments, resized and
rolled to make G and P distinct rows. SSIM (torchmetrics) compares bf16 vs fp32 try-on images.
Results go to bench/results/core.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = Path(os.environ.get("GPVTON_SPEC", REPO.parent / "shared" / "spec"))
OUT = REPO / "bench" / "results" / "core.json"


def _fill(model):
    """Load deterministic parity weights (any width: shapes are taken from the model itself)."""
    spec = importlib.util.spec_from_file_location("fill_weights_b", SPEC / "parity" / "fill_weights.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(mod.fill_state_dict(shapes, 1234), strict=True)
    return model


def _inputs(g: int, p: int, h: int, w: int):
    import numpy as np
    import torch
    import torch.nn.functional as F

    from gpvton_core.inference import GarmentInputs, PersonInputs

    z = np.load(SPEC / "parity" / "warp_vitonhd.npz", allow_pickle=False)
    t = lambda k: torch.from_numpy(z[k]).float()  # noqa: E731
    near = lambda x: F.interpolate(x, size=(h, w), mode="nearest")  # noqa: E731
    bil = lambda x: F.interpolate(x, size=(h, w), mode="bilinear")  # noqa: E731
    b = z["in_color"].shape[0]

    def rows(x, n):
        return torch.cat([torch.roll(x[i % b:i % b + 1], shifts=(i // b) * 4, dims=-1) for i in range(n)])

    parts = torch.cat([t(f"in_flat_clothes_{k}_mask") for k in ("left", "middle", "right")], 1)
    garment = GarmentInputs(rows(bil(t("in_color")), g), rows(near(t("in_edge")), g), rows(near(parts), g),
                            ["upper"] * g)
    pm = rows(near(t("in_preserve_mask3")), p)
    person = PersonInputs(image=rows(bil(t("in_color")), p), densepose=rows(near(t("in_densepose_label")), p),
                          pose=rows(near(t("in_pose")), p), preserve_warp=pm, preserve_gen=pm.clone(),
                          skin=torch.linspace(-0.5, 0.5, 3).expand(p, 3).contiguous())
    return person, garment


def run_one(cfg: dict) -> dict:
    import torch

    from gpvton_core import assembly as asm
    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.inference import TryOnPipeline
    from gpvton_core.warp import LFGPWarp

    torch.set_num_threads(cfg["threads"])
    h, w = cfg["res"]
    warp = _fill(LFGPWarp("vitonhd", cfg["width"]))
    gen = _fill(TryOnGenerator(cfg["width"]))
    g = pn = cfg["grid"]
    person, garment = _inputs(g, pn, h, w)
    res: dict = dict(cfg)
    if cfg["mode"] == "monolithic":
        pipe = TryOnPipeline(warp, gen, resolution=(h, w))
        n = min(cfg["max_pairs"], g * pn)
        times = []
        with torch.inference_mode():
            for k in range(n):
                gi, pi = k % g, k // g
                t0 = time.perf_counter()
                clothes = garment.image[gi:gi + 1] * garment.mask[gi:gi + 1]
                parts = garment.parts[gi:gi + 1]
                L, M, R = parts[:, 0:1], parts[:, 1:2], parts[:, 2:3]
                pin = type(person)(*(getattr(person, f)[pi:pi + 1] for f in
                                     ("image", "densepose", "pose", "preserve_warp", "preserve_gen", "skin")))
                out = warp(pin.cond(), clothes, garment.mask[gi:gi + 1], asm.garment_label(parts, "vitonhd", ["upper"]),
                           clothes * L, clothes * M, clothes * R, L, M, R, pin.preserve_warp, mode="training")
                pc, ec = asm.class_table("vitonhd", ["upper"])
                cloth, lab = asm.assemble_warp(torch.cat([clothes * L, clothes * M, clothes * R]), torch.cat([L, M, R]),
                                               out.last_flow, asm.seg_argmax(out.seg_logits), pin.preserve_warp, pc, ec)
                cloth = asm.quantize_uint8(cloth)
                x, edge = asm.generator_input(pin.image, pin.preserve_gen, cloth, lab, pin.skin, pin.pose, "vitonhd")
                asm.compose(gen.infer(x), cloth, edge)
                times.append(time.perf_counter() - t0)
        steady = times[1:] if n >= 3 else times  # the first call carries one-off allocator / kernel warm-up
        res.update(pairs_timed=len(steady), per_pair_s=sum(steady) / len(steady), pair_times_s=times)
    else:
        prec = "bf16" if cfg["mode"] == "cached_bf16" else "fp32"
        pipe = TryOnPipeline(warp, gen, resolution=(h, w), precision=prec)
        t0 = time.perf_counter()
        gb = pipe.encode_garments(garment)
        pb = pipe.encode_persons(person)
        enc = time.perf_counter() - t0
        n = min(cfg["max_pairs"], g * pn)
        gi = torch.arange(g).repeat(pn)[:n]
        pi = torch.arange(pn).repeat_interleave(g)[:n]
        t0 = time.perf_counter()
        out = pipe.run_pairs(gb, pb, gi, pi, batch_size=cfg["batch"])
        pair = (time.perf_counter() - t0) / n
        res.update(pairs_timed=n, encode_s=enc, pair_s=pair, per_pair_s=enc / (g * pn) + pair)
        torch.save(out.tryon, cfg["images"])
    res["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--res", nargs="+", default=["256x192", "512x384"])
    ap.add_argument("--modes", nargs="+", default=["monolithic", "cached_fp32", "cached_bf16"])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--grid", type=int, default=8, help="G = P rows of the cross product")
    ap.add_argument("--max-pairs", type=int, default=8, help="pairs actually timed per config")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        print(json.dumps(run_one(json.loads(a._child))))
        return
    results = []
    tmp = a.out.parent / "core_images.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    for r in a.res:
        h, w = (int(v) for v in r.split("x"))
        imgs = {}
        for mode in a.modes:
            cfg = dict(mode=mode, res=[h, w], width=a.width, grid=a.grid, max_pairs=a.max_pairs, batch=a.batch,
                       threads=a.threads, images=str(tmp / f"{r}_{mode}.pt"))
            t0 = time.time()
            proc = subprocess.run([sys.executable, __file__, "--_child", json.dumps(cfg)], capture_output=True,
                                  text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{r} {mode} failed")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res["wall_s"] = time.time() - t0
            imgs[mode] = res["images"]
            results.append(res)
            print(f"{r:>8} {mode:<12} per pair {res['per_pair_s']:8.3f} s   maxrss {res['maxrss_mb']:8.0f} MB", flush=True)
        if {"cached_fp32", "cached_bf16"} <= set(imgs):
            import torch
            from torchmetrics.functional.image import structural_similarity_index_measure as ssim

            a32 = (torch.load(imgs["cached_fp32"]) + 1) / 2
            a16 = (torch.load(imgs["cached_bf16"]) + 1) / 2
            s = float(ssim(a16, a32, data_range=1.0))
            results.append({"res": [h, w], "ssim_bf16_vs_fp32": s, "pairs": a32.shape[0]})
            print(f"{r:>8} SSIM bf16 vs fp32: {s:.4f}", flush=True)
        by = {x["mode"]: x["per_pair_s"] for x in results if x.get("res") == [h, w] and "mode" in x}
        if "monolithic" in by:
            for m in ("cached_fp32", "cached_bf16"):
                if m in by:
                    print(f"{r:>8} {m} / monolithic = {by[m] / by['monolithic']:.3f}", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"host_threads": a.threads, "results": results}, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
