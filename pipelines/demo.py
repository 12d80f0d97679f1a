"""``gpvton demo``: a small catalogue → preprocess → render → report, on a fresh machine.

No data and no weights needed: the catalogue is procedural (:mod:`pipelines.synthetic`), and
without checkpoints the render uses randomly initialised small networks — the demo says so
plainly, and ``job.json``'s ``model_note`` (shown by the report) says so too.

    gpvton demo [--output DIR] [--garments N] [--persons N] [--resolution 256|512]
                [--warp-checkpoint F --generator-checkpoint F] [--runner ray|local]

Outputs under DIR (default ``./demo-out``): ``catalogue/`` (raw manifest), ``shards/``,
``job/`` (renders, scores, summary.json, report/index.html when the report module is present).

The shards are built by the real Beam preprocessing stage (in-process runner), exactly as a
retailer's catalogue would be.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("gpvton.demo")

SIZES = {128: (128, 96), 256: (256, 192), 512: (512, 384)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="demo-out", help="folder for everything (default ./demo-out)")
    parser.add_argument("--garments", type=int, default=3, help="catalogue garments (default 3: one per category)")
    parser.add_argument("--persons", type=int, default=3, help="model photos (default 3)")
    parser.add_argument("--resolution", type=int, choices=sorted(SIZES), default=512,
                        help="working resolution (512 default; 128/256 are quicker previews)")
    parser.add_argument("--width", type=float, default=0.0625,
                        help="width of the randomly initialised networks (no checkpoints)")
    parser.add_argument("--warp-checkpoint")
    parser.add_argument("--generator-checkpoint")
    parser.add_argument("--runner", choices=["ray", "local"], default="ray")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")


def build_shards(catalogue: str | Path, shards: str | Path, resolution: int) -> dict[str, Any]:
    """Run the Beam preprocessing stage (in-process runner) over a plain-manifest catalogue."""
    from pipelines.preprocess.beam_pipeline import PipelineSpec, run_pipeline
    from pipelines.preprocess.readers import parse_input, read_inputs

    items = read_inputs([parse_input(f"manifest:{catalogue}")])
    return run_pipeline(PipelineSpec(items=items, output=str(shards), resolution=resolution))


def run(args: argparse.Namespace) -> int:
    from pipelines.render import RenderConfig, run_job
    from pipelines.synthetic import make_catalogue

    t0 = time.time()
    out = Path(args.output).resolve()
    h, w = SIZES[args.resolution]
    cat_dir, shards, job_dir = out / "catalogue", out / "shards", out / "job"
    print(f"gpvton demo → {out}", file=sys.stderr)
    if not (cat_dir / "persons.csv").exists():
        make_catalogue(cat_dir, n_garments=args.garments, n_persons=args.persons, height=h, width=w, seed=args.seed)
    print(f"  1/4 catalogue: {args.garments} garments, {args.persons} model photos at {h}×{w} ({cat_dir})",
          file=sys.stderr)
    if not (shards / "manifest.json").exists():
        counts = build_shards(cat_dir, shards, args.resolution)["counts"]
        note = f"{counts['persons']} persons, {counts['garments']} garments, {counts['errors']} errors (Beam)"
    else:
        note = "shards reused from a previous demo run"
    print(f"  2/4 shards: {note} ({shards})", file=sys.stderr)
    random_init = not (args.warp_checkpoint and args.generator_checkpoint)
    if random_init:
        print("  NOTE: no checkpoints given → RANDOMLY INITIALISED small networks. The try-on images show the "
              "pipeline working, not try-on quality. Pass --warp-checkpoint/--generator-checkpoint for real "
              "results.", file=sys.stderr)
    cfg = RenderConfig(
        shards=str(shards), output=str(job_dir), runner=args.runner, actors=args.actors,
        checkpoints={"warp": args.warp_checkpoint, "generator": args.generator_checkpoint},
        batch_size=2, unit_size=4, output_format={"format": "jpg", "debug": True},
        max_failed_fraction=0.5, progress=not args.no_progress,
        num_cpus=1.0, model={"seed": args.seed, "width": None if not random_init else args.width})
    result = run_job(cfg)
    print(f"  3/4 render: {result.summary['pairs']} pairs {result.summary['counts']} ({job_dir})", file=sys.stderr)
    report_note = run_report(job_dir)
    print(f"  4/4 report: {report_note}", file=sys.stderr)
    print(f"done in {time.time() - t0:.0f} s. Look at:\n"
          f"  {job_dir}/renders/          try-on images (CATEGORY/PERSON/GARMENT.jpg)\n"
          f"  {job_dir}/debug/            warped garments and label maps\n"
          f"  {job_dir}/summary.json      counts, pairs/s, failures\n"
          f"  {job_dir}/job.json          resolved config, model note\n"
          + (f"  {job_dir}/report/index.html  QA report\n" if (job_dir / "report" / "index.html").exists() else ""))
    return result.exit_code


def run_report(job_dir: Path) -> str:
    try:
        mod = importlib.import_module("pipelines.report.job")
    except ImportError as exc:
        return f"skipped: the report module is not installed ({exc})"
    parser = argparse.ArgumentParser()
    mod.add_arguments(parser)
    for argv in (["--job", str(job_dir)], [str(job_dir)]):
        try:
            args, _ = parser.parse_known_args(argv)
        except SystemExit:
            continue
        try:
            code = int(mod.run(args))
        except Exception as exc:  # noqa: BLE001 - the report is a convenience
            return f"failed: {type(exc).__name__}: {exc}"
        return f"{job_dir / 'report' / 'index.html'} (exit {code})"
    return "skipped: could not build the report module's arguments"
