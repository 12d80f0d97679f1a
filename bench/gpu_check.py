"""GPU check, one script, ≤ 8 minutes (compilation included) on one H100-class GPU; writes JSON after every section.

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
* ``unit_profile`` — torch.profiler around one unit of the render worker (:class:`UnitProcessor`:
  read, compute, finish) next to the model-only time of the same pairs: the gap between them split
  by cause (host time per stage, GPU kernel time per kind, GPU idle) into a table.
* ``buckets`` — eager against compiled (``reduce-overhead`` on CUDA, inductor on the CPU) per
  fixed-shape bucket (batch × persons per batch), warm-up (compilation) apart from steady pairs/s.
* ``render`` — ``gpvton render`` end to end on one GPU with one actor, with the VITON-HD (upper)
  and the Dress Code (all categories) networks (random weights at official width, a small
  synthetic catalogue built with the project's own tools: pipelines/synthetic/ + the Beam
  preprocessing stage), compiled where the device is CUDA; pairs/s from summary.json, steady
  pairs/s without the compile warm-up (unit markers), and the pipeline efficiency = end-to-end
  pairs/s ÷ the model-only pairs/s of the same networks, settings and fixed-shape buckets.
* ``compiled`` (not by default) — the old cross-product compile of the throughput configs.

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

    from gpvton_core.tryon_batches import GarmentInputs, PersonInputs

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
    from pipelines.synthetic.catalogue import make_catalogue

    h, w = SIZES[size]
    make_catalogue(out.parent / "cat", n_garments=n_garments, n_persons=n_persons, height=h, width=w, seed=0)
    build_shards(out.parent / "cat", out, size)
    return h, w


_SHARDS: dict[str, Any] = {}


def shards_for(a) -> tuple[Path, int, int, int]:
    """(shards, size, persons, garments): the render catalogue, built once per run of the script."""
    if "path" not in _SHARDS:
        size = 128 if a.quick else 512
        n_persons, n_garments = (3, 6) if a.quick else a.catalogue
        if a.shards:   # prebuilt (a GPU box without Beam): python bench/gpu_check.py --build-shards DIR here
            shards = Path(a.shards)
            manifest = json.loads((shards / "manifest.json").read_text())
            size = manifest["height"]
            n_persons, n_garments = manifest["counts"]["persons"], manifest["counts"]["garments"]
        else:
            shards = Path(tempfile.mkdtemp(prefix="gpu-check-shards-")) / "shards"
            t0 = time.time()
            _build_shards(shards, size, n_persons, n_garments)
            _SHARDS["build_s"] = time.time() - t0
        _SHARDS.update(path=shards, size=size, persons=n_persons, garments=n_garments)
    return _SHARDS["path"], _SHARDS["size"], _SHARDS["persons"], _SHARDS["garments"]


def _compile_mode(a) -> str:
    if getattr(a, "eager_only", False):
        return "off"          # CI: the same code paths without inductor's cold compile (minutes on 2 cores)
    return "default" if a.device == "cpu" else "reduce-overhead"


def _decoded(shards: Path, variant: str, categories: tuple[str, ...]):
    """[(category, GarmentInputs, PersonInputs)] of the shards, decoded as the worker decodes them."""
    import pyarrow.parquet as pq

    from gpvton_core import inputs as gin
    from gpvton_core.tryon_batches import GarmentInputs, PersonInputs
    from gpvton_core.rows import decode_garment_row, decode_person_row

    prow = pq.read_table(shards / "persons").to_pylist()
    grow = pq.read_table(shards / "garments").to_pylist()
    work = []
    for cat in categories:
        P = [gin.person_inputs(r["person_id"], d["image"], d["parsing"], d["densepose"], d["keypoints"], cat, variant)
             for r in prow if cat in r["categories"] for d in [decode_person_row(r)]]
        G = [gin.garment_inputs(r["garment_id"], d["image"], d["mask"], d["parts"], cat, variant)
             for r in grow if r["category"] == cat for d in [decode_garment_row(r)]]
        if P and G:
            work.append((cat, GarmentInputs.cat(G), PersonInputs.cat([p.inputs for p in P])))
    return work


def _fixed_pairs(pipe, work, batch: int, fixed: bool) -> int:
    """Every (person, garment) pair of ``work``, person-major as the planner orders a unit."""
    import torch

    pairs = 0
    for _, garments, persons in work:
        gb, pb = pipe.encode_garments(garments), pipe.encode_persons(persons)
        g, p = len(gb), len(pb)
        out = pipe.run_pairs(gb, pb, torch.arange(g).repeat(p), torch.arange(p).repeat_interleave(g),
                             batch_size=batch, fixed_shapes=fixed)
        pairs += len(out.tryon)
    return pairs


def section_render(a, res: dict, budget: Budget) -> None:
    """End to end against model-only, VITON-HD and Dress Code networks, compiled on CUDA."""
    import torch

    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.inference import TryOnPipeline
    from gpvton_core.precision import native_bf16
    from gpvton_core.warp import LFGPWarp

    shards, size, n_persons, n_garments = shards_for(a)
    from pipelines.demo import SIZES

    h, w = SIZES[size]
    width = 1 / 16 if a.quick else 1.0
    batch = 4 if a.quick else 8
    prec = "bf16" if (a.device != "cpu" and native_bf16(a.device)[0]) else "fp32"
    compiled = a.device != "cpu"   # inductor on the CPU: the unit_profile / buckets sections
    mode = _compile_mode(a) if compiled else "off"
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    res["setup"] = {"resolution": [h, w], "width": width, "persons": n_persons, "garments": n_garments,
                    "batch_size": batch, "precision": prec, "actors": 1, "compile": mode,
                    "shards_s": _SHARDS.get("build_s")}

    def model_only(variant: str, cats: tuple[str, ...]) -> dict:
        """The same networks and buckets on the same shards, inputs decoded beforehand; a first
        pass compiles and visits every shape, the second is timed."""
        work = _decoded(shards, variant, cats)
        torch.manual_seed(0)
        pipe = TryOnPipeline(LFGPWarp(variant, width), TryOnGenerator(width), resolution=(h, w), device=a.device,
                             precision=prec, compile=False if mode == "off" else mode)
        t0 = time.perf_counter()
        _fixed_pairs(pipe, work, batch, compiled)
        _sync(a.device)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        pairs = _fixed_pairs(pipe, work, batch, compiled)
        _sync(a.device)
        el = time.perf_counter() - t0
        return {"pairs": pairs, "seconds": el, "pairs_per_s": pairs / el, "first_pass_s": warm,
                "compile_shapes_s": pipe.warmup,
                "note": f"random init {variant} networks, {', '.join(cats)}, inputs decoded beforehand, second pass"}

    def end_to_end(job: Path, variant: str, cats: tuple[str, ...]) -> dict:
        cmd = [sys.executable, "-m", "pipelines.cli", "render", "--shards", str(shards), "--output", str(job),
               "--random-weights", "--resolution", str(size), "--batch-size", str(batch), "--actors", "1",
               "--device", "cpu" if a.device == "cpu" else "cuda", "--precision", prec, "--no-progress",
               "--set", f"model.width={width}", "--set", f"model.variant={variant}",
               "--set", f"categories=[{', '.join(cats)}]", "--set", f"compile={'on' if compiled else 'off'}"]
        if compiled:
            cmd += ["--set", f"compile_mode={mode}", "--set", f"compile_cache={a.compile_cache}"]
        if not _installed("ray") or a.quick:   # a bare GPU box, or CI (Ray's start-up is tested elsewhere)
            cmd += ["--set", "runner=local"]
            res["setup"]["runner"] = "local (--quick)" if a.quick else "local (no Ray installed)"
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
        r["compile_decision"] = json.loads((job / "job.json").read_text()).get("compile")
        # steady state: the worker's own unit timings, without start-up and without compilation
        marks = [json.loads(f.read_text()) for f in (job / "scores").glob("*.done")]
        busy = sum(m.get("seconds") or 0 for m in marks)
        comp = sum((m.get("compile") or {}).get("compile_s", 0.0) for m in marks)
        r["compile_s"] = comp
        r["steady_pairs_per_s"] = summary["pairs"] / (busy - comp) if busy > comp and summary.get("pairs") else None
        return r

    for variant, cats in (("vitonhd", ("upper",)), ("dresscode", ("upper", "lower", "dresses"))):
        if budget.left() < (30 if a.quick else 90):
            res[variant] = {"skipped": "time budget"}
            continue
        mo = model_only(variant, cats)
        e2e = end_to_end(tmp / f"job-{variant}", variant, cats)
        e2e["model_only"] = mo
        e2e["pipeline_efficiency"] = e2e["end_to_end"]["pairs_per_second"] / mo["pairs_per_s"]
        if e2e["steady_pairs_per_s"]:
            e2e["pipeline_efficiency_steady"] = e2e["steady_pairs_per_s"] / mo["pairs_per_s"]
        res[variant] = e2e
        print(f"  render {variant} ({mode}): {e2e['end_to_end']['pairs_per_second']:.2f} pairs/s end to end, "
              f"steady {e2e['steady_pairs_per_s'] or 0:.2f}, model-only {mo['pairs_per_s']:.2f}", flush=True)


# ---- fixed-shape buckets: eager against compiled ----------------------------------------------

def section_buckets(a, res: dict, budget: Budget, save: Callable[[], None] = lambda: None) -> None:
    """Per bucket (batch_size pairs, k persons per batch): warm-up and steady pairs/s, eager and compiled."""
    import torch

    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.inference import TryOnPipeline
    from gpvton_core.precision import native_bf16
    from gpvton_core.warp import LFGPWarp

    if a.quick:   # the shapes of the unit_profile section's quick unit: inductor's cache serves both
        (h, w), width, batch, buckets, reps, prec = (128, 96), 1 / 16, 1, [1], 2, "fp32"
    else:
        (h, w), width, batch, buckets, reps = (512, 384), 1.0, 8, a.buckets, 12
        prec = "bf16" if native_bf16(a.device)[0] else "fp32"
    res["setup"] = {"resolution": [h, w], "width": width, "batch": batch, "precision": prec, "reps": reps,
                    "compile": _compile_mode(a)}
    rows = res.setdefault("rows", [])
    for k in buckets:
        person, garment = random_inputs(k, batch, h, w)
        gi, pi = torch.arange(batch), torch.arange(batch) % k    # k distinct persons in every batch
        for mode in ("eager",) if _compile_mode(a) == "off" else ("eager", _compile_mode(a)):
            need = 10 if mode == "eager" else (60 if a.quick else 100)
            row: dict[str, Any] = {"bucket": f"pairs {batch} persons {k}", "mode": mode}
            if budget.left() < need:
                rows.append({**row, "skipped": "time budget"})
                continue
            try:
                torch.manual_seed(0)
                pipe = TryOnPipeline(LFGPWarp("vitonhd", width), TryOnGenerator(width), resolution=(h, w),
                                     device=a.device, precision=prec,
                                     compile=False if mode == "eager" else (True if mode == "default" else mode))
                gb, pb = pipe.encode_garments(garment), pipe.encode_persons(person)
                t0 = time.perf_counter()
                for _ in range(1 if mode == "eager" else 3):   # CUDA graphs: recorded on a later call than the first
                    pipe.run_pairs(gb, pb, gi, pi, batch_size=batch, fixed_shapes=True)
                _sync(a.device)
                row["warmup_s"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                for _ in range(reps):
                    pipe.run_pairs(gb, pb, gi, pi, batch_size=batch, fixed_shapes=True)
                _sync(a.device)
                row["pairs_per_s"] = reps * batch / (time.perf_counter() - t0)
                row["compile_shapes_s"] = pipe.warmup
            except Exception as e:  # noqa: BLE001 — a compile error must not stop the rest
                row["error"] = f"{type(e).__name__}: {e}"[:2000]
            finally:
                import torch._dynamo

                torch._dynamo.reset()
            rows.append(row)
            print(f"  bucket {row['bucket']} {mode}: {row.get('pairs_per_s', row.get('skipped') or row.get('error'))}",
                  flush=True)
            save()


# ---- one unit of the worker, profiled ----------------------------------------------------------

def _unit_of(shards: Path, category: str, max_pairs: int) -> dict:
    """A planner-like unit (person-major pairs) of the shards' first persons and garments of ``category``."""
    import math

    import pyarrow.parquet as pq

    persons = pq.read_table(shards / "persons", columns=["person_id", "categories"]).to_pylist()
    garments = pq.read_table(shards / "garments", columns=["garment_id", "category"]).to_pylist()
    gs = sorted(r["garment_id"] for r in garments if r["category"] == category)
    ps = sorted(r["person_id"] for r in persons if category in r["categories"])
    gs = gs[:max(1, int(math.ceil(math.sqrt(max_pairs))))]
    ps = ps[:max(1, max_pairs // len(gs))]
    part = "persons/part-00000.parquet", "garments/part-00000.parquet"
    files = {"persons": {p: part[0] for p in ps}, "garments": {g: part[1] for g in gs}}
    if len(list((shards / "persons").glob("*.parquet"))) != 1 or len(list((shards / "garments").glob("*.parquet"))) != 1:
        files = {"persons": {}, "garments": {}}
        for table, key, ids in (("persons", "person_id", ps), ("garments", "garment_id", gs)):
            for f in sorted((shards / table).glob("*.parquet")):
                for i in pq.read_table(f, columns=[key]).column(key).to_pylist():
                    if i in ids:
                        files[table][i] = f"{table}/{f.name}"
    return {"unit_id": 0, "category": category, "person_ids": ps, "garment_ids": gs, "worn": {},
            "pairs": [{"person_id": p, "garment_id": g, "version": "v"} for p in ps for g in gs], "files": files}


def _kernel_kind(name: str) -> str:
    n = name.lower()
    if "memcpy dtoh" in n or "memcpy htod" in n or "memcpy" in n and "host" in n:
        return "host copies"
    if "memcpy" in n or "copy" in n or "memset" in n:
        return "device copies (layout / dtype)"
    if "conv" in n or "cudnn" in n or "gemm" in n or "xmma" in n or "sm90" in n or "sm80" in n:
        return "convolutions / GEMM"
    if "triton" in n:
        return "fused (inductor)"
    return "other kernels"


def section_unit_profile(a, res: dict) -> None:
    """torch.profiler around one unit of UnitProcessor (VITON-HD networks, upper), next to the
    model-only time of its pairs: where the end-to-end time goes that the model does not take."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    import gpvton_core.scores as scores_mod
    from gpvton_core.precision import native_bf16
    from gpvton_core.transfer import HostCopy
    from workers.render import images as images_mod
    from workers.render.settings import WorkerSettings, job_storage
    from workers.render.unit import UnitProcessor

    shards, size, _, _ = shards_for(a)
    from pipelines.demo import SIZES

    h, w = SIZES[size]
    width, batch = (1 / 16, 1) if a.quick else (1.0, 8)
    prec = "bf16" if (a.device != "cpu" and native_bf16(a.device)[0]) else "fp32"
    mode = _compile_mode(a)
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-unit-"))
    unit = _unit_of(shards, "upper", 4 if a.quick else 64)
    s = WorkerSettings(job_root=str(tmp / "warm"), shards_root=str(shards), variant="vitonhd",
                       shard_size=(h, w), batch_size=batch, device=a.device, precision=prec, width=width,
                       compile=mode, compile_cache_dir=a.compile_cache)
    res["setup"] = {"resolution": [h, w], "width": width, "batch": batch, "precision": prec, "compile": mode,
                    "pairs": len(unit["pairs"]), "persons": len(unit["person_ids"]),
                    "garments": len(unit["garment_ids"])}
    proc = UnitProcessor(s)
    t0 = time.time()
    warm = proc.process_unit(unit)   # compiles every bucket the unit needs
    res["warmup"] = {"seconds": time.time() - t0, "compile": warm["compile"]}
    proc.inputs.cache.clear()
    proc.encoder.cache.clear()
    proc.storage = proc.images.storage = job_storage(str(tmp / "profiled"), {})

    methods = [(proc.inputs, "load", "read + decode"), (proc.encoder, "encode", "encoders"),
               (proc, "_finish_batch", "rows + hand images to writers")]

    def labelled(fn, name):
        def run(*args, **kw):
            with record_function(name):
                return fn(*args, **kw)
        return run

    for owner, attr, name in methods:
        setattr(owner, attr, labelled(getattr(owner, attr), name))
    proc.pipe._decode = labelled(proc.pipe._decode, "networks: flow decoder")
    proc.pipe._generate = labelled(proc.pipe._generate, "networks: generator")
    orig_scores, orig_wait, orig_paste = scores_mod.compute_scores, HostCopy.wait, images_mod.paste_back
    scores_mod.compute_scores = labelled(orig_scores, "scores")
    HostCopy.wait = labelled(orig_wait, "host waits for the device")
    images_mod.paste_back = labelled(orig_paste, "paste-back")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device != "cpu" else [])
    try:
        with profile(activities=acts) as prof:
            summary = proc.process_unit(unit)
            _sync(a.device)
    finally:
        scores_mod.compute_scores, HostCopy.wait, images_mod.paste_back = orig_scores, orig_wait, orig_paste
    # model-only: the same pipeline on the same decoded inputs and buckets
    from gpvton_core.tryon_batches import GarmentInputs, PersonInputs

    ins = proc.inputs.load("person", unit["person_ids"], "upper", unit["files"]["persons"])
    gins = proc.inputs.load("garment", unit["garment_ids"], "upper", unit["files"]["garments"])
    gin = GarmentInputs.cat([gins[g] for g in unit["garment_ids"]])
    pin = PersonInputs.cat([ins[p].inputs for p in unit["person_ids"]])
    _sync(a.device)
    t0 = time.perf_counter()
    _fixed_pairs(proc.pipe, [("upper", gin, pin)], batch, True)
    _sync(a.device)
    model_s = time.perf_counter() - t0

    host: dict[str, float] = {}
    for e in prof.key_averages():
        if e.key in {name for _, _, name in methods} | {"networks: flow decoder", "networks: generator", "scores",
                                             "paste-back", "host waits for the device"}:
            host[e.key] = e.cpu_time_total / 1e3
    gpu: dict[str, float] = {}
    for e in prof.events():
        if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA:
            k = _kernel_kind(e.name)
            gpu[k] = gpu.get(k, 0.0) + e.time_range.elapsed_us() / 1e3
    prep, comp = summary["phases"]["prep"], summary["phases"]["compute"]
    total_ms = summary["seconds"] * 1e3
    table = [{"cause": "unit end to end (worker seconds)", "ms": total_ms},
             {"cause": "model only (same pairs, decoded inputs, warm)", "ms": model_s * 1e3},
             {"cause": "gap", "ms": total_ms - model_s * 1e3},
             {"cause": "read + decode phase (overlaps the previous unit in a job)", "ms": (prep[1] - prep[0]) * 1e3},
             {"cause": "after compute: images written, scores file, marker",
              "ms": total_ms - (prep[1] - prep[0]) * 1e3 - (comp[1] - comp[0]) * 1e3}]
    table += [{"cause": f"host: {k}", "ms": v} for k, v in sorted(host.items(), key=lambda kv: -kv[1])]
    if gpu:
        busy = sum(gpu.values())
        table += [{"cause": f"GPU: {k}", "ms": v} for k, v in sorted(gpu.items(), key=lambda kv: -kv[1])]
        table.append({"cause": "GPU idle during the compute phase", "ms": (comp[1] - comp[0]) * 1e3 - busy})
    res["table"] = table
    res["pairs_per_s"] = {"unit": len(unit["pairs"]) / summary["seconds"], "model_only": len(unit["pairs"]) / model_s}
    res["summary"] = f"unit {res['pairs_per_s']['unit']:.2f} pairs/s, model-only {res['pairs_per_s']['model_only']:.2f}"


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
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="wall-clock budget; compiled configs that would not fit are skipped")
    ap.add_argument("--grid", type=int, default=8, help="throughput: persons = garments per cross product")
    ap.add_argument("--render-timeout", type=float, default=150.0)
    ap.add_argument("--sections", nargs="+",
                    default=["parity", "throughput", "profile", "unit_profile", "buckets", "render"],
                    help="also: compiled (the cross-product compile of the throughput configs)")
    ap.add_argument("--buckets", type=int, nargs="+", default=[1, 8], metavar="PERSONS",
                    help="buckets section: persons per batch of 8 (powers of two up to 8)")
    ap.add_argument("--eager-only", action="store_true",
                    help="no torch.compile anywhere (CI's quick run: a cold CPU compile takes minutes)")
    ap.add_argument("--compile-cache", default=os.path.expanduser("~/.cache/gpvton/inductor"),
                    help="inductor's cache folder (TORCHINDUCTOR_CACHE_DIR), shared with the render runs")
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
    if "unit_profile" in a.sections:
        _guarded("unit_profile", doc, a.out, lambda r: section_unit_profile(a, r))
    if "buckets" in a.sections:
        _guarded("buckets", doc, a.out, lambda r: section_buckets(a, r, budget, save=save))
    if "render" in a.sections:
        _guarded("render", doc, a.out, lambda r: section_render(a, r, budget))
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
    for r in doc["sections"].get("unit_profile", {}).get("table", []):
        print(f"  unit {r['ms']:10.1f} ms  {r['cause']}")
    for r in doc["sections"].get("buckets", {}).get("rows", []):
        v = f"{r['pairs_per_s']:.2f} pairs/s, warm-up {r['warmup_s']:.1f} s" if "pairs_per_s" in r else \
            r.get("skipped") or r.get("error", "")[:80]
        print(f"  bucket {r['bucket']:<20} {r['mode']:<16} {v}")
    for variant, rd in doc["sections"].get("render", {}).items():
        if isinstance(rd, dict) and "pipeline_efficiency" in rd:
            print(f"render {variant}: {rd['end_to_end']['pairs_per_second']:.2f} pairs/s end to end, model-only "
                  f"{rd['model_only']['pairs_per_s']:.2f}, efficiency {rd['pipeline_efficiency']:.2f} "
                  f"(steady {rd.get('pipeline_efficiency_steady') or 0:.2f}, compile {rd['compile_s']:.0f} s)")
    print(f"wrote {a.out} ({doc['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
