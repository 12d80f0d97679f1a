"""The user's metric weight files — the FID Inception (``--inception-weights``) and LPIPS
(``--lpips-weights``) — by URL, through the one model-file path :func:`infra.models.fetch_model`:
a local path or an ``s3://`` URL alike, fetched once into the sha256-keyed cache, the sha256
recorded in ``metrics.json``. No downloads from the internet: a missing file is a configuration
error that names the flag to pass.
"""

from __future__ import annotations

from typing import Any, Optional

from infra.models import ModelFile, fetch_model, local_path
from infra.storage import join
from pipelines.config import ConfigError


def _inception(url: Optional[str], need: list[str]) -> tuple[Any, dict]:
    """The FID Inception with the weights at ``url`` (needed by ``need``), and its file info."""
    from gpvton_core.metrics import inception as fid

    if not url:
        raise ConfigError(f"{'/'.join(need)} need the FID Inception weights: pass "
                          f"--inception-weights /path/to/{fid.FID_WEIGHTS_NAME} (or leave "
                          f"{','.join(need)} out of --metrics)")
    try:
        weights = fetch_model(url)
    except FileNotFoundError:
        raise ConfigError(f"--inception-weights: file not found: {url} "
                          f"(expected {fid.FID_WEIGHTS_NAME})") from None
    try:
        net = fid.load_fid_inception(weights.path)
    except fid.WeightFileError as exc:
        raise ConfigError(f"--inception-weights: {exc}") from exc
    return net, {"path": url, "sha256": weights.sha256}


def lpips_files(url: str, net: str) -> list[tuple[str, ModelFile]]:
    """``(where, fetched file)`` of the LPIPS weights at ``url``: a folder holding ``net``'s trunk
    and linear-layer files, or one file with both key sets. WeightFileError names what is missing."""
    from gpvton_core.metrics.lpips import TRUNKS, missing_files_error, resolve_lpips_files

    local = local_path(url)
    if local is not None:
        return [(str(f), fetch_model(str(f))) for f in resolve_lpips_files(local, net)]
    try:
        return [(url, fetch_model(url))]
    except FileNotFoundError:   # no such object: a folder of the two files
        pass
    spec = TRUNKS[net]
    found, missing = [], []
    for name in (spec["trunk_file"], spec["lin_file"]):
        try:
            found.append((join(url, name), fetch_model(join(url, name))))
        except FileNotFoundError:
            missing.append(name)
    if missing:
        raise missing_files_error(url, net, missing)
    return found


def _lpips(url: Optional[str], net: str) -> tuple[Any, dict]:
    """LPIPS with the user's weights at ``url``, and the files' info."""
    from gpvton_core.metrics.lpips import TRUNKS, WeightFileError, load_lpips_files

    if not url:
        spec = TRUNKS[net]
        raise ConfigError(f"lpips needs its weights: pass --lpips-weights DIR holding "
                          f"{spec['trunk_file']} and {spec['lin_file']} (or one file with both key "
                          f"sets), or leave lpips out of --metrics")
    try:
        files = lpips_files(url, net)
        model = load_lpips_files([mf.path for _, mf in files], net)
    except WeightFileError as exc:
        raise ConfigError(f"--lpips-weights: {exc}") from exc
    return model, {"net": net, "files": [{"path": where, "sha256": mf.sha256} for where, mf in files]}


def load_extractors(cfg: Any, metrics: list[str]) -> tuple[Any, Any, dict]:
    """(inception or None, lpips or None, weight-file info) for the chosen ``metrics`` of an
    :class:`~pipelines.evaluate.job.EvalConfig`; ConfigError names the flag to pass."""
    inception = lpips = None
    info: dict[str, Any] = {}
    need_fid = [m for m in metrics if m in ("fid", "kid")]
    if need_fid:
        inception, info["inception"] = _inception(cfg.inception_weights, need_fid)
    if "lpips" in metrics:
        lpips, info["lpips"] = _lpips(cfg.lpips_weights, cfg.lpips_net)
    return inception, lpips, info
