"""``gpvton eval``: set-level metrics of a render job (SSIM, LPIPS, FID, KID, parsing mIoU).

    gpvton eval --job URL [--reference paired|unpaired] [--metrics ssim,lpips,fid,kid,miou]
                [--inception-weights FILE|URL] [--lpips-weights DIR|FILE|URL] [--lpips-net alex|vgg]
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
with both key sets. Both are URLs — a local path or ``s3://…`` — read like render's checkpoints
(``infra.models.fetch_model``: fetched once into the sha256-keyed model cache; S3 settings from the
AWS environment, as for the job). A missing one is a configuration error (exit 2) naming the flag.

Output (default ``JOB/eval``): ``metrics.json`` (values, counts, protocol, weight hashes, job
info) and ``config.json`` (the resolved settings).

Exit codes: 0 metrics written; 1 no selected pair could be evaluated (its renders or person photos
are gone); 2 configuration error (no job at the URL, a missing weight file, no such pairs).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from pydantic import Field, field_validator

from pipelines.config import ConfigError, StorageURL, StrictModel, load_config, resolved
from pipelines.evaluate.inputs import (LABEL_CLASSES, batches, label_keys, read_rows, render_labels, rgb_tensor,
                                       shard_images, stack_same_size)
from pipelines.evaluate.weights import load_extractors

log = logging.getLogger("gpvton.eval")

ALL_METRICS = ("ssim", "lpips", "fid", "kid", "miou")
PAIRED_ONLY = ("ssim", "lpips", "miou")
DEFAULT_METRICS = {"paired": list(ALL_METRICS), "unpaired": ["fid", "kid"]}


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
    parser.add_argument("--inception-weights", metavar="FILE|URL",
                        help="pt_inception-2015-12-05-6726825d.pth (needed for fid, kid)")
    parser.add_argument("--lpips-weights", metavar="DIR|FILE|URL",
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


# --- evaluation, step by step -----------------------------------------------------------------------

def _checked_metrics(cfg: EvalConfig) -> list[str]:
    metrics = cfg.chosen_metrics()
    if cfg.reference == "unpaired":
        bad = [m for m in metrics if m in PAIRED_ONLY]
        if bad:
            raise ConfigError(f"{','.join(bad)} need a ground truth and only apply to --reference paired; "
                              f"for unpaired pairs use --metrics fid,kid")
    return metrics


def _open_job(cfg: EvalConfig) -> tuple[Any, dict, str]:
    """(the job's storage, its ``job.json``, its shards URL); ConfigError when either is missing."""
    from infra.storage import Storage

    job = Storage(cfg.job)
    try:
        meta = job.read_json("job.json")
    except FileNotFoundError:
        raise ConfigError(f"no render job at {cfg.job} (job.json not found)") from None
    shards_url = (meta.get("config") or {}).get("shards")
    if not shards_url:
        raise ConfigError(f"{cfg.job}/job.json names no shards (config.shards): the real images are there")
    return job, meta, shards_url


def _select(rows: list[dict], cfg: EvalConfig) -> tuple[list[dict], list[dict]]:
    """(the rendered pairs of the reference and categories, in a stable order and up to the limit;
    the error rows among them, which have no render)."""
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
    return selected, errors


@dataclass
class _Feeder:
    """Feeds the set metrics batch by batch, and counts what could not be read."""

    sm: Any
    job: Any
    persons: dict[str, dict[str, bytes]]
    metrics: list[str]
    paired: bool
    variant: str
    evaluated: int = 0
    missing_render: list[str] = field(default_factory=list)
    missing_label: int = 0

    @property
    def use_dist(self) -> bool:
        return any(m in self.metrics for m in ("fid", "kid"))

    def reals_once(self, rows: list[dict], batch_size: int) -> None:
        """Unpaired FID/KID: the reals are the distinct person photos, each once."""
        ids = sorted({r["person_id"] for r in rows})
        for chunk in batches(ids, batch_size):
            reals = [rgb_tensor(self.persons[p]["image"]) for p in chunk]
            for _, stacked in stack_same_size(reals):
                self.sm.update_real(stacked)

    def batch(self, chunk: list[dict]) -> None:
        """One batch of pairs: try-ons (and, paired, their person photos) into the metrics."""
        fakes, reals, kept = [], [], []
        for r in chunk:
            try:
                data = self.job.read_bytes(r["output_key"])
            except FileNotFoundError:
                self.missing_render.append(r["output_key"])
                continue
            fakes.append(rgb_tensor(data))
            reals.append(rgb_tensor(self.persons[r["person_id"]]["image"]) if self.paired else None)
            kept.append(r)
        self.evaluated += len(kept)
        paired_metrics = any(m in self.metrics for m in ("ssim", "lpips"))
        for idx, fstack in stack_same_size(fakes):
            if self.use_dist:
                self.sm.update_fake(fstack)
            if self.paired:
                for ridx, rstack in stack_same_size([reals[i] for i in idx]):
                    if self.use_dist:
                        self.sm.update_real(rstack)
                    if paired_metrics:
                        self.sm.update_pairs(fstack[ridx], rstack, groups=[kept[idx[i]]["category"] for i in ridx])
        if "miou" in self.metrics:
            self.labels(kept)

    def labels(self, rows: list[dict]) -> None:
        """(render label map, person target map) pairs; a render without a label map is counted."""
        import torch

        from gpvton_core.inputs import person_targets
        from gpvton_core.rows import decode_labels

        for r in rows:
            data = None
            for key in label_keys(r["output_key"]):
                try:
                    data = self.job.read_bytes(key)
                    break
                except FileNotFoundError:
                    continue
            if data is None:
                self.missing_label += 1
                continue
            pred = torch.from_numpy(render_labels(data).astype("int64"))
            target = person_targets(decode_labels(self.persons[r["person_id"]]["parsing"]), self.variant,
                                    r["category"])
            self.sm.update_labels(pred, target, group=r["category"])


def _values(sm: Any, missing_label: int) -> tuple[dict, dict]:
    """(the metrics' values, their per-category values), mIoU annotated when label maps were absent."""
    values = sm.compute()
    by_category = values.pop("by_group", {})
    if "miou" in values and missing_label:
        values["miou"]["missing_label_maps"] = missing_label
        if values["miou"]["value"] is None:
            values["miou"]["note"] = ("no debug label maps: render with --set output_format.debug=true "
                                      "to evaluate mIoU")
    return values, by_category


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Compute the metrics of ``cfg.job`` and write ``metrics.json`` + ``config.json``; returns the metrics."""
    import torch

    from gpvton_core.metrics.set_metrics import PROTOCOL, SetMetrics
    from infra.storage import Storage, join

    t0 = time.time()
    metrics = _checked_metrics(cfg)
    job, meta, shards_url = _open_job(cfg)
    inception, lpips, weights = load_extractors(cfg, metrics)  # fail fast, before reading images
    rows = read_rows(job.root)
    selected, errors = _select(rows, cfg)
    device = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    variant = meta.get("variant") if meta.get("variant") in ("vitonhd", "dresscode") else "vitonhd"
    sm = SetMetrics(metrics, inception=inception, lpips=lpips, kid_subset_size=cfg.kid_subset_size,
                    kid_subsets=cfg.kid_subsets, num_classes=LABEL_CLASSES, miou_exclude=(0,),
                    seed=cfg.seed, device=device)
    persons = shard_images(shards_url, {r["person_id"] for r in selected}, parsing="miou" in metrics)
    no_photo = [r for r in selected if r["person_id"] not in persons]
    selected = [r for r in selected if r["person_id"] in persons]
    feed = _Feeder(sm, job, persons, metrics, cfg.reference == "paired", variant)
    with torch.no_grad():
        if feed.use_dist and not feed.paired:
            feed.reals_once(selected, cfg.batch_size)
        for n_batch, chunk in enumerate(batches(selected, cfg.batch_size)):
            feed.batch(chunk)
            if n_batch % 20 == 19:
                log.info("eval: %d / %d pairs", feed.evaluated, len(selected))
    values, by_category = _values(sm, feed.missing_label)
    out_url = cfg.out or join(cfg.job, "eval")
    result = {
        "job": cfg.job, "reference": cfg.reference, "metrics": values,
        "by_category": by_category,  # paired per-pair metrics only; FID/KID are set-wide
        "pairs": {"evaluated": feed.evaluated, "selected": len(selected) + len(no_photo),
                  "skipped_error_rows": len(errors), "missing_renders": len(feed.missing_render),
                  "missing_person_photos": len(no_photo), "score_rows": len(rows)},
        "protocol": {k: v for k, v in PROTOCOL.items() if k in metrics or k == "images"},
        "weights": weights, "device": device, "variant_for_labels": variant,
        "job_info": {k: meta.get(k) for k in ("run_id", "model_key", "package_version",
                                               "model_note", "random_weights", "checkpoints")},
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - t0, 3), "out": out_url,
    }
    if feed.missing_render:
        result["pairs"]["missing_render_examples"] = feed.missing_render[:10]
    out = Storage(out_url)
    out.write_json("config.json", resolved(cfg))
    out.write_json("metrics.json", result)
    return result


def metrics_json(url: str) -> dict:
    """Read a written ``metrics.json`` (helper for callers and tests)."""
    from infra.storage import Storage

    return json.loads(Storage(url).read_bytes("metrics.json"))
