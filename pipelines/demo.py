"""``gpvton demo``: a small catalogue → preprocess → render → report, on a fresh machine.

No data and no weights needed: the catalogue is procedural (:mod:`pipelines.synthetic`), and
without checkpoints the render uses randomly initialised small networks — the demo says so
plainly, and ``job.json``'s ``model_note`` (shown by the report) says so too.

    gpvton demo [--output DIR] [--garments N] [--persons N] [--resolution 256|512]
                [--warp-checkpoint F --generator-checkpoint F] [--runner ray|local]

Outputs under DIR (default ``./demo-out``): ``catalogue/`` (raw manifest), ``shards/``,
``job/`` (renders, scores, summary.json, report/index.html when the report module is present).

When the Beam preprocessing stage (``pipelines.preprocess``) is importable it builds the shards;
otherwise :func:`shards_from_manifest` converts the synthetic catalogue directly (its labels are
exact, so nothing has to be derived).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
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
                        help="512 (default) runs the Beam preprocessing stage; 128/256 write the shards "
                             "directly (quicker look, the preprocessing stage only does 512/1024)")
    parser.add_argument("--width", type=float, default=0.0625,
                        help="width of the randomly initialised networks (no checkpoints)")
    parser.add_argument("--warp-checkpoint")
    parser.add_argument("--generator-checkpoint")
    parser.add_argument("--runner", choices=["ray", "local"], default="ray")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")


# --- fallback shard writer (used when the Beam preprocess stage is not installed) ------------------

def _png(arr, mode: str | None = None) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG") if mode else Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _load(path: Path, mode: str):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert(mode))


def shards_from_manifest(root: str | Path, out: str | Path, source: str = "synthetic") -> dict[str, Any]:
    """Plain-manifest catalogue (garments.csv / persons.csv, exact labels) → condition shards.

    Writes ``out/persons/part-00000.parquet``, ``out/garments/part-00000.parquet``, an empty
    errors shard and ``manifest.json``; images must already be at the working resolution.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.schema import ERRORS, GARMENTS, PERSONS, SCHEMA_VERSION

    root, out = Path(root), Path(out)
    for sub in ("persons", "garments", "errors"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    g_rows, p_rows = [], []
    with (root / "garments.csv").open() as fh:
        for r in csv.DictReader(fh):
            img = _load(root / r["image"], "RGB")
            g_rows.append({
                "garment_id": r["garment_id"], "category": r["category"], "source": source,
                "source_uri": str(root / r["image"]), "height": img.shape[0], "width": img.shape[1],
                "image_png": _png(img), "mask_png": _png(_load(root / r["mask"], "L")),
                "parts_png": _png(_load(root / r["parts"], "L")),
                "provenance": json.dumps({"given": ["image", "mask", "parts"], "derived": []})})
    with (root / "persons.csv").open() as fh:
        for r in csv.DictReader(fh):
            img = _load(root / r["image"], "RGB")
            kp = json.loads((root / r["keypoints"]).read_text())["people"][0]["pose_keypoints_2d"]
            p_rows.append({
                "person_id": r["person_id"], "categories": [c for c in r["categories"].split(";") if c],
                "source": source, "source_uri": str(root / r["image"]), "height": img.shape[0],
                "width": img.shape[1], "image_png": _png(img),
                "parsing_png": _png(_load(root / r["parsing"], "L")),
                "densepose_png": _png(_load(root / r["densepose"], "L")),
                "keypoints": np.asarray(kp, np.float32).tolist(),
                "worn_garment_id": r.get("worn_garment_id") or None, "pc_ratio": None,
                "provenance": json.dumps({"given": ["image", "parsing", "densepose", "keypoints"], "derived": []})})
    pq.write_table(pa.Table.from_pylist(p_rows, schema=PERSONS), out / "persons" / "part-00000.parquet")
    pq.write_table(pa.Table.from_pylist(g_rows, schema=GARMENTS), out / "garments" / "part-00000.parquet")
    pq.write_table(ERRORS.empty_table(), out / "errors" / "part-00000.parquet")
    h, w = (p_rows or g_rows)[0]["height"], (p_rows or g_rows)[0]["width"]
    manifest = {"schema_version": SCHEMA_VERSION, "counts": {"persons": len(p_rows), "garments": len(g_rows),
                                                            "errors": 0},
                "resolution": [h, w], "derivation_version": "manifest-direct", "writer": "pipelines.demo"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def build_shards(catalogue: Path, shards: Path, resolution: int) -> str:
    """Run the Beam preprocessing stage when available, else the direct writer. Returns a note."""
    try:
        job = importlib.import_module("pipelines.preprocess.job") if resolution in (512, 1024) else None
    except ImportError:
        job = None
    if job is not None:
        parser = argparse.ArgumentParser()
        job.add_arguments(parser)
        argv = ["--input", f"manifest:{catalogue}", "--output", str(shards)]
        args = parser.parse_args(argv + ["--resolution", str(resolution)])
        code = int(job.run(args))
        if code != 0:
            raise RuntimeError(f"gpvton preprocess exited {code}")
        return "shards built by the Beam preprocessing stage (pipelines.preprocess)"
    shards_from_manifest(catalogue, shards)
    return ("shards written directly from the exact synthetic labels (the Beam preprocessing stage "
            + ("is not installed)" if resolution in (512, 1024) else "only builds 512/1024)"))


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
        note = build_shards(cat_dir, shards, args.resolution)
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
