"""Parity check against the official reference fixtures (spec/parity/README.md).

    python -m gpvton_core.parity FIXTURE_DIR [--dtype float64|float32|both] [--spec DIR] [--keys-dir DIR]
                                             [--path training|inference|both] [--channels-last] [--device cuda]

For every ``*.npz`` whose ``meta_network`` is a GP-VTON network, the weights are regenerated
with ``fill_state_dict(keys, meta_seed, meta_gain)`` (``fill_weights.py`` from FIXTURE_DIR, else
from ``--spec``), the model arguments are built as the parity README §3.2 / §4 prescribe, and
every reference array is compared with the README §5 tolerances. Batch size and resolution
come from the arrays. Exit status 1 on any FAIL.

``--path training`` (default) runs the official forward with all its outputs; ``inference``
runs what production runs (split encoders, :meth:`LFGPWarp.decode_pairs`), which has no
``dbg_*`` outputs. ``--channels-last`` runs the networks channels-last. On CUDA, TF32 is
switched off (the README's condition for the float32 tolerances).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import assembly as asm
from .checkpoints import load_official
from .float64_conv import ShiftedFloat64Convolutions
from .generator import TryOnGenerator
from .warp import LFGPWarp

NETWORKS = ("warp_vitonhd", "warp_dresscode", "generator")
F64 = 1e-9
#: float32 tolerances (parity README §5): name → (max abs, mean abs or None)
F32_TOL: dict[str, tuple[float, Optional[float]]] = {
    "ref_last_flow": (1.5e-4, 5e-6),
    "ref_seg_logits": (1e-2, 3e-5),
    "ref_warped_cloth": (1e-2, 3e-6),
    "ref_gen_raw": (2e-5, 2e-6),
    "ref_p_tryon": (2e-5, 2e-6),
    "dbg": (3e-4, None),
}
F32_LABEL_FRACTION = 0.0005  # ≤ 0.05 % of label pixels may differ in float32


@dataclass
class Check:
    fixture: str
    dtype: str  # dtype, plus "/inference", "/cl", "/cuda" where those apply
    name: str
    max_abs: float
    mean_abs: float
    tol: str
    ok: bool

    def line(self) -> str:
        return (f"{self.fixture:<16} {self.dtype:<8} {self.name:<22} max {self.max_abs:10.3e}  "
                f"mean {self.mean_abs:10.3e}  tol {self.tol:<22} {'PASS' if self.ok else 'FAIL'}")


def load_fill_weights(fixture_dir: Path, spec_dir: Optional[Path]) -> ModuleType:
    """Import ``fill_weights.py`` from the fixture dir (preferred) or the spec parity dir."""
    candidates = [fixture_dir / "fill_weights.py"]
    if spec_dir is not None:
        candidates += [spec_dir / "fill_weights.py", spec_dir / "parity" / "fill_weights.py"]
    for c in candidates:
        if c.is_file():
            spec = importlib.util.spec_from_file_location("gpvton_parity_fill_weights", c)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
    raise FileNotFoundError(f"fill_weights.py not found in {[str(c) for c in candidates]}")


def warp_args(z: dict[str, np.ndarray], variant: str) -> list[Tensor]:
    """The official forward arguments, float32, exactly as parity README §3.2 builds them."""
    t = lambda k: torch.from_numpy(np.asarray(z[k])).float()  # noqa: E731
    onehot = F.one_hot(torch.from_numpy(z["in_densepose_label"][:, 0].astype(np.int64)), 25)
    onehot = onehot.permute(0, 3, 1, 2).float()
    pm3 = t("in_preserve_mask3")
    cond = torch.cat([onehot * 2 - 1, t("in_pose"), pm3], 1)
    edge = t("in_edge")
    clothes = t("in_color") * edge
    label = t("in_flat_clothes_label_int") / asm.garment_label_divisor(variant)
    L, M, R = (t(f"in_flat_clothes_{k}_mask") for k in ("left", "middle", "right"))
    args = [cond, clothes, edge, label, clothes * L, clothes * M, clothes * R, L, M, R, pm3]
    if variant == "dresscode":
        b, _, h, w = cond.shape
        v = torch.from_numpy(z["in_flat_clothes_type_int"].astype(np.float32)) / 3
        args.append(v.view(b, 1, 1, 1).expand(b, 1, h, w).contiguous())
    return args


def _diff(a: Tensor, ref: np.ndarray, where: Optional[Tensor] = None) -> tuple[float, float]:
    d = (a.detach().double() - torch.from_numpy(np.asarray(ref, dtype=np.float64))).abs()
    if where is not None:
        d = d[where.expand_as(d)]
    if d.numel() == 0:
        return 0.0, 0.0
    return float(d.max()), float(d.mean())


def _tol(name: str, dtype: torch.dtype) -> tuple[float, Optional[float]]:
    if dtype == torch.float64:
        return F64, None
    return F32_TOL["dbg" if name.startswith("dbg_") else name]


@dataclass(frozen=True)
class Run:
    """How the networks run: dtype, path (training = official forward, inference = production), layout, device."""

    dtype: torch.dtype = torch.float64
    path: str = "training"
    channels_last: bool = False
    device: str = "cpu"

    @property
    def tag(self) -> str:
        t = str(self.dtype).replace("torch.", "")
        return t + ("/inference" if self.path == "inference" else "") + ("/cl" if self.channels_last else "") + (
            "" if self.device == "cpu" else f"/{torch.device(self.device).type}")

    @property
    def fmt(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def net(self, x: Tensor) -> Tensor:
        return x.to(self.device, self.dtype).contiguous(memory_format=self.fmt)


def _as_run(r: Union[torch.dtype, Run]) -> Run:
    return r if isinstance(r, Run) else Run(dtype=r)


def _check(fixture: str, run: Union[torch.dtype, Run], name: str, a: Tensor, ref: np.ndarray,
           where: Optional[Tensor] = None) -> Check:
    run = _as_run(run)
    mx, mean = _diff(a.cpu(), ref, None if where is None else where.cpu())
    tmax, tmean = _tol(name, run.dtype)
    ok = mx <= tmax and (tmean is None or mean <= tmean) and np.isfinite(mx)
    tol = f"max {tmax:.2g}" + (f" mean {tmean:.2g}" if tmean is not None else "")
    return Check(fixture, run.tag, name, mx, mean, tol, ok)


def check_warp(fixture: str, z: dict[str, np.ndarray], variant: str, sd: dict[str, Tensor],
               dtype: Union[torch.dtype, Run]) -> list[Check]:
    run = _as_run(dtype)
    dtype = run.dtype
    model = load_official(LFGPWarp(variant), sd).to(run.device, dtype, memory_format=run.fmt)  # type: ignore[arg-type]
    args = [a.to(run.device) for a in warp_args(z, variant)]
    with torch.inference_mode():
        if run.path == "inference":
            cond, clothes, label = args[0], args[1], args[3]
            gf = model.encode_garment(run.net(torch.cat((clothes, label), 1)),
                                      run.net(args[11]) if variant == "dresscode" else None)
            pf = model.encode_person(run.net(cond))
            last_flow, seg_logits = model.decode_pairs(gf, pf, None, None, torch.cat(args[7:10]).to(dtype),
                                                       args[10].to(dtype))
            out = None
        else:
            out = model(*[run.net(a) for a in args], mode="training")
            last_flow, seg_logits = out.last_flow, out.seg_logits
        cats = [str(c) for c in z["in_c_type"]]
        part_cls, extra_cls = asm.class_table(variant, cats, run.device)
        clothes, L, M, R = args[1], args[7], args[8], args[9]
        part_images = torch.cat([clothes * L, clothes * M, clothes * R]).to(dtype)
        part_masks = torch.cat([L, M, R]).to(dtype)
        cloth, label = asm.assemble_warp(part_images, part_masks, last_flow.to(dtype), asm.seg_argmax(seg_logits),
                                         args[10].to(dtype), part_cls, extra_cls)
    checks = [
        _check(fixture, run, "ref_last_flow", last_flow, z["ref_last_flow"]),
        _check(fixture, run, "ref_seg_logits", seg_logits, z["ref_seg_logits"]),
    ]
    ref_label = torch.from_numpy(z["ref_warped_label"].astype(np.int64))
    agree = label.cpu().round().long() == ref_label
    frac = 1.0 - float(agree.float().mean())
    lim = 0.0 if dtype == torch.float64 else F32_LABEL_FRACTION
    checks.append(Check(fixture, run.tag, "ref_warped_label", frac, float((~agree).sum()), f"px frac <= {lim:g}",
                        frac <= lim))
    checks.append(_check(fixture, run, "ref_warped_cloth", cloth, z["ref_warped_cloth"], agree))
    if out is None:
        return checks
    dbg = {
        "dbg_delta_l0_main": out.deltas[0], "dbg_delta_l0_refine": out.deltas[1],
        "dbg_delta_l1_main": out.deltas[2], "dbg_delta_l1_refine": out.deltas[3],
        "dbg_last_flow_l0": out.flows[0], "dbg_seg_logits_l0": out.segs[0],
        "dbg_attention_l0": out.attention[0],
    }
    for k, v in dbg.items():
        if k in z:
            checks.append(_check(fixture, run, k, v, z[k]))
    return checks


def check_generator(fixture: str, z: dict[str, np.ndarray], sd: dict[str, Tensor],
                    dtype: Union[torch.dtype, Run]) -> list[Check]:
    run = _as_run(dtype)
    dtype = run.dtype
    t = lambda k: torch.from_numpy(np.asarray(z[k])).float()  # noqa: E731
    x, edge = asm.generator_input(t("in_image"), t("in_preserve_mask3"), t("in_warped_cloth"),
                                  t("in_warped_label"), t("in_arms_color"), t("in_pose"), "vitonhd")
    rebuilt = bool(torch.equal(x, t("in_gen_inputs")))
    d = float((x - t("in_gen_inputs")).abs().max())
    checks = [Check(fixture, run.tag, "in_gen_inputs", d, d, "bit-exact", rebuilt)]
    gen = load_official(TryOnGenerator(), sd).to(run.device, dtype, memory_format=run.fmt)
    with torch.inference_mode():
        raw = gen.infer(run.net(x))
        tryon, _, _ = asm.compose(raw, t("in_warped_cloth").to(run.device, dtype), edge.to(run.device, dtype))
    checks.append(_check(fixture, run, "ref_gen_raw", raw, z["ref_gen_raw"]))
    checks.append(_check(fixture, run, "ref_p_tryon", tryon, z["ref_p_tryon"]))
    return checks


def run_fixture(path: Path, fill: ModuleType, keys_dir: Path, dtypes: Sequence[Union[torch.dtype, Run]],
                log: Callable[[str], None] = print) -> list[Check]:
    with np.load(path, allow_pickle=False) as f:
        z = {k: f[k] for k in f.files}
    network = str(z.get("meta_network", ""))
    if network not in NETWORKS:
        return []
    keys = json.loads((keys_dir / f"{network}_keys.json").read_text())
    sd = fill.fill_state_dict(keys, int(z["meta_seed"]), float(z["meta_gain"]))
    checks: list[Check] = []
    for dt in dtypes:
        r = _as_run(dt)
        if network == "generator" and r.path == "inference":
            r = Run(r.dtype, "training", r.channels_last, r.device)  # the generator has one path
        t0 = time.time()
        with ShiftedFloat64Convolutions():  # torch's float64 CPU convolution is an im2col fallback, 2-3× slower
            if network == "generator":
                got = check_generator(path.stem, z, sd, r)
            else:
                got = check_warp(path.stem, z, network.split("_", 1)[1], sd, r)
        # ref_warped_label reports (fraction, count) of differing pixels as (max, mean)
        for c in got:
            log(c.line())
        log(f"{path.stem:<16} {r.tag:<8} ({time.time() - t0:.1f} s)")
        checks += got
    return checks


def run(fixture_dir: Path, dtypes: Sequence[Union[torch.dtype, Run]], spec_dir: Optional[Path] = None,
        keys_dir: Optional[Path] = None, log: Callable[[str], None] = print) -> list[Check]:
    """Run every fixture in ``fixture_dir``; returns all checks (raises if none found)."""
    if any(_as_run(d).device != "cpu" for d in dtypes):  # TF32 would break the float32 tolerances
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    fill = load_fill_weights(fixture_dir, spec_dir)
    if keys_dir is None:
        keys_dir = fixture_dir.parent / "checkpoints"
        if spec_dir is not None and not keys_dir.is_dir():
            keys_dir = spec_dir / "checkpoints"
    checks: list[Check] = []
    for p in sorted(fixture_dir.glob("*.npz")):
        checks += run_fixture(p, fill, keys_dir, dtypes, log)
    if not checks:
        raise FileNotFoundError(f"no GP-VTON parity fixtures (*.npz with meta_network) in {fixture_dir}")
    return checks


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gpvton_core.parity", description=__doc__.split("\n\n")[0])
    ap.add_argument("fixture_dir", type=Path)
    ap.add_argument("--dtype", choices=("float64", "float32", "both"), default="float64")
    ap.add_argument("--spec", type=Path, default=None, help="spec dir holding fill_weights.py if FIXTURE_DIR lacks it")
    ap.add_argument("--keys-dir", type=Path, default=None, help="default: FIXTURE_DIR/../checkpoints")
    ap.add_argument("--path", choices=("training", "inference", "both"), default="training")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    dtypes = {"float64": [torch.float64], "float32": [torch.float32],
              "both": [torch.float64, torch.float32]}[a.dtype]
    paths = ["training", "inference"] if a.path == "both" else [a.path]
    runs = [Run(d, p, a.channels_last, a.device) for d in dtypes for p in paths]
    checks = run(a.fixture_dir, runs, a.spec, a.keys_dir, log=lambda s: print(s, flush=True))
    failed = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)}/{len(checks)} checks passed" + (f"; FAILED: {', '.join(sorted({c.fixture + ':' + c.name for c in failed}))}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
