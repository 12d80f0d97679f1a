"""The layer contract of ARCHITECTURE.md, as ``[tool.importlinter]`` in pyproject.toml states it."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_layers_are_kept(monkeypatch):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(REPO))
    assert lint_imports(config_filename=os.fspath(REPO / "pyproject.toml"), no_cache=True) == 0, \
        "an import crosses the layers: see the contract report above"
