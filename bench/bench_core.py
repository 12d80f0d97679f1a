"""Per-pair time, accuracy and peak memory of the GP-VTON core: monolithic vs cached cross product.

    python bench/bench_core.py [--res 256x192 512x384] [--modes monolithic cached_fp32 cached_bf16]
                               [--weights parity|demo] [--grid 8] [--max-pairs 64] [--batch 8]
    python bench/bench_core.py --ablation --res 256x192 --grid 2       # which ops cost bf16 accuracy

Each configuration runs in its own subprocess so that the peak RSS (``ru_maxrss``) belongs to it:

* ``monolithic``: the official way, per pair at batch 1, NCHW float32: full warp forward (all
  training outputs, as the official forward computes them) + assembly + generator.
  ``--mono-pairs`` pairs are timed (its time per pair does not depend on the cross product).
* ``cached_<precision>``: :class:`gpvton_core.inference.TryOnPipeline` (channels-last) on a G×P
  cross product (G = P = ``--grid``), person-major, in unit batches of ``--batch``: encoders once
  per garment / person, decoder + assembly + generator per pair. ``--max-pairs`` pairs are timed;
  per pair = (encode time of all G+P rows) / (G·P) + mean pair time. Precision: ``fp32``,
  ``bf16`` (the MIXED policy), ``auto``; suffixes ``_nchw`` (old layout), ``_compile``
  (torch.compile), ``_allbf16`` (every group in bf16).

Every cached mode's try-on images are compared with ``cached_fp32`` (SSIM, torchmetrics, images in
[0,1]); ``ssim_vs_fp32`` ≥ 0.99 is the accuracy bar for reduced precision. Each config also
records the FLOPs per pair (torch's FlopCounterMode, convolutions and matmuls) and the parent
measures this CPU's convolution throughput (a lone 256-channel 3×3 conv, fp32 NCHW / fp32
channels-last / bf16 channels-last): ``floor_s`` = FLOPs ÷ that GFLOP/s.

``--ablation`` runs ``cached_bf16`` with every group in bf16 and then with each group in float32
in turn (:data:`gpvton_core.precision.GROUPS`), so the SSIM gain per group shows which ops cost
the accuracy; then the default policy with each group switched (``_toggle_``) shows what each
of its choices is worth. Weights: the parity weight generator (``parity``, official width, VITON-HD warp,
gain 1) or the shipped demo model (``demo``, Dress Code, width 1/16). Inputs: the parity
fixture's persons / garments, resized and rolled to make G and P distinct rows.
Results: bench/results/core[_TAG].json, with the machine block of bench/sysinfo.py.
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
sys.path.insert(0, str(REPO / "bench"))
SPEC = Path(os.environ.get("GPVTON_SPEC", REPO.parent / "shared" / "spec"))
DEMO = REPO / "pipelines" / "assets" / "demo"
RESULTS = REPO / "bench" / "results"


def _fill(model):
    """Load deterministic parity weights (any width: shapes are taken from the model itself)."""
    spec = importlib.util.spec_from_file_location("fill_weights_b", SPEC / "parity" / "fill_weights.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(mod.fill_state_dict(shapes, 1234), strict=True)
    return model


def models(weights: str, width: float = 1.0):
    """(warp, generator, variant) for ``parity`` (official width unless told) or ``demo`` weights."""
    from gpvton_core.checkpoints import build_from_checkpoint
    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.warp import LFGPWarp

    if weights == "demo":
        warp, _ = build_from_checkpoint(str(DEMO / "warp.safetensors"))
        gen, _ = build_from_checkpoint(str(DEMO / "generator.safetensors"))
        return warp, gen, warp.variant
    return _fill(LFGPWarp("vitonhd", width)), _fill(TryOnGenerator(width)), "vitonhd"


def _inputs(g: int, p: int, h: int, w: int, variant: str = "vitonhd"):
    import numpy as np
    import torch
    import torch.nn.functional as F

    from gpvton_core.tryon_batches import GarmentInputs, PersonInputs

    z = np.load(SPEC / "parity" / f"warp_{variant}.npz", allow_pickle=False)
    t = lambda k: torch.from_numpy(z[k]).float()  # noqa: E731
    near = lambda x: F.interpolate(x, size=(h, w), mode="nearest")  # noqa: E731
    bil = lambda x: F.interpolate(x, size=(h, w), mode="bilinear")  # noqa: E731
    b = z["in_color"].shape[0]
    cats = [str(c) for c in z["in_c_type"]]

    def rows(x, n):
        return torch.cat([torch.roll(x[i % b:i % b + 1], shifts=(i // b) * 4, dims=-1) for i in range(n)])

    parts = torch.cat([t(f"in_flat_clothes_{k}_mask") for k in ("left", "middle", "right")], 1)
    gcat = [cats[i % b] if variant == "dresscode" else "upper" for i in range(g)]
    garment = GarmentInputs(rows(bil(t("in_color")), g), rows(near(t("in_edge")), g), rows(near(parts), g), gcat)
    pm = rows(near(t("in_preserve_mask3")), p)
    person = PersonInputs(image=rows(bil(t("in_color")), p), densepose=rows(near(t("in_densepose_label")), p),
                          pose=rows(near(t("in_pose")), p), preserve_warp=pm, preserve_gen=pm.clone(),
                          skin=torch.linspace(-0.5, 0.5, 3).expand(p, 3).contiguous())
    return person, garment


def conv_peak(threads: int, size: tuple[int, int] = (128, 96), reps: int = 5) -> dict[str, float]:
    """GFLOP/s of a lone 256→256 3×3 convolution: fp32 NCHW, fp32 channels-last, bf16 channels-last."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    x = torch.randn(1, 256, *size)
    wt = torch.randn(256, 256, 3, 3)
    flops = 2 * 9 * 256 * 256 * size[0] * size[1]
    cl = torch.channels_last
    out = {}
    with torch.inference_mode():
        for name, xx, ww in (("fp32_nchw", x, wt), ("fp32_cl", x.contiguous(memory_format=cl), wt.contiguous(memory_format=cl)),
                             ("bf16_cl", x.bfloat16().contiguous(memory_format=cl), wt.bfloat16().contiguous(memory_format=cl))):
            F.conv2d(xx, ww, padding=1)
            best = float("inf")
            for _ in range(reps):
                t0 = time.perf_counter()
                F.conv2d(xx, ww, padding=1)
                best = min(best, time.perf_counter() - t0)
            out[name] = flops / best / 1e9
    return out


def _flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def _policy(mode: str):
    """Ablation modes: ``cached_bf16_allbf16`` (every group bf16), ``…_fp32group_G`` (that, with group
    G back in float32), ``…_toggle_G`` (the default MIXED policy with group G switched)."""
    from gpvton_core import precision as P

    if mode.endswith("_allbf16"):
        return P.ALL_REDUCED
    if "_fp32group_" in mode:
        return P.ALL_REDUCED.with_(**{mode.split("_fp32group_", 1)[1]: False})
    if "_toggle_" in mode:
        g = mode.split("_toggle_", 1)[1]
        return P.MIXED.with_(**{g: not getattr(P.MIXED, g)})
    return None


def run_one(cfg: dict) -> dict:
    import torch

    from gpvton_core import assembly as asm
    from gpvton_core.inference import TryOnPipeline

    torch.set_num_threads(cfg["threads"])
    h, w = cfg["res"]
    warp, gen, variant = models(cfg["weights"], cfg["width"])
    g = pn = cfg["grid"]
    person, garment = _inputs(g, pn, h, w, variant)
    mode = cfg["mode"]
    res: dict = dict(cfg, variant=variant)
    if mode == "monolithic":
        pipe = TryOnPipeline(warp, gen, resolution=(h, w), channels_last=False)
        n = min(cfg["mono_pairs"], g * pn)

        def pair(k: int):
            gi, pi = k % g, k // g
            cat = [garment.category[gi]]
            clothes = garment.image[gi:gi + 1] * garment.mask[gi:gi + 1]
            parts = garment.parts[gi:gi + 1]
            L, M, R = parts[:, 0:1], parts[:, 1:2], parts[:, 2:3]
            pin = type(person)(*(getattr(person, f)[pi:pi + 1] for f in
                                 ("image", "densepose", "pose", "preserve_warp", "preserve_gen", "skin")))
            args = [pin.cond(), clothes, garment.mask[gi:gi + 1], asm.garment_label(parts, variant, cat),
                    clothes * L, clothes * M, clothes * R, L, M, R, pin.preserve_warp]
            if variant == "dresscode":
                args.append(asm.type_map(cat, (h, w)))
            out = pipe.warp(*args, mode="training")
            pc, ec = asm.class_table(variant, cat)
            cloth, lab = asm.assemble_warp(torch.cat([clothes * L, clothes * M, clothes * R]), torch.cat([L, M, R]),
                                           out.last_flow, asm.seg_argmax(out.seg_logits), pin.preserve_warp, pc, ec)
            cloth = asm.quantize_uint8(cloth)
            x, edge = asm.generator_input(pin.image, pin.preserve_gen, cloth, lab, pin.skin, pin.pose, variant)
            return asm.compose(pipe.generator.infer(x), cloth, edge)[0]

        times, imgs = [], []
        with torch.inference_mode():
            for k in range(n):
                t0 = time.perf_counter()
                imgs.append(pair(k))
                times.append(time.perf_counter() - t0)
            res["flops_per_pair"] = _flops(lambda: pair(0))
        steady = times[1:] if n >= 3 else times  # the first call carries one-off allocator / kernel warm-up
        res.update(pairs_timed=len(steady), per_pair_s=sum(steady) / len(steady), pair_times_s=times)
        torch.save(torch.cat(imgs), cfg["images"])
    else:
        base = mode.split("_")[1]  # fp32 | bf16 | auto
        pipe = TryOnPipeline(warp, gen, resolution=(h, w), precision=base, channels_last="_nchw" not in mode,
                             policy=_policy(mode), compile="_compile" in mode)
        res["precision"] = pipe.precision_info()
        n = min(cfg["max_pairs"], g * pn)
        gi = torch.arange(g).repeat(pn)[:n]
        pi = torch.arange(pn).repeat_interleave(g)[:n]
        if "_compile" in mode:  # compilation is a one-off per process: not part of the per-pair time
            t0 = time.perf_counter()
            pipe.run_pairs(pipe.encode_garments(garment), pipe.encode_persons(person), gi[:cfg["batch"]],
                           pi[:cfg["batch"]], batch_size=cfg["batch"])
            res["compile_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        gb = pipe.encode_garments(garment)
        pb = pipe.encode_persons(person)
        enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = pipe.run_pairs(gb, pb, gi, pi, batch_size=cfg["batch"])
        pair_s = (time.perf_counter() - t0) / n
        res.update(pairs_timed=n, encode_s=enc, pair_s=pair_s, per_pair_s=enc / (g * pn) + pair_s)
        if not cfg.get("no_flops"):
            b = min(cfg["batch"], n)
            enc_f = _flops(lambda: (pipe.encode_garments(garment), pipe.encode_persons(person)))
            res["flops_per_pair"] = enc_f / (g * pn) + _flops(lambda: pipe.run_pairs(gb, pb, gi[:b], pi[:b], b)) / b
        torch.save(out.tryon, cfg["images"])
    res["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def _ssim(a_path: str, b_path: str) -> float:
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    a, b = torch.load(a_path), torch.load(b_path)
    n = min(len(a), len(b))
    return float(ssim((a[:n] + 1) / 2, (b[:n] + 1) / 2, data_range=1.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--res", nargs="+", default=["256x192", "512x384"])
    ap.add_argument("--modes", nargs="+", default=["monolithic", "cached_fp32", "cached_bf16"])
    ap.add_argument("--weights", choices=["parity", "demo"], default="parity")
    ap.add_argument("--width", type=float, default=1.0, help="network width for parity weights")
    ap.add_argument("--grid", type=int, default=8, help="G = P rows of the cross product")
    ap.add_argument("--max-pairs", type=int, default=64, help="pairs actually timed per cached config")
    ap.add_argument("--mono-pairs", type=int, default=3, help="pairs timed for the monolithic baseline")
    ap.add_argument("--batch", type=int, default=8, help="unit batch of the cached path")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--ablation", action="store_true", help="bf16 accuracy per op group (see module doc)")
    ap.add_argument("--no-flops", action="store_true", help="skip the FLOP count (it reruns one batch)")
    ap.add_argument("--tag", default="", help="results file bench/results/core[_TAG].json")
    ap.add_argument("--keep-images", action="store_true", help="keep the try-on tensors under core_images.tmp/")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        print(json.dumps(run_one(json.loads(a._child))))
        return
    from sysinfo import finish, machine_info

    from gpvton_core.precision import GROUPS

    out_path = a.out or RESULTS / (f"core_{a.tag}.json" if a.tag else "core.json")
    modes = list(a.modes)
    if a.ablation:  # from all-bf16, each group back to fp32; then the default policy with each group switched
        modes = (["cached_fp32", "cached_bf16_allbf16"] + [f"cached_bf16_fp32group_{g}" for g in GROUPS]
                 + ["cached_bf16"] + [f"cached_bf16_toggle_{g}" for g in GROUPS])
    doc = {"machine": machine_info(a.threads), "args": {k: (str(v) if isinstance(v, Path) else v)
                                                        for k, v in vars(a).items() if k != "_child"},
           "conv_gflops": conv_peak(a.threads), "results": []}
    print(f"conv GFLOP/s: {json.dumps({k: round(v) for k, v in doc['conv_gflops'].items()})}", flush=True)
    tmp = RESULTS / "core_images.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    for r in a.res:
        h, w = (int(v) for v in r.split("x"))
        imgs: dict[str, str] = {}
        for mode in modes:
            cfg = dict(mode=mode, res=[h, w], width=a.width, weights=a.weights, grid=a.grid, max_pairs=a.max_pairs,
                       mono_pairs=a.mono_pairs, batch=a.batch, threads=a.threads, no_flops=a.no_flops or a.ablation,
                       images=str(tmp / f"{r}_{a.weights}_{mode}.pt"))
            t0 = time.time()
            proc = subprocess.run([sys.executable, __file__, "--_child", json.dumps(cfg)], capture_output=True,
                                  text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                doc["results"].append(dict(cfg, error=proc.stderr[-1000:]))
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res["wall_s"] = time.time() - t0
            res["loadavg"] = list(os.getloadavg())
            res["images"] = Path(res["images"]).name
            imgs[mode] = cfg["images"]
            if mode != "cached_fp32" and "cached_fp32" in imgs:
                res["ssim_vs_fp32"] = _ssim(cfg["images"], imgs["cached_fp32"])
            if "flops_per_pair" in res:
                peak = doc["conv_gflops"]["bf16_cl" if "bf16" in mode else "fp32_cl"]
                res["floor_s"] = res["flops_per_pair"] / peak / 1e9
            doc["results"].append(res)
            extra = f"  SSIM vs fp32 {res['ssim_vs_fp32']:.4f}" if "ssim_vs_fp32" in res else ""
            extra += f"  {res['flops_per_pair'] / 1e9:.0f} GFLOP/pair" if "flops_per_pair" in res else ""
            print(f"{r:>8} {mode:<32} per pair {res['per_pair_s']:8.3f} s   maxrss {res['maxrss_mb']:7.0f} MB{extra}",
                  flush=True)
        if {"monolithic", "cached_fp32"} <= set(imgs):  # the cached path reproduces the official one
            s = _ssim(imgs["cached_fp32"], imgs["monolithic"])
            doc.setdefault("ssim_cached_fp32_vs_monolithic", {})[r] = s
            print(f"{r:>8} SSIM cached_fp32 vs monolithic (first {a.mono_pairs} pairs): {s:.5f}", flush=True)
        if not a.keep_images:
            for path in imgs.values():
                Path(path).unlink(missing_ok=True)
        by = {x["mode"]: x["per_pair_s"] for x in doc["results"] if x.get("res") == [h, w] and "per_pair_s" in x}
        if "monolithic" in by:
            for m, v in by.items():
                if m != "monolithic":
                    print(f"{r:>8} {m} / monolithic = {v / by['monolithic']:.3f}", flush=True)
                    doc.setdefault("ratios", {})[f"{r} {m}"] = v / by["monolithic"]
    finish(doc["machine"])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
