"""Where one pair's time goes: stage times, FLOPs, achieved GFLOP/s, the floor, and the top operators.

    python bench/profile_core.py [--res 512x384] [--precision fp32|bf16|auto] [--batch 8] [--threads 2]
                                 [--device cpu|cuda] [--weights parity|random] [--monolithic]

Runs the cached inference path (:class:`gpvton_core.inference.TryOnPipeline`) on one unit batch of
``--batch`` pairs that share one person (as a person-major cross product does) and splits it into
its stages: garment encoder and person encoder (per row, amortised over the 8 pairs of an 8×8 cross
product in ``per_pair_8x8_s``), flow decoder, assembly + generator (per pair). For each stage it
records the time, the FLOPs (torch FlopCounterMode: convolutions and matmuls), the GFLOP/s it
achieves, and the floor = FLOPs ÷ the GFLOP/s of a lone 256-channel 3×3 convolution on this machine
(bench_core.conv_peak, in the precision's layout). Then torch.profiler lists the operators that
dominate the decoder and the generator (self CPU time; self CUDA time on GPUs).
``--monolithic`` also times the official forward (batch 1, all training outputs). Writes
bench/results/profile_core[_TAG].json with the machine block of bench/sysinfo.py.
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

from sysinfo import finish, machine_info  # noqa: E402


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, dev: torch.device, reps: int = 1):
    out = fn()  # warm-up (allocator, cuDNN autotuning, one-off weight reorders)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(reps):
        out = fn()
    _sync(dev)
    return out, (time.perf_counter() - t0) / reps


def _flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def _top_ops(fn, dev: torch.device, n: int = 14) -> list[dict]:
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        fn()
        _sync(dev)
    cuda = dev.type == "cuda"
    key = (lambda e: -getattr(e, "self_device_time_total", 0)) if cuda else (lambda e: -e.self_cpu_time_total)
    rows = []
    for e in sorted(prof.key_averages(), key=key)[:n]:
        r = {"op": e.key, "calls": e.count, "self_cpu_s": e.self_cpu_time_total / 1e6}
        if cuda:
            r["self_cuda_s"] = getattr(e, "self_device_time_total", 0) / 1e6
        rows.append(r)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", default="512x384")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", choices=["parity", "random"], default="parity",
                    help="parity: the parity weight generator (needs the spec folder); random: default init")
    ap.add_argument("--monolithic", action="store_true")
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    from bench_core import SPEC, _fill, _inputs, conv_peak
    from gpu_check import random_inputs

    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.inference import TryOnPipeline, _parts_stacked
    from gpvton_core.warp import LFGPWarp

    h, w = (int(x) for x in a.res.split("x"))
    b = a.batch
    torch.manual_seed(0)
    warp, gen = LFGPWarp("vitonhd", a.width), TryOnGenerator(a.width)
    if a.weights == "parity":
        warp, gen = _fill(warp), _fill(gen)
    have_spec = (SPEC / "parity" / "warp_vitonhd.npz").is_file()
    person, garment = _inputs(b, 1, h, w) if have_spec else random_inputs(1, b, h, w)
    doc: dict = {"machine": machine_info(), "args": vars(a)}
    mono = None
    if a.monolithic:  # the official forward, NCHW float32, batch 1, all training outputs
        from gpvton_core import assembly as asm

        m = TryOnPipeline(warp, gen, resolution=(h, w), device=dev, channels_last=False)
        c = (garment.image[:1] * garment.mask[:1]).to(dev)
        parts = garment.parts[:1].to(dev)
        L, M, R = parts[:, 0:1], parts[:, 1:2], parts[:, 2:3]
        args = [person.cond()[:1].to(dev), c, garment.mask[:1].to(dev), asm.garment_label(parts, "vitonhd", ["upper"]),
                c * L, c * M, c * R, L, M, R, person.preserve_warp[:1].to(dev)]
        with torch.inference_mode():
            _, mono = _timed(lambda: m.warp(*args, mode="training"), dev)
    pipe = TryOnPipeline(warp, gen, resolution=(h, w), device=dev, precision=a.precision)
    doc["precision"] = pipe.precision_info()
    gi = torch.arange(b, device=dev)
    pi = torch.zeros(b, dtype=torch.long, device=dev)
    stages: dict[str, dict] = {}
    with torch.inference_mode():
        gb, t = _timed(lambda: pipe.encode_garments(garment), dev)
        stages["encode_garment"] = {"s": t / b, "flops": _flops(lambda: pipe.encode_garments(garment)) / b}
        pb, t = _timed(lambda: pipe.encode_persons(person), dev)
        stages["encode_person"] = {"s": t, "flops": _flops(lambda: pipe.encode_persons(person))}
        masks = _parts_stacked(gb.parts_warp.index_select(0, gi).unsqueeze(2))
        pres = pb.preserve_warp_lr.index_select(0, pi)

        def decode():
            return pipe._decode(gb.features, pb.features, gi, pi, masks, pres)

        _, t = _timed(decode, dev)
        stages["decoder"] = {"s": t / b, "flops": _flops(decode) / b}
        _, t_all = _timed(lambda: pipe.run_pairs(gb, pb, gi, pi, batch_size=b), dev)
        rest = max(0.0, t_all / b - stages["decoder"]["s"])
        f_all = _flops(lambda: pipe.run_pairs(gb, pb, gi, pi, batch_size=b)) / b
        stages["assembly_generator"] = {"s": rest, "flops": f_all - stages["decoder"]["flops"]}
        ops = {"decoder": _top_ops(decode, dev),
               "generator": _top_ops(lambda: pipe._generate(torch.randn(b, 36, h, w, device=dev)
                                                           .contiguous(memory_format=torch.channels_last)), dev)}
    peak = conv_peak(torch.get_num_threads()) if dev.type == "cpu" else None
    layout = "bf16_cl" if pipe.precision == "bf16" else "fp32_cl"
    for k, v in stages.items():
        v["gflops_per_s"] = v["flops"] / v["s"] / 1e9 if v["s"] else None
        if peak:
            # encoders run in float32 under the mixed policy
            rate = peak["fp32_cl"] if k.startswith("encode") else peak[layout]
            v["floor_s"] = v["flops"] / rate / 1e9
    per_pair = {"encode_garment": 1 / 8, "encode_person": 1 / 8, "decoder": 1, "assembly_generator": 1}
    doc.update(res=[h, w], batch=b, stages=stages, conv_gflops=peak, top_ops=ops, monolithic_warp_forward_s=mono,
               per_pair_8x8_s=sum(stages[k]["s"] * f for k, f in per_pair.items()),
               floor_per_pair_8x8_s=(sum(stages[k]["floor_s"] * f for k, f in per_pair.items()) if peak else None))
    finish(doc["machine"])
    out = Path(a.out or REPO / "bench" / "results" / (f"profile_core_{a.tag}.json" if a.tag else "profile_core.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    for k, v in stages.items():
        fl = f"  floor {v['floor_s']:7.3f} s" if "floor_s" in v else ""
        print(f"{k:<20} {v['s']:8.3f} s  {v['flops'] / 1e9:8.1f} GFLOP  {v['gflops_per_s'] or 0:7.1f} GFLOP/s{fl}")
    print(f"per pair (8x8): {doc['per_pair_8x8_s']:.3f} s" + (f", floor {doc['floor_per_pair_8x8_s']:.3f} s"
                                                                if peak else ""))
    for name, rows in ops.items():
        print(f"{name}, top operators:")
        for r in rows[:10]:
            t = r.get("self_cuda_s", r["self_cpu_s"])
            print(f"  {r['op']:<44} {t:8.4f} s  ×{r['calls']}")


if __name__ == "__main__":
    main()
