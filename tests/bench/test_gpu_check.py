"""bench/gpu_check.py must not rot: its CPU smoke run exercises every section's code path.

The GPU numbers themselves come from running the script on a GPU box (README, bench/results).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# inductor's kernels for the tiny compiled unit, kept between runs (the first compile takes minutes on 2 cores)
CACHE = os.environ.get("GPVTON_TEST_INDUCTOR_CACHE", "/tmp/gpvton-inductor-tests")


@pytest.mark.slow
def test_gpu_check_quick_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(out), "--compile-cache", CACHE, "--eager-only"], cwd=REPO, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert {"cpu_model", "cpu_flags", "threads", "torch", "loadavg_start", "loadavg_end"} <= set(doc["machine"])
    sec = doc["sections"]
    assert {k: s["status"] for k, s in sec.items()} == {"parity": "ok", "throughput": "ok", "profile": "ok",
                                                              "unit_profile": "ok", "buckets": "ok", "render": "ok"}, \
        {k: s.get("error") for k, s in sec.items()}
    assert sec["parity"]["passed"] is True
    configs = sec["throughput"]["configs"]
    assert {(c["precision"], c["batch"]) for c in configs} == {("fp32", 2), ("fp32", 4), ("bf16", 2), ("bf16", 4)}
    assert all(c["pairs_per_s"] > 0 for c in configs)
    assert all(c["ssim_vs_fp32"] > 0.95 for c in configs if c["precision"] == "bf16")
    assert sec["profile"]["kernels"] and sec["profile"]["kernel_launches"] > 0
    unit = sec["unit_profile"]   # the tiny unit ran and was profiled (eager here: CI has no time for a cold compile)
    assert unit["warmup"]["compile"]["mode"] == "off"
    causes = {r["cause"] for r in unit["table"]}
    assert {"gap", "host: networks: flow decoder", "host: scores", "host: read + decode"} <= causes, causes
    assert {(r["bucket"], r["mode"]) for r in sec["buckets"]["rows"] if "pairs_per_s" in r} == \
        {("pairs 1 persons 1", "eager")}                      # --eager-only: no compiled row
    for variant in ("vitonhd", "dresscode"):
        render = sec["render"][variant]
        assert render["exit_code"] == 0 and render["end_to_end"]["pairs"] > 0 and render["pipeline_efficiency"] > 0
        assert render["compile_decision"]["resolved"] == "off"   # --device cpu: eager end to end
