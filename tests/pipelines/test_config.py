"""Typed configs: files, overrides, clear errors."""

from __future__ import annotations

import pytest

from pipelines.config import ConfigError, StrictModel, apply_overrides, config_hash, load_config


class Inner(StrictModel):
    size: int = 2
    name: str = "x"


class Job(StrictModel):
    output: str
    inner: Inner = Inner()
    tags: list[str] = []


def test_yaml_toml_and_overrides(tmp_path):
    y = tmp_path / "job.yaml"
    y.write_text("output: out\ninner:\n  size: 3\n")
    cfg = load_config(Job, y, ["inner.name=abc", "tags=[a, b]"])
    assert cfg.inner.size == 3 and cfg.inner.name == "abc" and cfg.tags == ["a", "b"]
    t = tmp_path / "job.toml"
    t.write_text('output = "s3://b/o"\n[inner]\nsize = 5\n')
    assert load_config(Job, t).inner.size == 5


def test_flag_dict_overrides_skip_unset():
    data = apply_overrides({"output": "a"}, {"output": None, "inner.size": 7})
    assert data == {"output": "a", "inner": {"size": 7}}


def test_errors_say_what_to_fix(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("output: out\ninner:\n  sise: 3\n")
    with pytest.raises(ConfigError, match="inner.sise"):
        load_config(Job, y)
    with pytest.raises(ConfigError, match="not found"):
        load_config(Job, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(Job, None, ["output"])
    with pytest.raises(ConfigError, match="output"):
        load_config(Job, None, [])


def test_hash_is_stable():
    a = load_config(Job, None, ["output=o"])
    b = load_config(Job, None, ["output=o"])
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(load_config(Job, None, ["output=p"]))


def test_storage_urls_are_absolute_once_loaded(tmp_path, monkeypatch):
    from typing import Optional

    from pipelines.config import InputSpec, StorageURL, StrictModel, load_config

    class Job(StrictModel):
        output: StorageURL
        weights: Optional[StorageURL] = None
        inputs: list[InputSpec] = []

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    cfg = load_config(Job, None, ["output=rel/job", "weights=~/w.pth",
                                  "inputs=[vitonhd:../data, 'manifest:s3://b/cat', 'dresscode:file://dc']"])
    assert cfg.output == str(tmp_path / "rel" / "job") and cfg.weights == str(tmp_path / "h" / "w.pth")
    assert cfg.inputs == [f"vitonhd:{tmp_path.parent / 'data'}", "manifest:s3://b/cat", f"dresscode:{tmp_path / 'dc'}"]
    assert load_config(Job, None, ["output=s3://bucket/jobs/1"]).output == "s3://bucket/jobs/1"


def test_unreadable_config_files_are_config_errors(tmp_path):
    from pipelines.config import ConfigError, read_config_file

    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2:1: cannot parse the YAML"):
        read_config_file(bad)
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x81")
    with pytest.raises(ConfigError, match="cannot read config file"):
        read_config_file(binary)
