"""Raw-photo preprocessing throughput: items per CPU-second with the bundled estimators, and where
the time goes.

    python bench/bench_photos.py [--resolution 512] [--parser runs/parser/parser.onnx] [--repeat 2]

Images-only copies of the real photos in ../shared/data (7 VITON-HD + 6 Dress Code persons, their
13 garments), processed exactly as a Beam worker does (``derive_batch``: decode, BlazePose with its
crop and mirror passes, selfie segmentation, framing, parser, LIP/GP-29 derivation, DensePose
approximation, garment mask, PNG encoding), in this process. Without ``--parser`` the project's
own ParserNet (default width, random weights: the same compute as a trained one) is exported to
ONNX for the run. Stage times come from calling each estimator alone on the same inputs; CPU time
is ``time.process_time`` (all threads of this process), so the figure holds on a shared machine.
Writes ``bench/results/preprocess_photos.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def _copy_images(shared: Path, root: Path) -> None:
    """models/<category>/ID.jpg and garments/<category>/ID.jpg: the photos, no annotations."""
    for p in sorted((shared / "vitonhd" / "test" / "image").glob("*.jpg")):
        (root / "models" / "upper").mkdir(parents=True, exist_ok=True)
        shutil.copy(p, root / "models" / "upper" / p.name)
    for p in sorted((shared / "vitonhd" / "test" / "cloth").glob("*.jpg")):
        (root / "garments" / "upper").mkdir(parents=True, exist_ok=True)
        shutil.copy(p, root / "garments" / "upper" / p.name)
    for folder, cat in (("upper_body", "upper"), ("lower_body", "lower"), ("dresses", "dresses")):
        for p in sorted((shared / "dresscode" / folder / "images").glob("*.jpg")):
            kind = "models" if p.stem.endswith("_0") else "garments"
            (root / kind / cat).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, root / kind / cat / p.name)


def _random_parser(path: Path, height: int, width: int) -> None:
    """ParserNet at its default width, exported as ``gpvton train parser`` does, with its parser.json."""
    from gpvton_core.parser import ParserNet
    from workers.train.onnx_export import export_onnx
    from workers.train.parser_stage import parser_contract

    path.write_bytes(export_onnx(ParserNet(num_classes=29).eval(), (height, width)))
    path.with_suffix(".json").write_text(json.dumps(parser_contract("gp29", (height, width), False)))


def _cpu(fn, *args):
    c0 = time.process_time()
    out = fn(*args)
    return out, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("GPVTON_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--parser", help="parser ONNX (default: the project's ParserNet, random weights)")
    ap.add_argument("--parser-classes", default="gp29")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch / onnxruntime intra-op threads")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "preprocess_photos.json"))
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from sysinfo import machine_info

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    info = machine_info()
    from gpvton_core.conditions import densepose_approximation as dpa
    from gpvton_core.conditions import garment as gm
    from gpvton_core.conditions import parsing as ps
    from gpvton_core.conditions.resize import working_size
    from pipelines.preprocess.derive import derive_batch
    from pipelines.preprocess.estimators.bundle import Estimators, EstimatorsConfig
    from pipelines.preprocess.readers import read_photos
    from pipelines.preprocess.row_encoding import png_bytes

    H, W = working_size(args.resolution)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _copy_images(Path(args.shared), tmp / "photos")
        parser_url = args.parser
        if parser_url is None:
            parser_url = str(tmp / "parser.onnx")
            _random_parser(Path(parser_url), H, W)
        cfg = EstimatorsConfig.model_validate({"parser": {"model": parser_url, "classes": args.parser_classes}})
        est = Estimators(cfg)
        items = read_photos(str(tmp / "photos"))
        persons = [i for i in items if i["kind"] == "person"]
        garments = [i for i in items if i["kind"] == "garment"]

        def read(url: str) -> bytes:
            return Path(url).read_bytes()

        derive_batch(persons[:1] + garments[:1], read, args.resolution, est=est)     # load models, warm up
        totals = {"persons": [], "garments": []}
        for _ in range(args.repeat):
            for key, group in (("persons", persons), ("garments", garments)):
                rows, cpu = _cpu(derive_batch, group, read, args.resolution, 64_000_000, est)
                bad = [r for t, r in rows if t == "errors"]
                if bad:
                    print("errors:", bad, file=sys.stderr)
                totals[key].append(cpu)

        # Where the time goes: each stage alone on the same inputs.
        from PIL import Image

        stages: dict[str, float] = {k: 0.0 for k in ("decode", "pose", "segmenter", "parser", "parsing_derivation",
                                                     "densepose_approx", "png_encode")}
        for it in persons:
            im, t = _cpu(lambda u: np.asarray(Image.open(u).convert("RGB")), it["image"])
            stages["decode"] += t
            people, t = _cpu(est.pose.estimate, im)
            stages["pose"] += t
            _, t = _cpu(est.segmenter.mask, im)
            stages["segmenter"] += t
            work = np.asarray(Image.fromarray(im).resize((W, H), Image.BICUBIC))
            (lab,), t = _cpu(est.parser.parse_batch, [work])
            stages["parser"] += t
            from gpvton_core.conditions.resize import compute_fit, transform_keypoints

            kps = transform_keypoints(people[0].keypoints, compute_fit(im.shape[:2], (H, W), "crop"))
            gp, t = _cpu(lambda: lab if est.parser.scheme == "gp29" else
                         (ps.from_lip(lab, kps) if est.parser.scheme == "lip" else ps.from_atr(lab, kps)))
            stages["parsing_derivation"] += t
            person = gp > 0 if gp.any() else np.ones_like(gp, bool)
            try:
                _, t = _cpu(dpa.approximate_from_mask, person, kps)
                stages["densepose_approx"] += t
            except ValueError:
                pass
            _, t = _cpu(lambda: (png_bytes(work, "RGB"), png_bytes(gp, "L"), png_bytes(gp, "L")))
            stages["png_encode"] += t
        g_stage = {"decode": 0.0, "mask": 0.0}
        for it in garments:
            im, t = _cpu(lambda u: np.asarray(Image.open(u).convert("RGB")), it["image"])
            g_stage["decode"] += t
            _, t = _cpu(gm.mask_from_plain_background, np.asarray(Image.fromarray(im).resize((W, H))))
            g_stage["mask"] += t * 2      # segmented twice: to frame, then in the frame
        est.close()

    per_person = statistics.median(totals["persons"]) / len(persons)
    per_garment = statistics.median(totals["garments"]) / len(garments)
    result = {
        "machine": info, "resolution": f"{H}x{W}", "threads": args.threads,
        "parser": "given" if args.parser else "ParserNet default width, random weights (ONNX)",
        "persons": {"items": len(persons), "cpu_s_per_item": round(per_person, 3),
                    "items_per_cpu_s": round(1 / per_person, 3)},
        "garments": {"items": len(garments), "cpu_s_per_item": round(per_garment, 3),
                     "items_per_cpu_s": round(1 / per_garment, 3)},
        "person_stages_cpu_s_per_item": {k: round(v / len(persons), 3) for k, v in stages.items()},
        "garment_stages_cpu_s_per_item": {k: round(v / len(garments), 3) for k, v in g_stage.items()},
    }
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
