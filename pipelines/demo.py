"""``gpvton demo``: a small catalogue → preprocess → render → report, on a fresh machine.

No data and no weights needed: the catalogue is procedural (:mod:`pipelines.synthetic`), and
without checkpoints the render uses the small demo model shipped in ``pipelines/assets/demo/``
(a width-1/16 GP-VTON trained for about an hour of CPU on a synthetic catalogue by
``pipelines/assets/demo/train_demo.sh``), at the resolution it was trained at. It is a demo model,
not a production model: the demo says so plainly, and ``job.json``'s ``model_note`` (shown by the
report) says so too. ``--random-weights`` renders with randomly initialised small networks instead
(also announced as such).

    gpvton demo [--output DIR] [--garments N] [--persons N] [--resolution 128|256|512]
                [--warp-checkpoint F --generator-checkpoint F | --random-weights [--width W]]
                [--runner ray|local]

Outputs under DIR (default ``./demo-out``): ``catalogue/`` (raw manifest), ``shards/``,
``job/`` (renders, index, change list, summary.json, report/index.html when the report module is present).

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
DEMO_ASSETS = Path(__file__).resolve().parent / "assets" / "demo"
RANDOM_DEMO_WIDTH = 0.0625


def shipped_model(folder: Path = DEMO_ASSETS) -> dict[str, Any] | None:
    """The demo model shipped with the package (``warp.safetensors`` + ``generator.safetensors``), or None."""
    warp, gen = folder / "warp.safetensors", folder / "generator.safetensors"
    if not (warp.is_file() and gen.is_file()):
        return None
    from gpvton_core.checkpoints import build_from_checkpoint
    from infra.models import fetch_model

    try:
        _, wm = build_from_checkpoint(fetch_model(str(warp)).path)
        _, gm = build_from_checkpoint(fetch_model(str(gen)).path)
    except Exception as exc:  # noqa: BLE001 - a broken asset must not break the demo
        log.warning("cannot read the shipped demo model in %s: %s", folder, exc)
        return None
    h, w = (int(x) for x in wm.get("resolution") or (256, 192))
    return {"warp": str(warp), "generator": str(gen), "warp_steps": int(wm.get("step") or 0),
            "generator_steps": int(gm.get("step") or 0), "height": h, "width_px": w,
            "width": float(wm.get("width", 1.0)), "variant": wm.get("variant")}


def demo_model_note(m: dict[str, Any]) -> str:
    return (f"small demo model trained on the synthetic catalogue ({m['warp_steps']} warp + "
            f"{m['generator_steps']} generator steps, width {m['width']:g}, {m['height']}×{m['width_px']}) "
            f"— not a production model")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="demo-out", help="folder for everything (default ./demo-out)")
    parser.add_argument("--garments", type=int, default=4,
                        help="catalogue garments (default 4: with the default seed, every category)")
    parser.add_argument("--persons", type=int, default=4, help="model photos (default 4, one of them in a dress)")
    parser.add_argument("--resolution", type=int, choices=sorted(SIZES), default=None,
                        help="working resolution (default: the shipped demo model's training resolution, "
                             "256; 512 with --random-weights or your own checkpoints)")
    parser.add_argument("--width", type=float, default=RANDOM_DEMO_WIDTH,
                        help=f"width of the randomly initialised networks (--random-weights; default "
                             f"{RANDOM_DEMO_WIDTH})")
    parser.add_argument("--warp-checkpoint", help="your warp checkpoint (default: the shipped demo model)")
    parser.add_argument("--generator-checkpoint", help="your generator checkpoint (default: the shipped demo model)")
    parser.add_argument("--random-weights", action="store_true",
                        help="render with randomly initialised small networks instead of the shipped demo model")
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
    from pipelines.synthetic.catalogue import make_catalogue

    from infra.storage import normalize_url
    from pipelines.config import ConfigError

    t0 = time.time()
    out = Path(normalize_url(args.output))
    own = bool(args.warp_checkpoint or args.generator_checkpoint)
    if args.random_weights and own:
        raise ConfigError("--random-weights and --warp-checkpoint/--generator-checkpoint exclude each other")
    if own and not (args.warp_checkpoint and args.generator_checkpoint):
        missing = "--generator-checkpoint" if args.warp_checkpoint else "--warp-checkpoint"
        raise ConfigError(f"{missing} is missing: pass both checkpoints, or neither for the shipped demo model")
    demo = None if (args.random_weights or own) else shipped_model()
    if demo is None and not (args.random_weights or own):
        raise ConfigError(f"the shipped demo model is missing or unreadable in {DEMO_ASSETS}: reinstall the "
                          f"package, pass your checkpoints, or --random-weights")
    if demo is not None:
        warp_ck, gen_ck = demo["warp"], demo["generator"]
        trained_res = demo["height"] if demo["height"] in SIZES else 256
        if args.resolution is None:
            args.resolution = trained_res
    else:
        warp_ck, gen_ck = (normalize_url(args.warp_checkpoint), normalize_url(args.generator_checkpoint)) if own \
            else (None, None)
        if args.resolution is None:
            args.resolution = 512
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
    random_init = not (warp_ck and gen_ck)
    model_note = None
    if demo is not None:
        model_note = demo_model_note(demo)
        print(f"  NOTE: model = the SMALL DEMO MODEL shipped in {DEMO_ASSETS}: {model_note}. It is lightly "
              f"trained on synthetic figures: expect rough warps and hazy images, not try-on quality; pass --warp-checkpoint/"
              f"--generator-checkpoint for real results.", file=sys.stderr)
        if args.resolution != trained_res:
            print(f"  NOTE: the demo model was trained at {demo['height']}×{demo['width_px']}; rendering at "
                  f"{h}×{w} will look worse (drop --resolution to use {trained_res}).", file=sys.stderr)
    elif random_init:
        print("  NOTE: --random-weights → RANDOMLY INITIALISED small networks. The try-on images show the "
              "pipeline working, not try-on quality. Pass --warp-checkpoint/--generator-checkpoint for real "
              "results.", file=sys.stderr)
    cfg = RenderConfig(
        shards=str(shards), output=str(job_dir), runner=args.runner, actors=args.actors,
        checkpoints={"warp": warp_ck, "generator": gen_ck}, random_weights=random_init,
        batch_size=2, unit_size=4, output_format={"format": "jpg", "debug": True},
        max_failed_fraction=0.5, progress=not args.no_progress,
        num_cpus=1.0, model={"seed": args.seed, "width": None if not random_init else args.width})
    result = run_job(cfg)
    if model_note is not None:
        set_model_note(job_dir, model_note, demo)
    print(f"  3/4 render: {result.summary['pairs']} pairs {result.summary['counts']} ({job_dir})", file=sys.stderr)
    report_note = run_report(job_dir)
    print(f"  4/4 report: {report_note}", file=sys.stderr)
    print(f"done in {time.time() - t0:.0f} s. Look at:\n"
          f"  {job_dir}/renders/          try-on images (CATEGORY/PERSON/GARMENT-VERSION.jpg)\n"
          f"  {job_dir}/changes/          this run's change list (what a publisher picks up)\n"
          f"  {job_dir}/debug/            warped garments and label maps\n"
          f"  {job_dir}/summary.json      counts, pairs/s, failures\n"
          f"  {job_dir}/job.json          resolved config, model note\n"
          f"  {job_dir}/logs/             driver and worker logs (gpvton status {job_dir})\n"
          + (f"  {job_dir}/report/index.html  QA report\n" if (job_dir / "report" / "index.html").exists() else ""))
    return result.exit_code


def set_model_note(job_dir: Path, note: str, demo: dict[str, Any]) -> None:
    """Say in ``job.json`` / ``summary.json`` (read by the report) that the shipped demo model rendered."""
    for name in ("job.json", "summary.json"):
        path = job_dir / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        data["model_note"] = note
        if name == "job.json":
            data["demo_model"] = {k: demo[k] for k in ("warp_steps", "generator_steps", "width", "height",
                                                       "width_px", "variant")}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        tmp.replace(path)


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
