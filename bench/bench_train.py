"""Training throughput: optimisation steps per second at 256×192, small and official widths.

    python bench/bench_train.py [--steps-small 4] [--steps-official 2] [--batch 1] [--threads 2]
                                [--no-perceptual] [--out bench/results/train.json]

Each step is what ``workers/train/`` does per step on one worker: for the warp stage the
LFGP forward in training mode, DGT truncation masks, every §9.2 loss term (the VGG-19 terms with a
randomly initialised VGG — the same cost as the ImageNet weights), backward, Adam, then the
parsing discriminator's step; for the generator stage the frozen warper's inference + assembly,
the generator forward, §9.3 losses, backward, Adam and the discriminator's step. Data loading
is excluded (decoded once, as the loop caches it). One warm-up step is not timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "pipelines"))

from sysinfo import finish, machine_info  # noqa: E402  (CPU model, bf16 flags, threads, torch, load)


def bench(stage: str, width: float, steps: int, b, perceptual: bool) -> dict:
    import numpy as np
    import torch

    from gpvton_core.generator import TryOnGenerator
    from gpvton_core.training import dgt, losses as L
    from gpvton_core.training.discriminator import SpectralDiscriminator
    from gpvton_core.training.vgg import VGG19Features, VGGLoss
    from gpvton_core.warp import LFGPWarp
    from gpvton_core.training.generator_forward import generator_forward

    torch.manual_seed(0)
    vgg = VGGLoss(VGG19Features()) if perceptual else None
    if stage == "warp":
        net, disc = LFGPWarp("vitonhd", width), SpectralDiscriminator(59, width)
        warp = None
    else:
        net, disc = TryOnGenerator(width), SpectralDiscriminator(39, width)
        warp = LFGPWarp("vitonhd", width).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=5e-5, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=5e-5, betas=(0.5, 0.999))
    net.train()
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        if stage == "warp":
            parts = b["garment_parts"]
            o = net(b["cond"], b["garment"], b["garment_mask"], b["garment_input"][:, 3:4],
                    *[b["garment"] * parts[:, k] for k in range(3)], *[parts[:, k] for k in range(3)], b["preserve"])
            rng = np.random.default_rng(i)
            ch = [dgt.choose_region(float(r), "vitonhd", c, rng) for r, c in zip(b["pc_ratio"].tolist(), b["category"])]
            pm1, pm2 = dgt.loss_masks(b, ch, "vitonhd")
            tp, tf = dgt.truncation_masks(b, pm1, pm2, "vitonhd")
            terms = L.warp_losses(o, b, "vitonhd", t_parts=tp, t_full=tf, vgg=vgg, disc=disc)
        else:
            x, rendered, tryon, m, real = generator_forward(net, warp, b, "vitonhd")
            terms = L.generator_losses(x, rendered, tryon, m, real, vgg=vgg, disc=disc)
        disc.requires_grad_(False)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        disc.requires_grad_(True)
        opt_d.zero_grad(set_to_none=True)
        d = (L.warp_disc_loss(disc, b, o.segs[-1], 7) if stage == "warp"
             else L.generator_disc_loss(disc, x, rendered, real))
        d.backward()
        opt_d.step()
        if i:
            times.append(time.perf_counter() - t0)
    s = sum(times) / len(times)
    return {"stage": stage, "width": width, "timed_steps": len(times), "batch": int(b["image"].shape[0]),
            "s_per_step": round(s, 3), "steps_per_s": round(1 / s, 4),
            "pairs_per_s": round(b["image"].shape[0] / s, 4),
            "params": sum(p.numel() for p in net.parameters())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps-small", type=int, default=4)
    ap.add_argument("--steps-official", type=int, default=2)
    ap.add_argument("--small-width", type=float, default=0.0625)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-perceptual", action="store_true")
    ap.add_argument("--stages", default="warp,generator")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "train.json"))
    args = ap.parse_args(argv)

    import torch

    from pipelines.synthetic.catalogue import make_catalogue
    from synthetic_fixtures import upper_training_batch

    torch.set_num_threads(args.threads)
    machine = machine_info(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        make_catalogue(tmp, n_garments=3, n_persons=3 * args.batch, height=256, width=192, seed=0)
        b = upper_training_batch(Path(tmp), "vitonhd", n=args.batch)
    results = []
    for stage in args.stages.split(","):
        for width, steps in ((args.small_width, args.steps_small), (1.0, args.steps_official)):
            r = bench(stage, width, steps, b, not args.no_perceptual)
            print(json.dumps(r), flush=True)
            results.append(r)
    out = {"machine": finish(machine), "resolution": "256x192", "torch_threads": args.threads,
           "perceptual": not args.no_perceptual, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
