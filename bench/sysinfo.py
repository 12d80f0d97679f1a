"""What every benchmark JSON records about the machine it ran on (``"machine"``).

    from sysinfo import machine_info            # bench scripts put bench/ on sys.path
    result = {"machine": machine_info(), ...}   # at the start of a run
    result["machine"]["loadavg_end"] = os.getloadavg()

CPU model and the flags that decide which precision is native (AVX512-BF16, AMX), the thread
count torch will use, torch / CUDA versions, the GPU, the load average (a loaded machine makes
every timing meaningless: compare numbers only within one run) and the git commit.
``python bench/sysinfo.py`` prints it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
#: cpuinfo flags that matter for the model core's precision choice and convolution speed
FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
         "amx_fp16")


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip()
        if key == "model name" and val.strip():
            model = val.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(val.split())
    return model, flags


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_busy(seconds: float = 1.0) -> Optional[float]:
    """Fraction of all CPUs busy over ``seconds`` (from /proc/stat): what else runs right now.

    The load average is a slow mean (a benchmark that just ended still weighs on it for minutes);
    this says whether other work shares the CPUs at the moment a run starts.
    """
    def sample() -> Optional[tuple[int, int]]:
        try:
            with open("/proc/stat") as fh:
                vals = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals), idle

    a = sample()
    time.sleep(seconds)
    b = sample()
    if a is None or b is None or b[0] == a[0]:
        return None
    return round(1 - (b[1] - a[1]) / (b[0] - a[0]), 3)


def machine_info(threads: Optional[int] = None) -> dict[str, Any]:
    """The ``"machine"`` block of a benchmark JSON (``threads``: what the benchmark sets)."""
    import torch

    model, flags = _cpuinfo()
    info: dict[str, Any] = {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpu_flags": {f: f in flags for f in FLAGS},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": list(os.getloadavg()),
        "cpu_busy_start": cpu_busy(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": _git_commit(),
        "cuda": None,
    }
    try:
        from gpvton_core.precision import native_bf16

        info["native_bf16_cpu"] = native_bf16("cpu")[0]
    except ImportError:
        pass
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["cuda"] = {"device": p.name, "capability": f"{p.major}.{p.minor}", "memory_gib": round(p.total_memory / 2**30, 1),
                        "count": torch.cuda.device_count(), "torch_cuda": torch.version.cuda,
                        "cudnn": torch.backends.cudnn.version()}
    return info


def finish(info: dict[str, Any]) -> dict[str, Any]:
    """Add the load average at the end of the run (in place; returns ``info``)."""
    info["loadavg_end"] = list(os.getloadavg())
    return info


if __name__ == "__main__":
    print(json.dumps(finish(machine_info()), indent=1))
