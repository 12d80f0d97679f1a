"""The job's model: trained checkpoints or opt-in random weights, checked against the catalogue, and its key.

The model key (a digest of :func:`model_inputs`) is what the index compares: a pair is rendered
again when anything that changes its delivered pixels changed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from gpvton_core.conditions.labels import variant_categories
from pipelines.config import ConfigError
from pipelines.render.config import RenderConfig

RANDOM_WIDTH = 0.125
RANDOM_NOTE = ("RANDOM WEIGHTS (--random-weights): the warp and generator networks are randomly initialised "
               "small networks (width {width}). The images show the pipeline working, not try-on quality.")


@dataclass(frozen=True)
class ModelChoice:
    """What the workers build: the variant and width, from the checkpoints or the config."""

    random_init: bool
    variant: str
    width: float
    checkpoint_meta: dict[str, dict[str, Any]] = field(default_factory=dict)   # warp / generator → kind, width


def uses_random_weights(cfg: RenderConfig, s3) -> bool:
    """Both checkpoints, or ``random_weights`` explicitly: returns whether the nets are random.

    Random weights are opt-in: a scheduled job with a forgotten flag must not "succeed" with
    garbage. A missing flag or file is a :class:`ConfigError` that names it.
    """
    from infra.storage import filesystem, strip_scheme

    given = {k: v for k, v in (("warp", cfg.checkpoints.warp), ("generator", cfg.checkpoints.generator)) if v}
    if cfg.random_weights:
        if given:
            raise ConfigError(f"--random-weights and --{'/--'.join(f'{k}-checkpoint' for k in given)} exclude "
                              f"each other: drop one")
        return True
    missing = [k for k in ("warp", "generator") if k not in given]
    if missing:
        flags = " and ".join(f"--{k}-checkpoint" for k in missing)
        keys = ", ".join(f"checkpoints.{k}" for k in missing)
        raise ConfigError(f"no {flags} given ({keys} in the config): pass the trained checkpoint"
                          f"{'s' if len(missing) > 1 else ''}, or --random-weights to check the pipeline "
                          f"with randomly initialised networks")
    for label, path in given.items():
        try:
            found = filesystem(path, s3).exists(strip_scheme(path))
        except Exception as exc:  # noqa: BLE001 - unreachable store, bad credentials
            raise ConfigError(f"--{label}-checkpoint {path}: cannot check it: {exc}") from exc
        if not found:
            raise ConfigError(f"{label} checkpoint not found: {path} (--{label}-checkpoint)")
    return False


def checkpoint_meta(label: str, path: str, s3=None) -> dict:
    """Kind and width of a checkpoint (fetched like the workers fetch it), checked against its role
    (a wrong file is a config error)."""
    from gpvton_core.checkpoints import build_from_checkpoint
    from infra.models import fetch_model

    try:
        _, meta = build_from_checkpoint(fetch_model(path, s3).path)
    except Exception as exc:  # noqa: BLE001 - unreadable / not a GP-VTON state dict
        raise ConfigError(f"{label} checkpoint {path} cannot be loaded: {exc}") from exc
    kind = str(meta.get("kind"))
    if (label == "generator") != (kind == "generator"):
        raise ConfigError(f"--{label}-checkpoint {path} holds a {kind} network; swap the two checkpoint flags?")
    return {"kind": kind, "width": float(meta.get("width", 1.0))}


def choose_model(cfg: RenderConfig, s3, random_init: bool, garments, variant: str) -> ModelChoice:
    """The model for the catalogue's ``variant``: the checkpoints decide variant and width (and must
    render the chosen categories); random weights (``random_init``) take the config's width."""
    if random_init:
        width = cfg.model.width if cfg.model.width is not None else RANDOM_WIDTH
        return ModelChoice(random_init=True, variant=variant, width=width)
    meta = {label: checkpoint_meta(label, path, s3) for label, path in
            (("warp", cfg.checkpoints.warp), ("generator", cfg.checkpoints.generator))}
    ck_variant = meta["warp"]["kind"].split("_", 1)[1]
    if cfg.model.variant not in ("auto", ck_variant):
        raise ConfigError(f"model.variant is {cfg.model.variant} but the warp checkpoint is a {ck_variant} model")
    renderable = variant_categories(ck_variant)
    if (set(garments.column("category").to_pylist()) & set(cfg.categories)) - set(renderable):
        if cfg.categories != list(renderable):
            raise ConfigError("the VITON-HD warp checkpoint only renders upper garments: add "
                              "--set categories=[upper] or use a Dress Code warp checkpoint")
    return ModelChoice(random_init=False, variant=ck_variant, width=meta["warp"]["width"], checkpoint_meta=meta)


def checkpoint_hashes(cfg: RenderConfig, s3) -> dict[str, str]:
    """warp / generator → the sha256 of its checkpoint (``job.json``, the model key)."""
    from infra.models import model_sha256

    return {k: model_sha256(p, s3) for k, p in
            (("warp", cfg.checkpoints.warp), ("generator", cfg.checkpoints.generator)) if p}


def model_note(cfg: RenderConfig, model: ModelChoice) -> str:
    """One line on the model, for ``job.json`` and the summary; random weights are announced on stderr."""
    if not model.random_init:
        return f"checkpoints: warp {cfg.checkpoints.warp}, generator {cfg.checkpoints.generator}"
    note = RANDOM_NOTE.format(width=model.width)
    if not cfg.dry_run:
        bar = "!" * 100
        print(f"{bar}\n!! {note}\n{bar}", file=sys.stderr)
    return note


def model_inputs(cfg: RenderConfig, variant: str, hashes: dict, width: float, resolution: int, precision: str,
                 random_init: bool) -> dict:
    """Everything that changes the delivered pixels of a pair, apart from its person and garment."""
    fmt = cfg.output_format
    return {"variant": variant, "checkpoints": hashes, "width": width, "resolution": resolution,
            "precision": precision, "composite": cfg.composite, "frame": fmt.frame, "format": fmt.format,
            "quality": fmt.quality if fmt.format != "png" else None,
            "random_seed": cfg.model.seed if random_init else None}
