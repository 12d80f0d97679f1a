"""GPU check, one script, ≤ 5 minutes on one H100-class GPU; writes JSON after every section.

    python bench/gpu_check.py                              # CUDA, official width, 512×384
    python bench/gpu_check.py --device cpu --quick         # CI: same code paths, tiny sizes, < 60 s

Sections (each guarded: a failure is recorded with its traceback and the next one still runs):

* ``parity`` — the parity fixtures (``--spec``/parity) on the device in float32, TF32 off, both
  paths (the official training forward NCHW, and the production inference path channels-last),
  against the float32 tolerances. Without fixtures: the same networks (random weights) on the
  device in float32 against a CPU float64 run of the same inference path (a self-check, marked so).
* ``throughput`` — pairs/s of :class:`~gpvton_core.inference.TryOnPipeline` at 512×384, official
  width, on an 8×8 cross product (``--grid``; encoders included) for fp32 / bf16 / fp16 at unit batch 8 and 32,
  eager, ``torch.compile`` and CUDA graphs (``reduce-overhead``); peak GPU memory; SSIM of each
  reduced precision against fp32. Compiled configs run after the render section, while the
  time budget lasts; those that do not fit are recorded as skipped.
* ``render`` — ``gpvton render`` end to end on one GPU with one actor (random weights at
  official width, a small synthetic catalogue built with the project's own tools: pipelines/
  synthetic.py + the Beam preprocessing stage), pairs/s from summary.json, and the pipeline
  efficiency = end-to-end pairs/s ÷ model-only pairs/s on the same shards and settings.

Needs only this repository and a CUDA build of torch (plus the project's own dependencies).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from sysinfo import finish, machine_info  # noqa: E402

DEFAULT_SPEC = REPO.parent / "shared" / "spec"


class Budget:
    def __init__(self, seconds: float) -> None:
        self.t0, self.seconds = time.time(), seconds

    def left(self) -> float:
        return self.seconds - (time.time() - self.t0)


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def random_inputs(n_person: int, n_garment: int, h: int, w: int, seed: int = 0):
    """Person / garment inputs shaped like the real ones (random content)."""
    import torch

    from gpvton_core.inference import GarmentInputs, PersonInputs

    g = torch.Generator().manual_seed(seed)

    def blob(n: int):
        m = torch.zeros(n, 1, h, w)
        for i in range(n):
            y0, x0 = int(torch.randint(0, h // 2, (1,), generator=g)), int(torch.randint(0, w // 2, (1,), generator=g))
            m[i, :, y0:y0 + h // 2, x0:x0 + w // 2] = 1
        return m

    preserve = blob(n_person)
    person = PersonInputs(image=torch.rand(n_person, 3, h, w, generator=g) * 2 - 1,
                          densepose=torch.randint(0, 25, (n_person, 1, h, w), generator=g, dtype=torch.uint8),
                          pose=torch.where(torch.rand(n_person, 25, h, w, generator=g) < 0.02, 1.0, -1.0),
                          preserve_warp=preserve, preserve_gen=preserve.clone(),
                          skin=torch.rand(n_person, 3, generator=g) * 2 - 1)
    mask = torch.zeros(n_garment, 1, h, w)
    mask[:, :, h // 8:-h // 8, w // 8:-w // 8] = 1
    x = torch.arange(w).view(1, w).expand(h, w)
    parts = torch.stack([(x >= 2 * w // 3), (x >= w // 3) & (x < 2 * w // 3), x < w // 3]).float().unsqueeze(0) * mask
    garment = GarmentInputs(image=torch.rand(n_garment, 3, h, w, generator=g) * 2 - 1, mask=mask, parts=parts,
                            category=["upper"] * n_garment)
    return person, garment


# ---- (a) parity ---------------------------------------------------------------------------------

def section_parity(a, res: dict) -> None:
    import torch

    from gpvton_core import parity

    fixtures = Path(a.spec) / "parity"
    dev = a.device
    if not a.quick and any(fixtures.glob("*.npz")):
        runs = [parity.Run(torch.float32, "training", False, dev), parity.Run(torch.float32, "inference", True, dev)]
        checks = parity.run(fixtures, runs, Path(a.spec), Path(a.spec) / "checkpoints", log=lambda s: None)
        res["mode"] = "fixtures"
        res["checks"] = [{"fixture": c.fixture, "run": c.dtype, "name": c.name, "max_abs": float(c.max_abs),
                          "mean_abs": float(c.mean_abs), "tol": c.tol, "ok": bool(c.ok)} for c in checks]
        res["passed"] = all(c.ok for c in checks)
        res["summary"] = f"{sum(c.ok for c in checks)}/{len(checks)} checks passed"
        return
    # self-check: device float32 against CPU float64, same random weights, inference path
    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.inference import TryOnPipeline
    from gpvton_core.warp import LFGPWarp

    res["mode"] = "self-check (no fixtures)" if not a.quick else "self-check (quick)"
    torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would be a 1e-3 error of its own
    torch.backends.cudnn.allow_tf32 = False
    width, (h, w) = (1 / 16, (64, 64)) if a.quick else (0.25, (256, 192))
    out = {}
    for variant in ("vitonhd", "dresscode"):
        cats = ["upper"] if variant == "vitonhd" else ["lower"]
        torch.manual_seed(0)
        warp, gen = LFGPWarp(variant, width), TryOnGenerator(width)
        if variant == "dresscode":  # the Dress Code decoder is chaotic at default init: tame it as the fixtures do
            with torch.no_grad():
                for p in warp.parameters():
                    p.mul_(0.25)
        person, garment = random_inputs(1, 1, h, w, seed=1)
        garment.category = cats
        outs = {}
        for name, device, prec in (("ref", "cpu", "fp64"), ("dev", dev, "fp32")):
            pipe = TryOnPipeline(warp, gen, resolution=(h, w), device=device, precision=prec, quantize=False)
            o = pipe(person, garment)
            outs[name] = {k: getattr(o, k).double().cpu() for k in ("tryon", "warped_cloth", "seg")}
        diff = {k: float((outs["dev"][k] - outs["ref"][k]).abs().max()) for k in ("tryon", "warped_cloth")}
        diff["seg_px_frac"] = float((outs["dev"]["seg"] != outs["ref"]["seg"]).double().mean())
        out[variant] = diff
    res["self_check"] = out
    res["passed"] = all(d["tryon"] < 1e-2 and d["seg_px_frac"] < 5e-3 for d in out.values())


# ---- (b) throughput -----------------------------------------------------------------------------

def _throughput_one(a, prec: str, batch: int, compile_mode, grid: int, h: int, w: int, width: float) -> dict:
    import torch

    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.inference import TryOnPipeline
    from gpvton_core.warp import LFGPWarp

    dev = torch.device(a.device)
    torch.manual_seed(0)
    pipe = TryOnPipeline(LFGPWarp("vitonhd", width), TryOnGenerator(width), resolution=(h, w), device=dev,
                         precision=prec, compile=compile_mode)
    person, garment = random_inputs(grid, grid, h, w)
    gi = torch.arange(grid).repeat(grid)
    pi = torch.arange(grid).repeat_interleave(grid)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    t0 = time.perf_counter()
    gb, pb = pipe.encode_garments(garment), pipe.encode_persons(person)
    # warm-up / compilation; CUDA graphs are recorded on a later call than the first, so compiled
    # modes warm up on three batches before the timed pass
    n_warm = batch * (3 if compile_mode else 1)
    pipe.run_pairs(gb, pb, gi[:n_warm], pi[:n_warm], batch_size=batch)
    _sync(dev)
    warm = time.perf_counter() - t0
    if dev.type == "cuda":  # steady state: cuDNN's autotuning tries algorithms with huge workspaces
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    gb, pb = pipe.encode_garments(garment), pipe.encode_persons(person)
    out = pipe.run_pairs(gb, pb, gi, pi, batch_size=batch)
    _sync(dev)
    el = time.perf_counter() - t0
    r = {"precision": pipe.precision, "batch": batch, "compile": compile_mode or "eager", "pairs": len(gi),
         "seconds": el, "pairs_per_s": len(gi) / el, "warmup_s": warm, "policy": pipe.precision_info()["policy"]}
    if dev.type == "cuda":
        r["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    r["_tryon"] = out.tryon[: min(16, len(gi))].float().cpu()
    return r


def section_throughput(a, res: dict, budget: Budget, compiled: bool, save: Callable[[], None] = lambda: None) -> None:
    import torch

    from gpvton_core.precision import native_bf16

    quick = a.quick
    h, w = (64, 64) if quick else (512, 384)
    width = 1 / 16 if quick else 1.0
    grid = 4 if quick else a.grid
    batches = (2, 4) if quick else (8, 32)
    precs = ["fp32", "bf16"] + ([] if a.device == "cpu" else ["fp16"])
    if not native_bf16(a.device)[0] and not quick:
        precs = [p for p in precs if p != "bf16"]
    modes: list = [None] if not compiled else (["reduce-overhead", True] if a.device != "cpu" else [True])
    res.setdefault("setup", {"resolution": [h, w], "width": width, "cross_product": f"{grid}x{grid}",
                             "weights": "random init (timing only)", "unit": "pairs/s include encoding the 2·grid rows",
                             "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32,
                                      "cudnn": torch.backends.cudnn.allow_tf32}})
    rows = res.setdefault("configs", [])
    ref = res.setdefault("_ref", {})  # fp32 eager try-on images per batch size: the SSIM reference
    if compiled:  # the production precision first, at both batches, then the rest while the budget lasts
        order = [(p, b, m) for m in modes for p in (["bf16"] + [q for q in precs if q != "bf16"] if "bf16" in precs
                                                     else precs) for b in batches]
    else:
        order = [(p, b, None) for p in precs for b in batches]
    if compiled and a.compiled:
        wanted = [c.split(":") for c in a.compiled]
        order = [(p, int(b), True if m == "default" else m) for p, b, m in wanted]
    for prec, batch, mode in order:
        # seconds a config may take (H200: eager ≈ 5 s; compiling took 60 s at batch 8, 130 s at batch 32)
        need = 20 if not compiled else (70 if batch <= 8 else 140)
        if budget.left() < need:
            rows.append({"precision": prec, "batch": batch, "compile": mode or "eager", "skipped": "time budget"})
            continue
        try:
            r = _throughput_one(a, prec, batch, mode, grid, h, w, width)
            img = r.pop("_tryon")
            if prec == "fp32" and mode is None:
                ref[batch] = img
            if batch in ref:
                from torchmetrics.functional.image import structural_similarity_index_measure as ssim

                r["ssim_vs_fp32"] = float(ssim((img + 1) / 2, (ref[batch] + 1) / 2, data_range=1.0))
            rows.append(r)
        except Exception as e:  # noqa: BLE001 — one config failing (OOM, compile error) must not stop the rest
            rows.append({"precision": prec, "batch": batch, "compile": mode or "eager",
                         "error": f"{type(e).__name__}: {e}"[:2000]})
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            import torch._dynamo

            torch._dynamo.reset()
        last = rows[-1]
        print(f"  throughput {prec} batch {batch} {mode or 'eager'}: "
              f"{last.get('pairs_per_s', last.get('skipped') or last.get('error', '')[:120])}", flush=True)
        save()


# ---- (c) render end to end ----------------------------------------------------------------------

def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _build_shards(out: Path, size: int, n_persons: int, n_garments: int) -> tuple[int, int]:
    """A small synthetic catalogue through the Beam preprocessing stage (needs apache-beam)."""
    from pipelines.demo import SIZES, build_shards
    from pipelines.synthetic import make_catalogue

    h, w = SIZES[size]
    make_catalogue(out.parent / "cat", n_garments=n_garments, n_persons=n_persons, height=h, width=w, seed=0)
    build_shards(out.parent / "cat", out, size)
    return h, w


def section_render(a, res: dict) -> None:
    import numpy as np
    import pyarrow.parquet as pq
    import torch

    from gpvton_core import inputs as gin
    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.inference import GarmentInputs, PersonInputs, TryOnPipeline
    from gpvton_core.precision import native_bf16
    from gpvton_core.warp import LFGPWarp
    from workers.render_actor import decode_png

    size = 128 if a.quick else 512
    width = 1 / 16 if a.quick else 1.0
    n_persons, n_garments = (3, 6) if a.quick else a.catalogue
    batch = 4 if a.quick else 8
    prec = "bf16" if (a.device != "cpu" and native_bf16(a.device)[0]) else "fp32"
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    t0 = time.time()
    shards = Path(a.shards) if a.shards else tmp / "shards"
    if a.shards:   # prebuilt (a GPU box without Beam): python bench/gpu_check.py --build-shards DIR here
        manifest = json.loads((shards / "manifest.json").read_text())
        h, w, size = manifest["height"], manifest["width"], manifest["height"]
        n_persons, n_garments = manifest["counts"]["persons"], manifest["counts"]["garments"]
    else:
        h, w = _build_shards(shards, size, n_persons, n_garments)
    res["setup"] = {"resolution": [h, w], "width": width, "persons": n_persons, "garments": n_garments,
                    "batch_size": batch, "precision": prec, "actors": 1, "shards_s": time.time() - t0}
    # model-only: the same networks and settings on the same shards, inputs decoded beforehand
    prow = pq.read_table(shards / "persons").to_pylist()
    grow = pq.read_table(shards / "garments").to_pylist()
    work = []
    for cat in ("upper", "lower", "dresses"):
        P = [gin.person_inputs(r["person_id"], decode_png(r["image_png"], "RGB"), decode_png(r["parsing_png"], "L"),
                               decode_png(r["densepose_png"], "L"), np.asarray(r["keypoints"], np.float32), cat,
                               "dresscode") for r in prow if cat in r["categories"]]
        G = [gin.garment_inputs(r["garment_id"], decode_png(r["image_png"], "RGB"), decode_png(r["mask_png"], "L"),
                                decode_png(r["parts_png"], "L"), cat, "dresscode") for r in grow if r["category"] == cat]
        if P and G:
            work.append((GarmentInputs.cat(G), PersonInputs.cat([p.inputs for p in P])))
    torch.manual_seed(0)
    pipe = TryOnPipeline(LFGPWarp("dresscode", width), TryOnGenerator(width), resolution=(h, w), device=a.device,
                         precision=prec)

    def model_only() -> dict:
        """A first pass visits every shape (allocator, cuDNN), the second one is timed."""
        for _ in range(2):   # only the last pass's clock is kept
            _sync(a.device)
            t0, pairs = time.perf_counter(), 0
            for garments, persons in work:
                out = pipe.cross(pipe.encode_garments(garments), pipe.encode_persons(persons), batch_size=batch)
                pairs += len(out.tryon)
            _sync(a.device)
        el = time.perf_counter() - t0
        return {"pairs": pairs, "seconds": el, "pairs_per_s": pairs / el,
                "note": "random init Dress Code networks, all categories, inputs decoded beforehand, second pass"}

    def end_to_end(job: Path, cudnn_benchmark: bool) -> dict:
        cmd = [sys.executable, "-m", "pipelines.cli", "render", "--shards", str(shards), "--output", str(job),
               "--random-weights", "--resolution", str(size), "--batch-size", str(batch), "--actors", "1",
               "--device", "cpu" if a.device == "cpu" else "cuda", "--precision", prec, "--no-progress",
               "--set", f"model.width={width}", "--set", "model.variant=dresscode",
               "--set", f"cudnn_benchmark={str(cudnn_benchmark).lower()}"]
        if not _installed("ray"):   # a bare GPU box: the same worker code, in process
            cmd += ["--set", "runner=local"]
            res["setup"]["runner"] = "local (no Ray installed)"
        elif a.device != "cpu":
            cmd += ["--set", "num_gpus=1"]
        t0 = time.time()
        path = os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])  # keep carried wheels
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path},
                              timeout=max(60, int(a.render_timeout)))
        r = {"command": " ".join(cmd[1:]), "exit_code": proc.returncode, "wall_s": time.time() - t0,
             "output_tail": (proc.stdout + proc.stderr)[-1500:]}
        summary = json.loads((job / "summary.json").read_text())
        r["end_to_end"] = {k: summary.get(k) for k in ("pairs", "pairs_per_second", "render_seconds",
                                                        "elapsed_seconds", "counts")}
        # steady state: the worker's own unit timings (start-up and model construction excluded)
        busy = [json.loads(f.read_text()).get("seconds") for f in (job / "scores").glob("*.done")]
        busy = [b for b in busy if isinstance(b, (int, float))]
        r["steady_pairs_per_s"] = summary["pairs"] / sum(busy) if busy and summary.get("pairs") else None
        return r

    cuda = torch.device(a.device).type == "cuda"
    autotune = torch.backends.cudnn.benchmark   # the script's setting, restored after the comparison
    for bench_on in ((False, True) if cuda else (False,)):
        if cuda:
            torch.backends.cudnn.benchmark = bench_on
        mo = model_only()
        e2e = end_to_end(tmp / f"job-cudnn-benchmark-{bench_on}", bench_on)
        e2e["model_only"] = mo
        e2e["pipeline_efficiency"] = e2e["end_to_end"]["pairs_per_second"] / mo["pairs_per_s"]
        if e2e["steady_pairs_per_s"]:
            e2e["pipeline_efficiency_steady"] = e2e["steady_pairs_per_s"] / mo["pairs_per_s"]
        if not bench_on:   # the default settings: the section's headline
            res.update(e2e)
        else:
            res["cudnn_benchmark_on"] = e2e
        print(f"  render cudnn.benchmark={bench_on}: {e2e['end_to_end']['pairs_per_second']:.2f} pairs/s end to "
              f"end, steady {e2e['steady_pairs_per_s'] or 0:.2f}, model-only {mo['pairs_per_s']:.2f}", flush=True)
    torch.backends.cudnn.benchmark = autotune


# ---- where the GPU time goes --------------------------------------------------------------------

def section_profile(a, res: dict) -> None:
    """The CUDA kernels of one eager bf16 batch of 8 at 512×384, official width, grouped by name."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.inference import TryOnPipeline
    from gpvton_core.warp import LFGPWarp

    h, w, width, n = (64, 64, 1 / 16, 2) if a.quick else (512, 384, 1.0, 8)
    torch.manual_seed(0)
    pipe = TryOnPipeline(LFGPWarp("vitonhd", width), TryOnGenerator(width), resolution=(h, w), device=a.device,
                         precision="bf16" if a.device != "cpu" else "fp32")
    person, garment = random_inputs(n, n, h, w)
    idx = torch.arange(n)
    gb, pb = pipe.encode_garments(garment), pipe.encode_persons(person)
    for _ in range(2):
        pipe.run_pairs(gb, pb, idx, idx, batch_size=n)
    _sync(a.device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device != "cpu" else [])
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        pipe.run_pairs(gb, pb, idx, idx, batch_size=n)
        _sync(a.device)
    res["wall_s"] = time.perf_counter() - t0
    gpu = a.device != "cpu"
    for sort in (["device_time_total", "cuda_time_total"] if gpu else ["cpu_time_total"]):
        try:   # the profiler's own table as a backstop (its sort key's name changed between versions)
            res["table"] = prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=70)
            break
        except Exception as e:  # noqa: BLE001
            res["table"] = f"{type(e).__name__}: {e}"
    from collections import defaultdict

    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for e in prof.events():   # kernels (GPU) or top-level operators (CPU), summed by name
        if gpu and getattr(e, "device_type", None) != torch.autograd.DeviceType.CUDA:
            continue
        if not gpu and e.cpu_parent is not None:
            continue
        acc[e.name][0] += e.time_range.elapsed_us()
        acc[e.name][1] += 1
    res["device_total_ms" if gpu else "cpu_total_ms"] = sum(v[0] for v in acc.values()) / 1e3
    res["kernels"] = sorted(({"name": k[:120], "ms": v[0] / 1e3, "calls": v[1]} for k, v in acc.items()),
                            key=lambda r: -r["ms"])[:30]
    res["kernel_launches"] = sum(v[1] for v in acc.values())


# ---- driver -------------------------------------------------------------------------------------

def _guarded(name: str, doc: dict, out: Path, fn: Callable[[dict], None]) -> None:
    res = doc["sections"].setdefault(name, {})
    t0 = time.time()
    try:
        fn(res)
        res.setdefault("status", "ok")
    except Exception as e:  # noqa: BLE001 — record and go on with the next section
        res["status"] = "error"
        res["error"] = f"{type(e).__name__}: {e}"
        res["traceback"] = traceback.format_exc()[-4000:]
    res["section_s"] = res.get("section_s", 0.0) + time.time() - t0
    print(f"{name}: {res['status']} ({time.time() - t0:.0f} s)", flush=True)
    _write(doc, out)


def _write(doc: dict, out: Path) -> None:
    clean = json.loads(json.dumps(doc, default=lambda o: None))
    for s in clean["sections"].values():
        s.pop("_ref", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(clean, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CI on CPU)")
    ap.add_argument("--spec", default=os.environ.get("GPVTON_SPEC", str(DEFAULT_SPEC)), help="folder holding parity/")
    ap.add_argument("--budget-s", type=float, default=270.0,
                    help="wall-clock budget; compiled configs that would not fit are skipped")
    ap.add_argument("--grid", type=int, default=8, help="throughput: persons = garments per cross product")
    ap.add_argument("--render-timeout", type=float, default=150.0)
    ap.add_argument("--sections", nargs="+", default=["parity", "throughput", "profile", "render", "compiled"])
    ap.add_argument("--compiled", nargs="+", metavar="PREC:BATCH:MODE",
                    help="compiled section: only these configs, e.g. bf16:32:reduce-overhead fp32:8:default")
    ap.add_argument("--shards", help="render section: prebuilt shards (for a GPU box without Beam)")
    ap.add_argument("--build-shards", type=Path, metavar="DIR",
                    help="only build the render section's shards into DIR (512×384) and exit")
    ap.add_argument("--catalogue", type=int, nargs=2, default=[8, 24], metavar=("PERSONS", "GARMENTS"),
                    help="size of the render section's synthetic catalogue")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gpu_check.json")
    a = ap.parse_args(argv)
    if a.build_shards:
        h, w = _build_shards(a.build_shards, 512, *a.catalogue)
        print(f"gpu_check: shards {h}x{w} in {a.build_shards}")
        return 0
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available (use --device cpu --quick for the CPU smoke run)", file=sys.stderr)
        return 2
    if a.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    if a.quick and a.device == "cpu":
        torch.set_num_threads(1)  # tiny networks: OpenMP barriers cost more than they bring, worse on a busy CI box
    budget = Budget(a.budget_s)
    doc: dict[str, Any] = {"machine": machine_info(), "args": {k: str(v) for k, v in vars(a).items()}, "sections": {}}
    if "parity" in a.sections:  # parity switches TF32 off; throughput then runs with torch's defaults again
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        _guarded("parity", doc, a.out, lambda r: section_parity(a, r))
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    save = lambda: _write(doc, a.out)  # noqa: E731 — partial results survive a kill
    if "throughput" in a.sections:
        _guarded("throughput", doc, a.out, lambda r: section_throughput(a, r, budget, compiled=False, save=save))
    if "profile" in a.sections:
        _guarded("profile", doc, a.out, lambda r: section_profile(a, r))
    if "render" in a.sections:
        _guarded("render", doc, a.out, lambda r: section_render(a, r))
    if "compiled" in a.sections and not a.quick:
        _guarded("throughput", doc, a.out, lambda r: section_throughput(a, r, budget, compiled=True, save=save))
    finish(doc["machine"])
    doc["total_s"] = time.time() - budget.t0
    _write(doc, a.out)
    for name, s in doc["sections"].items():
        print(f"{name:<11} {s.get('status')}  {s.get('summary') or s.get('error') or ''}".rstrip())
    for r in doc["sections"].get("throughput", {}).get("configs", []):
        v = f"{r['pairs_per_s']:.2f} pairs/s" if "pairs_per_s" in r else r.get("skipped") or r.get("error", "")[:80]
        mem = f"  peak {r['peak_mem_gib']:.1f} GiB" if "peak_mem_gib" in r else ""
        ss = f"  SSIM {r['ssim_vs_fp32']:.4f}" if "ssim_vs_fp32" in r else ""
        print(f"  {r['precision']:<5} batch {r['batch']:<3} {str(r['compile']):<16} {v}{mem}{ss}")
    pr = doc["sections"].get("profile", {})
    for k in pr.get("kernels", [])[:12]:
        print(f"  profile {k['ms']:8.2f} ms {k['calls']:5d}×  {k['name'][:90]}")
    rd = doc["sections"].get("render", {})
    if "pipeline_efficiency" in rd:
        print(f"render: {rd['end_to_end']['pairs_per_second']:.2f} pairs/s end to end, model-only "
              f"{rd['model_only']['pairs_per_s']:.2f}, efficiency {rd['pipeline_efficiency']:.2f}")
    print(f"wrote {a.out} ({doc['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
