"""Regenerate the README's benchmark table from bench/results/*.json (prints Markdown to paste).

    python bench/make_readme_table.py [--results bench/results] [--files core.json gpu_check.json ...]

One row per result file, newest schema first, each with the machine it ran on (CPU model, bf16
support, threads, torch, load average: bench/sysinfo.py's ``machine`` block; older files that
lack it say so). The numbers are marked *loaded* when more than a quarter of the CPUs were busy in
the second before the run started (``cpu_busy_start``; older files: a 1-minute load average above half
the CPU count).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]


def _f(x: Optional[float], nd: int = 2) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def machine_cell(doc: dict) -> str:
    m = doc.get("machine")
    if not isinstance(m, dict):
        return "machine not recorded"
    if "cpu_model" not in m:  # older benches recorded only the core count and load
        load = m.get("loadavg_start") or [0]
        return f"{m.get('cpus', '?')} CPUs, load {load[0]:.1f} (no CPU model / bf16 flags recorded)"
    parts = [m.get("cpu_model", "?")]
    flags = m.get("cpu_flags") or {}
    bf16 = [k for k in ("avx512_bf16", "amx_bf16") if flags.get(k)]
    parts.append("bf16: " + ("+".join(bf16) if bf16 else "none"))
    if m.get("cuda"):
        parts.append(f"{m['cuda']['device']} (cc {m['cuda']['capability']})")
    parts.append(f"{m.get('threads')} threads, torch {m.get('torch')}")
    load = m.get("loadavg_start") or [0]
    end = m.get("loadavg_end") or load
    # the load before the run says whether other jobs shared the CPUs (at the end it also counts the
    # benchmark's own processes, e.g. two render actors on two cores)
    busy = m.get("cpu_busy_start")
    if busy is not None:   # measured right before the run: other work on the CPUs
        loaded = busy > 0.25 and not m.get("cuda")
        parts.append(f"CPUs {busy:.0%} busy at the start, load {load[0]:.1f}→{end[0]:.1f}"
                     + (" (*loaded*)" if loaded else ""))
        return ", ".join(parts)
    loaded = load[0] > (m.get("cpu_count") or 1) * 0.5 and not m.get("cuda")
    parts.append(f"load {load[0]:.1f}→{end[0]:.1f}" + (" (*loaded*)" if loaded else ""))
    return ", ".join(parts)


def core_rows(name: str, doc: dict) -> list[str]:
    res = [r for r in doc.get("results", []) if "per_pair_s" in r]
    out = []
    for key in sorted({tuple(r["res"]) for r in res}):
        rs = [r for r in res if tuple(r["res"]) == key]
        by = {r["mode"]: r for r in rs}
        mono = by.get("monolithic", {}).get("per_pair_s")
        cells = []
        for mode, r in by.items():
            c = f"{mode} {_f(r['per_pair_s'])} s/pair"
            if mono and mode != "monolithic":
                c += f" (**{r['per_pair_s'] / mono:.2f}×**)"
            if "ssim_vs_fp32" in r:
                c += f", SSIM {r['ssim_vs_fp32']:.3f}"
            if "floor_s" in r:
                c += f", floor {_f(r['floor_s'])} s"
            cells.append(c)
        a = doc.get("args", {})
        weights = rs[0].get("weights", "parity")
        width = "of the demo checkpoint (1/16)" if weights == "demo" else rs[0].get("width")
        what = (f"`bench/bench_core.py` {key[0]}×{key[1]}, weights {weights}, width {width}, "
                f"{rs[0].get('grid', '?')}×{rs[0].get('grid', '?')} cross product, batch {rs[0].get('batch')}")
        if a.get("ablation"):
            what += " (ablation)"
        out.append(f"| {what} | {'; '.join(cells)} | {machine_cell(doc)} | `{name}` |")
    return out


def profile_rows(name: str, doc: dict) -> list[str]:
    st = doc.get("stages")
    if not isinstance(st, dict):
        return []
    if "s" not in next(iter(st.values()), {}):  # old schema: stage → seconds
        cells = "; ".join(f"{k} {_f(v)} s" for k, v in st.items())
    else:
        cells = "; ".join(f"{k} {_f(v['s'], 3)} s ({v['flops'] / 1e9:.0f} GFLOP"
                          + (f", floor {_f(v['floor_s'], 3)} s" if v.get("floor_s") is not None else "") + ")"
                          for k, v in st.items())
        cells += f"; per pair at 8×8: {_f(doc.get('per_pair_8x8_s'), 3)} s"
        if doc.get("floor_per_pair_8x8_s"):
            cells += f" (floor {_f(doc['floor_per_pair_8x8_s'], 3)} s)"
    res = doc.get("res", ["?", "?"])
    prec = (doc.get("precision") or {}).get("resolved", "fp32")
    return [f"| `bench/profile_core.py` {res[0]}×{res[1]}, {prec}, batch {doc.get('batch', 1)} | {cells} | "
            f"{machine_cell(doc)} | `{name}` |"]


def gpu_rows(name: str, doc: dict) -> list[str]:
    sec = doc.get("sections", {})
    out = []
    par = sec.get("parity", {})
    if par:
        out.append(f"| `bench/gpu_check.py` parity ({par.get('mode')}) | {par.get('summary') or ('passed' if par.get('passed') else par.get('error') or 'failed')} | "
                   f"{machine_cell(doc)} | `{name}` |")
    thr = sec.get("throughput", {})
    cells = []
    for r in thr.get("configs", []):
        if "pairs_per_s" in r:
            mode = {"eager": "eager", "reduce-overhead": "CUDA graphs", True: "compiled"}.get(r["compile"], r["compile"])
            c = f"{r['precision']} b{r['batch']} {mode}: {r['pairs_per_s']:.1f} pairs/s"
            if "peak_mem_gib" in r:
                c += f", {r['peak_mem_gib']:.1f} GiB"
            if "ssim_vs_fp32" in r and r["precision"] != "fp32":
                c += f", SSIM {r['ssim_vs_fp32']:.4f}"
            if r.get("note"):
                c += f" ({r['note'].split(':')[0]})"
            cells.append(c)
    if cells:
        s = thr.get("setup", {})
        res = "×".join(str(x) for x in s.get("resolution") or ["?"])
        out.append(f"| `bench/gpu_check.py` throughput {res}, width {s.get('width')}, {s.get('cross_product')} | "
                   f"{'; '.join(cells)} | {machine_cell(doc)} | `{name}` |")
    rd = sec.get("render", {})
    if rd.get("pipeline_efficiency") is not None and not rd.get("superseded"):
        cell = (f"end to end {_f(rd['end_to_end']['pairs_per_second'])} pairs/s, model-only "
                f"{_f(rd['model_only']['pairs_per_s'])} → efficiency **{_f(rd['pipeline_efficiency'])}** "
                f"(steady {_f(rd.get('pipeline_efficiency_steady'))})")
        on = rd.get("cudnn_benchmark_on")
        if on:
            cell += (f"; with cudnn.benchmark: {_f(on['end_to_end']['pairs_per_second'])} end to end, model-only "
                     f"{_f(on['model_only']['pairs_per_s'])}")
        su = rd.get("setup", {})
        out.append(f"| `bench/gpu_check.py` render, {su.get('persons')}×{su.get('garments')} catalogue "
                   f"({rd.get('end_to_end', {}).get('pairs')} pairs), {su.get('precision')}, batch "
                   f"{su.get('batch_size')}, 1 worker | {cell} | {machine_cell(doc)} | `{name}` |")
    elif rd.get("status") == "error":
        out.append(f"| `bench/gpu_check.py` render | error: {rd.get('error', '')[:80]} | {machine_cell(doc)} | `{name}` |")
    return out


def render_rows(name: str, doc: dict) -> list[str]:
    if "pipeline_efficiency" not in doc:
        return []
    s = doc.get("setup", {})
    res = "×".join(str(x) for x in s.get("resolution") or ["?"])
    what = f"| `bench/bench_render.py` {res}, width {s.get('width')}, {s.get('pairs')} pairs"
    if "rounds" not in doc:   # the first schema: 1 actor against one model-only process
        return [f"{what} | model-only {_f(doc['model_only']['pairs_per_second'])} pairs/s; 1 actor efficiency "
                f"**{_f(doc['pipeline_efficiency'])}** (steady {_f(doc.get('pipeline_efficiency_steady'))}); "
                f"1→2 actors {_f(doc.get('actor_speedup_1_to_2'))}× | {machine_cell(doc)} | `{name}` |"]
    n = s.get("actors", 2)
    rounds = "; ".join(f"{_f(r['end_to_end']['pairs_per_second'])} / {_f(r['model_only']['pairs_per_second'])}"
                       for r in doc["rounds"])
    return [f"{what}, {s.get('precision')}, {n} actors | end-to-end / model-only pairs/s per round: {rounds} → "
            f"efficiency **{_f(doc['pipeline_efficiency'])}** (median; rounds "
            f"{', '.join(_f(x) for x in doc['pipeline_efficiency_rounds'])}), steady "
            f"{_f(doc.get('pipeline_efficiency_steady'))}; 1 actor {_f(doc.get('pipeline_efficiency_1_actor'))}; "
            f"1→{n} actors {_f(doc.get('actor_speedup'))}× | {machine_cell(doc)} | `{name}` |"]


def generic_rows(name: str, doc: dict) -> list[str]:
    res = doc.get("results")
    if isinstance(res, list):
        cells = "; ".join(", ".join(f"{k} {v}" for k, v in r.items() if isinstance(v, (int, float, str)))
                          for r in res[:6])
    elif isinstance(res, dict):
        cells = "; ".join(f"{k}: " + ", ".join(f"{kk} {vv}" for kk, vv in v.items() if isinstance(vv, (int, float)))
                          for k, v in res.items() if isinstance(v, dict))
    else:
        return []
    return [f"| `{name}` | {cells} | {machine_cell(doc)} | `{name}` |"]


KINDS: list[tuple[Callable[[str], bool], Callable[[str, dict], list[str]]]] = [
    (lambda n: n.startswith("core"), core_rows),
    (lambda n: n.startswith("profile_core"), profile_rows),
    (lambda n: n.startswith("gpu_check"), gpu_rows),
    (lambda n: n.startswith("render"), render_rows),
    (lambda n: True, generic_rows),
]


def table(files: list[Path]) -> str:
    lines = ["| bench | result | machine | file |", "|---|---|---|---|"]
    for f in files:
        try:
            doc: Any = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(doc, dict):
            continue
        for match, fn in KINDS:
            if match(f.stem):
                lines += fn(f.name, doc)
                break
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--files", nargs="*", default=None, help="only these files (names under --results)")
    a = ap.parse_args(argv)
    files = [a.results / n for n in a.files] if a.files else sorted(a.results.glob("*.json"))
    print(table(files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
