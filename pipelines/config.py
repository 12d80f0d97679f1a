"""Typed job configuration: pydantic models loaded from YAML or TOML, overridden on the CLI.

Every job takes ``--config FILE`` plus ``--set key.sub=value`` overrides (and a few dedicated
flags that map onto the same keys). The resolved config is written next to the job's output, so
a morning reader knows exactly what ran.

A configuration error raises :class:`ConfigError` with a message that says what to fix; the CLI
turns it (and any other :class:`UserError`) into exit code 2 and one line, without a traceback.

URL fields are typed :data:`StorageURL` (``KIND:URL`` inputs :data:`InputSpec`): relative paths,
``~`` and ``file://`` become absolute local paths when the config is loaded, so a job means the
same from any working directory and the resolved config written next to its output says where
everything really was.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from infra.storage import S3Settings

M = TypeVar("M", bound=BaseModel)


class UserError(Exception):
    """Something the user must fix (a missing input, empty shards, a missing flag): CLI exit code 2."""


class ConfigError(UserError, ValueError):
    """The job cannot start because its configuration is wrong (CLI exit code 2)."""


def _normalize_url(url: str) -> str:
    from infra.storage import normalize_url

    return normalize_url(url)


def _normalize_input(spec: str) -> str:
    """``KIND:URL`` with its URL normalised; anything else is left for the input's own validation."""
    kind, sep, url = spec.partition(":")
    if not sep or not url or "/" in kind:
        return spec
    return f"{kind}:{_normalize_url(url)}"


StorageURL = Annotated[str, AfterValidator(_normalize_url)]
"""A local path (relative, ``~``, ``file://``) or a remote URL (``s3://``); stored absolute."""

InputSpec = Annotated[str, AfterValidator(_normalize_input)]
"""``KIND:URL`` (e.g. ``vitonhd:../data``): the URL part normalised like :data:`StorageURL`."""


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors (a typo must not be ignored silently)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class S3Config(StrictModel):
    """The ``s3:`` section of every job config; unset fields fall back to the AWS environment."""

    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str | None = None

    def settings(self) -> "S3Settings":
        from infra.storage import S3Settings

        env = S3Settings.from_env()
        return S3Settings(endpoint_url=self.endpoint_url or env.endpoint_url,
                          access_key_id=self.access_key_id or env.access_key_id,
                          secret_access_key=self.secret_access_key or env.secret_access_key,
                          region=self.region or env.region)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON file into a dict."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from exc
    try:
        if p.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif p.suffix == ".toml":
            data = tomllib.loads(text)
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{p}: unknown config format {p.suffix!r}; use .yaml, .toml or .json")
    except yaml.MarkedYAMLError as exc:
        where = f"{p}:{exc.problem_mark.line + 1}:{exc.problem_mark.column + 1}" if exc.problem_mark else str(p)
        raise ConfigError(f"{where}: cannot parse the YAML: {exc.problem or exc.context}") from exc
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: cannot parse: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _parse_value(raw: str) -> Any:
    """``key=value`` values are YAML scalars/lists: ``4``, ``true``, ``[a, b]``, ``s3://x``."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (or a flat ``{"a.b": value}`` dict) to a nested dict."""
    items = overrides.items() if isinstance(overrides, dict) else []
    if isinstance(overrides, list):
        parsed = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like key.sub=value")
            key, raw = item.split("=", 1)
            parsed.append((key.strip(), _parse_value(raw)))
        items = parsed
    out = json.loads(json.dumps(data, default=str))  # deep copy of plain data
    for key, value in items:
        if value is None and not isinstance(overrides, list):
            continue  # unset CLI flags do not override the file
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {key!r}: {part!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def load_config(model: type[M], path: str | Path | None = None,
                overrides: list[str] | dict[str, Any] | None = None,
                base: dict[str, Any] | None = None) -> M:
    """Build a validated ``model`` from an optional file, a base dict and overrides."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data.update(read_config_file(path))
    if overrides:
        data = apply_overrides(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
            problems.append(f"{loc}: {err['msg']}")
        src = f" in {path}" if path else ""
        raise ConfigError(f"invalid configuration{src}: " + "; ".join(problems)) from exc


def resolved(config: BaseModel) -> dict[str, Any]:
    """The config as plain JSON-able data (what is written next to the job's output)."""
    return json.loads(config.model_dump_json())


def config_hash(config: BaseModel) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(resolved(config), sort_keys=True).encode()).hexdigest()[:16]
