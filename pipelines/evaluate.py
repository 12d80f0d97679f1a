"""``gpvton eval``: set-level metrics of a render job (SSIM, LPIPS, FID, KID, parsing mIoU).

    gpvton eval --job URL [--reference paired|unpaired] [--metrics ssim,lpips,fid,kid,miou]
                [--inception-weights FILE] [--lpips-weights DIR|FILE] [--lpips-net alex|vgg]
                [--out URL] [--batch-size N] [--kid-subset-size N] [--kid-subsets N]
                [--categories upper,lower] [--limit N] [--device auto|cpu|cuda]

Settings (the protocol of every metric is in :mod:`gpvton_core.metrics.set_metrics` and is
copied into the output):

* ``--reference paired`` (default): the pairs whose garment is the one the person wears
  (``paired`` index rows). Try-ons are compared with the person's own photo from the shards:
  SSIM, LPIPS and mIoU per pair, FID/KID between the set of photos and the set of try-ons.
  Default metrics: all five.
* ``--reference unpaired``: the other pairs (a garment the person does not wear). There is no
  ground truth, so only the distribution metrics apply: FID and KID between the distinct person
  photos of the evaluated pairs and the try-ons. Default metrics: fid, kid.
* mIoU compares the render's debug label map (``JOB/debug/CAT/PERSON/GARMENT-VERSION.label.png``, or
  ``…label.png`` next to the render; written by ``render --set output_format.debug=true``,
  labels × 25) with the person's parsing mapped to the same classes (GPVTON.md §8.7);
  background is left out of the mean.
* The pairs are the catalogue's: the rows of the job's index (``JOB/index/``, the current render of
  every pair), not the last run's unit score files. Error rows (no render) are skipped and counted.
* ``by_category`` repeats SSIM, LPIPS and mIoU per garment category (from the same per-pair
  values); FID/KID are computed once over the whole selection (use ``--categories`` for one
  category's FID).

Weight files are the user's (no downloads): ``--inception-weights`` is
``pt_inception-2015-12-05-6726825d.pth`` (FID/KID), ``--lpips-weights`` a directory with
``alexnet-owt-7be5be79.pth`` + ``alex.pth`` (or ``vgg16-397923af.pth`` + ``vgg.pth``) or one file
with both key sets. A missing one is a configuration error (exit 2) naming the flag.

Output (default ``JOB/eval``): ``metrics.json`` (values, counts, protocol, weight hashes, job
info) and ``config.json`` (the resolved settings).

Exit codes: 0 metrics written; 1 no selected pair could be evaluated (its renders or person photos
are gone); 2 configuration error (no job at the URL, a missing weight file, no such pairs).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

from pydantic import Field, field_validator

from pipelines.config import ConfigError, StorageURL, StrictModel, load_config, resolved

log = logging.getLogger("gpvton.eval")

ALL_METRICS = ("ssim", "lpips", "fid", "kid", "miou")
PAIRED_ONLY = ("ssim", "lpips", "miou")
DEFAULT_METRICS = {"paired": list(ALL_METRICS), "unpaired": ["fid", "kid"]}
LABEL_SCALE = 25  # the render writes debug label maps as label × 25
LABEL_CLASSES = 10


class EvalConfig(StrictModel):
    job: StorageURL = Field(..., description="render job URL (local folder or s3://bucket/prefix)")
    reference: Literal["paired", "unpaired"] = "paired"
    metrics: Optional[list[str]] = None
    inception_weights: Optional[StorageURL] = None
    lpips_weights: Optional[StorageURL] = None
    lpips_net: Literal["alex", "vgg"] = "alex"
    out: Optional[StorageURL] = None
    batch_size: int = Field(16, ge=1, le=1024)
    kid_subset_size: int = Field(1000, ge=2)
    kid_subsets: int = Field(100, ge=1)
    categories: Optional[list[str]] = None
    limit: Optional[int] = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0

    @field_validator("metrics", "categories", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [t.strip().lower() for t in v.split(",") if t.strip()]
        return v

    @field_validator("metrics")
    @classmethod
    def _known(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if v is not None:
            unknown = [m for m in v if m not in ALL_METRICS]
            if unknown:
                raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(ALL_METRICS)}")
            if not v:
                raise ValueError("no metrics chosen")
            v = list(dict.fromkeys(v))
        return v

    def chosen_metrics(self) -> list[str]:
        return list(self.metrics) if self.metrics else list(DEFAULT_METRICS[self.reference])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", required=True, help="render job URL (folder or s3://…)")
    parser.add_argument("--reference", choices=["paired", "unpaired"],
                        help="paired: try-ons vs the person's own photo (default); unpaired: FID/KID only")
    parser.add_argument("--metrics", help=f"comma list of {','.join(ALL_METRICS)} "
                                          "(default: all for paired, fid,kid for unpaired)")
    parser.add_argument("--inception-weights", metavar="FILE",
                        help="pt_inception-2015-12-05-6726825d.pth (needed for fid, kid)")
    parser.add_argument("--lpips-weights", metavar="DIR|FILE",
                        help="folder with alexnet-owt-7be5be79.pth + alex.pth (or the vgg pair), "
                             "or one file with trunk + linear keys (needed for lpips)")
    parser.add_argument("--lpips-net", choices=["alex", "vgg"], help="LPIPS trunk (default alex)")
    parser.add_argument("--out", help="output URL (default JOB/eval)")
    parser.add_argument("--batch-size", type=int, help="images per batch (default 16)")
    parser.add_argument("--kid-subset-size", type=int, help="KID subset size (default 1000, capped at N)")
    parser.add_argument("--kid-subsets", type=int, help="KID subsets (default 100)")
    parser.add_argument("--categories", help="comma list: only these categories")
    parser.add_argument("--limit", type=int, help="evaluate at most N pairs (a quick look)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto")
    parser.add_argument("--config", help="YAML/TOML/JSON file with the same keys")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")


def run(args: argparse.Namespace) -> int:
    keys = ("job", "reference", "metrics", "inception_weights", "lpips_weights", "lpips_net", "out",
            "batch_size", "kid_subset_size", "kid_subsets", "categories", "limit", "device")
    cfg = load_config(EvalConfig, getattr(args, "config", None),
                      {k: getattr(args, k, None) for k in keys})
    if getattr(args, "set", None):
        cfg = load_config(EvalConfig, None, list(args.set), base=resolved(cfg))
    result = evaluate(cfg)
    lines = []
    for name, m in result["metrics"].items():
        v = m.get("value")
        lines.append(f"  {name:<6} {'n/a' if v is None else f'{v:.6g}'}"
                     + (f"  ({m.get('note')})" if m.get("note") else ""))
    print(f"eval: {result['pairs']['evaluated']} {cfg.reference} pairs of {cfg.job}\n" + "\n".join(lines)
          + f"\n  → {result['out']}/metrics.json")
    if not result["pairs"]["evaluated"]:
        print(f"eval: no pair could be evaluated ({result['pairs']['missing_renders']} renders and "
              f"{result['pairs']['missing_person_photos']} person photos missing)", file=sys.stderr)
        return 1
    return 0


# --- inputs -----------------------------------------------------------------------------------------

def _storage(url: str):
    from infra.storage import Storage

    return Storage(url)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_extractors(cfg: EvalConfig, metrics: list[str]) -> tuple[Any, Any, dict]:
    """(inception or None, lpips or None, weight-file info); ConfigError names the flag to pass."""
    from gpvton_core.metrics.inception import FID_WEIGHTS_NAME, WeightFileError, load_fid_inception
    from gpvton_core.metrics.lpips import TRUNKS, load_lpips, resolve_lpips_files

    inception = lpips = None
    info: dict[str, Any] = {}
    need_fid = [m for m in metrics if m in ("fid", "kid")]
    if need_fid:
        if not cfg.inception_weights:
            raise ConfigError(f"{'/'.join(need_fid)} need the FID Inception weights: pass "
                              f"--inception-weights /path/to/{FID_WEIGHTS_NAME} (or leave "
                              f"{','.join(need_fid)} out of --metrics)")
        if not Path(cfg.inception_weights).is_file():
            raise ConfigError(f"--inception-weights: file not found: {cfg.inception_weights} "
                              f"(expected {FID_WEIGHTS_NAME})")
        try:
            inception = load_fid_inception(cfg.inception_weights)
        except WeightFileError as exc:
            raise ConfigError(f"--inception-weights: {exc}") from exc
        info["inception"] = {"path": cfg.inception_weights, "sha256": _sha256(cfg.inception_weights)}
    if "lpips" in metrics:
        spec = TRUNKS[cfg.lpips_net]
        if not cfg.lpips_weights:
            raise ConfigError(f"lpips needs its weights: pass --lpips-weights DIR holding "
                              f"{spec['trunk_file']} and {spec['lin_file']} (or one file with both key "
                              f"sets), or leave lpips out of --metrics")
        try:
            files = resolve_lpips_files(cfg.lpips_weights, cfg.lpips_net)
            lpips = load_lpips(cfg.lpips_weights, cfg.lpips_net)
        except WeightFileError as exc:
            raise ConfigError(f"--lpips-weights: {exc}") from exc
        info["lpips"] = {"net": cfg.lpips_net,
                         "files": [{"path": str(f), "sha256": _sha256(str(f))} for f in files]}
    return inception, lpips, info


#: the index columns eval needs (the index is the catalogue; unit score files are only a work area)
ROW_COLUMNS = ["person_id", "garment_id", "category", "paired", "flag", "output_key"]


def read_rows(job_url: str) -> list[dict]:
    """The catalogue's rows (its index, only the needed columns, parts read in parallel)."""
    from infra.jobfolder import JobFolder

    return JobFolder(job_url).read_index(columns=ROW_COLUMNS).to_pylist()


def shard_images(shards_url: str, wanted: set[str], parsing: bool) -> dict[str, dict[str, bytes]]:
    """``{person_id: {"image": png, "parsing": png}}`` for the wanted persons (PNG bytes kept
    compressed; decoded per batch)."""
    from infra.shards import ShardSet

    shards = ShardSet(shards_url)
    cols = ["person_id", "image_png"] + (["parsing_png"] if parsing else [])
    out: dict[str, dict[str, bytes]] = {}
    for key in shards.parts("persons"):
        d = shards.read_part(key, cols).to_pydict()
        for i, pid in enumerate(d["person_id"]):
            if pid in wanted:
                out[pid] = {"image": d["image_png"][i],
                            "parsing": d["parsing_png"][i] if parsing else b""}
    return out


def _rgb_tensor(data: bytes):
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def _label_array(data: bytes):
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8)


def decode_render_label(arr):
    """The render's debug label map stores ``label × 25``; plain label maps pass unchanged."""
    import numpy as np

    if arr.max() >= LABEL_CLASSES and not np.any(arr % LABEL_SCALE):
        return arr // LABEL_SCALE
    return arr


def label_keys(output_key: str) -> list[str]:
    stem = output_key.rsplit(".", 1)[0]
    keys = [stem + ".label.png"]
    if stem.startswith("renders/"):
        keys.insert(0, "debug/" + stem[len("renders/"):] + ".label.png")
    return keys


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _stack_same_size(tensors: list) -> Iterator[tuple[list[int], Any]]:
    """Stack runs of equally sized tensors: yields (indices, stacked)."""
    import torch

    run: list[int] = []
    for i, t in enumerate(tensors):
        if run and tensors[run[0]].shape != t.shape:
            yield run, torch.stack([tensors[j] for j in run])
            run = []
        run.append(i)
    if run:
        yield run, torch.stack([tensors[j] for j in run])


# --- evaluation -------------------------------------------------------------------------------------

def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    import torch

    from gpvton_core.metrics.set_metrics import PROTOCOL, SetMetrics
    from infra.storage import join

    t0 = time.time()
    metrics = cfg.chosen_metrics()
    if cfg.reference == "unpaired":
        bad = [m for m in metrics if m in PAIRED_ONLY]
        if bad:
            raise ConfigError(f"{','.join(bad)} need a ground truth and only apply to --reference paired; "
                              f"for unpaired pairs use --metrics fid,kid")
    job = _storage(cfg.job)
    try:
        meta = job.read_json("job.json")
    except FileNotFoundError:
        raise ConfigError(f"no render job at {cfg.job} (job.json not found)") from None
    shards_url = (meta.get("config") or {}).get("shards")
    if not shards_url:
        raise ConfigError(f"{cfg.job}/job.json names no shards (config.shards): the real images are there")
    inception, lpips, weights = load_extractors(cfg, metrics)  # fail fast, before reading images

    rows = read_rows(job.root)
    want_paired = cfg.reference == "paired"
    selected = [r for r in rows if bool(r.get("paired")) == want_paired
                and (not cfg.categories or r["category"] in cfg.categories)]
    errors = [r for r in selected if r.get("flag") == "error" or not r.get("output_key")]
    selected = [r for r in selected if r not in errors]
    selected.sort(key=lambda r: (r["category"], r["person_id"], r["garment_id"]))
    if cfg.limit:
        selected = selected[:cfg.limit]
    if not selected:
        other = "unpaired" if want_paired else "paired"
        raise ConfigError(f"{cfg.job} has no rendered {cfg.reference} pairs"
                          + (f" in {cfg.categories}" if cfg.categories else "")
                          + f" ({len(rows)} catalogue rows); try --reference {other}")

    device = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    variant = meta.get("variant") if meta.get("variant") in ("vitonhd", "dresscode") else "vitonhd"
    sm = SetMetrics(metrics, inception=inception, lpips=lpips, kid_subset_size=cfg.kid_subset_size,
                    kid_subsets=cfg.kid_subsets, num_classes=LABEL_CLASSES, miou_exclude=(0,),
                    seed=cfg.seed, device=device)
    persons = shard_images(shards_url, {r["person_id"] for r in selected}, parsing="miou" in metrics)
    no_photo = [r for r in selected if r["person_id"] not in persons]
    selected = [r for r in selected if r["person_id"] in persons]
    missing_render: list[str] = []
    missing_label = 0
    evaluated = 0
    use_dist = any(m in metrics for m in ("fid", "kid"))
    paired_metrics = any(m in metrics for m in ("ssim", "lpips"))

    with torch.no_grad():
        if use_dist and not want_paired:  # reals: each person photo once
            ids = sorted({r["person_id"] for r in selected})
            for chunk in _batches(ids, cfg.batch_size):
                reals = [_rgb_tensor(persons[p]["image"]) for p in chunk]
                for _, stacked in _stack_same_size(reals):
                    sm.update_real(stacked)
        for n_batch, chunk in enumerate(_batches(selected, cfg.batch_size)):
            fakes, reals, kept = [], [], []
            for r in chunk:
                try:
                    data = job.read_bytes(r["output_key"])
                except FileNotFoundError:
                    missing_render.append(r["output_key"])
                    continue
                fakes.append(_rgb_tensor(data))
                reals.append(_rgb_tensor(persons[r["person_id"]]["image"]) if want_paired else None)
                kept.append(r)
            evaluated += len(kept)
            for idx, fstack in _stack_same_size(fakes):
                if use_dist:
                    sm.update_fake(fstack)
                if want_paired:
                    for ridx, rstack in _stack_same_size([reals[i] for i in idx]):
                        if use_dist:
                            sm.update_real(rstack)
                        if paired_metrics:
                            sm.update_pairs(fstack[ridx], rstack,
                                            groups=[kept[idx[i]]["category"] for i in ridx])
            if "miou" in metrics:
                missing_label += _update_labels(sm, job, kept, persons, variant)
            if n_batch % 20 == 19:
                log.info("eval: %d / %d pairs", evaluated, len(selected))

    values = sm.compute()
    by_category = values.pop("by_group", {})
    if "miou" in values and missing_label:
        values["miou"]["missing_label_maps"] = missing_label
        if values["miou"]["value"] is None:
            values["miou"]["note"] = ("no debug label maps: render with --set output_format.debug=true "
                                      "to evaluate mIoU")
    out_url = cfg.out or join(cfg.job, "eval")
    result = {
        "job": cfg.job, "reference": cfg.reference, "metrics": values,
        "by_category": by_category,  # paired per-pair metrics only; FID/KID are set-wide
        "pairs": {"evaluated": evaluated, "selected": len(selected) + len(no_photo),
                  "skipped_error_rows": len(errors), "missing_renders": len(missing_render),
                  "missing_person_photos": len(no_photo), "score_rows": len(rows)},
        "protocol": {k: v for k, v in PROTOCOL.items() if k in metrics or k == "images"},
        "weights": weights, "device": device, "variant_for_labels": variant,
        "job_info": {k: meta.get(k) for k in ("job_id", "fingerprint", "config_hash", "package_version",
                                               "model_note", "random_weights", "checkpoints")},
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - t0, 3), "out": out_url,
    }
    if missing_render:
        result["pairs"]["missing_render_examples"] = missing_render[:10]
    out = _storage(out_url)
    out.write_json("config.json", resolved(cfg))
    out.write_json("metrics.json", result)
    return result


def _update_labels(sm, job, rows: list[dict], persons: dict, variant: str) -> int:
    """Feed (render label map, person target map) pairs; returns how many label maps were absent."""
    import torch

    from gpvton_core.inputs import person_targets

    missing = 0
    for r in rows:
        data = None
        for key in label_keys(r["output_key"]):
            try:
                data = job.read_bytes(key)
                break
            except FileNotFoundError:
                continue
        if data is None:
            missing += 1
            continue
        pred = torch.from_numpy(decode_render_label(_label_array(data)).astype("int64"))
        target = person_targets(_label_array(persons[r["person_id"]]["parsing"]), variant, r["category"])
        sm.update_labels(pred, target, group=r["category"])
    return missing


def metrics_json(url: str) -> dict:
    """Read a written ``metrics.json`` (helper for callers and tests)."""
    return json.loads(_storage(url).read_bytes("metrics.json"))
