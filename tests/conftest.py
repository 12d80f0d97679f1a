"""Shared test fixtures: the licensed sample data, a real S3 server, a local Ray cluster.

Data from ../shared/data is read in place (never copied into the repository). When it is absent
the tests that need it skip, except under CI=true, where they fail: CI must exercise them. The same
holds for optional test dependencies (``pytest.importorskip``, e.g. onnx).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPVTON_SHARED", REPO.parent / "shared"))


if os.environ.get("CI") == "true":
    # Under CI a missing test dependency is a failure, like missing shared material: CI must run
    # every test. pytest.importorskip (module level or inside a test) then fails instead of skipping.
    _importorskip = pytest.importorskip

    def _import_or_fail(modname: str, *args, **kwargs):
        try:
            return _importorskip(modname, *args, **kwargs)
        except pytest.skip.Exception as exc:
            pytest.fail(f"required module missing under CI: {modname} ({exc})", pytrace=False)

    pytest.importorskip = _import_or_fail


def _require(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"required shared material missing under CI: {path}")
        pytest.skip(f"shared material not available: {path}")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (VITON-HD and Dress Code samples; non-commercial licence)."""
    return _require(SHARED / "data")


@pytest.fixture(scope="session")
def vitonhd_root(shared_data: Path) -> Path:
    return _require(shared_data / "vitonhd")


@pytest.fixture(scope="session")
def dresscode_root(shared_data: Path) -> Path:
    return _require(shared_data / "dresscode")


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """``build(folder)`` once per test run, shared by every pytest-xdist worker (read-only).

    Session fixtures are per worker process; the expensive read-only ones (Beam preprocessing
    runs) are built by the first worker that needs them, under a file lock, and reused by the
    others from the run's common temporary folder. A build that fails leaves no marker."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent          # pytest-of-USER/pytest-N/, shared by the run's workers
    folder = base / "shared-fixtures" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder.parent / f"{name}.built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder.parent / f"{name}.built").touch()
    return folder


def _dataset_shards(kind: str, root: Path, tmp_path_factory) -> Path:
    from pipelines.cli import main

    def build(folder: Path) -> None:
        assert main(["preprocess", "--input", f"{kind}:{root}", "--output", str(folder / "shards"),
                     "--resolution", "512", "--no-progress"]) == 0

    return built_once(tmp_path_factory, f"{kind}-shards", build) / "shards"


@pytest.fixture(scope="session")
def vitonhd_shards(vitonhd_root: Path, tmp_path_factory) -> Path:
    """The VITON-HD samples through ``gpvton preprocess`` at 512×384, once per session (read-only)."""
    return _dataset_shards("vitonhd", vitonhd_root, tmp_path_factory)


@pytest.fixture(scope="session")
def dresscode_shards(dresscode_root: Path, tmp_path_factory) -> Path:
    """The Dress Code samples through ``gpvton preprocess`` at 512×384, once per session (read-only)."""
    return _dataset_shards("dresscode", dresscode_root, tmp_path_factory)


@pytest.fixture(scope="session")
def spec_dir() -> Path:
    """../shared/spec (model spec, checkpoint key tables, parity fixtures)."""
    return _require(SHARED / "spec")


@pytest.fixture(scope="session")
def local_s3():
    """A real S3 API (moto server mode) on 127.0.0.1 for the whole session, with one bucket."""
    from infra.s3_local import LocalS3

    server = LocalS3("gpvton-test").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance shared by the session (ray.init costs ~5 s and ~0.7 GB).

    num_cpus=4 on a 2-core machine: Ray's logical CPUs, so fractional actors and Ray Data's read
    tasks cannot deadlock each other (see ../shared/notes/ENVIRONMENT.md).
    """
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, object_store_memory=300 * 1024 * 1024, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory):
    """Factory: a generated catalogue preprocessed by the real Beam stage at 128×96 (read-only).

    Built once per arguments and run (:func:`built_once`), so test modules asking for the same
    catalogue share one Beam run, across parallel workers too.
    """
    from pipelines.demo import build_shards
    from pipelines.synthetic.catalogue import make_catalogue

    def make(n_garments: int = 9, n_persons: int = 4, seed: int = 0) -> Path:
        def build(root: Path) -> None:
            make_catalogue(root / "cat", n_garments=n_garments, n_persons=n_persons, height=128, width=96,
                           seed=seed)
            build_shards(root / "cat", root / "shards", 128)

        return built_once(tmp_path_factory, f"synthetic-{n_garments}-{n_persons}-{seed}", build) / "shards"

    return make


@pytest.fixture(scope="session")
def training_shards(tmp_path_factory) -> str:
    """Paired synthetic catalogue for training tests (9 garments, 9 persons wearing them; 3 per category)."""
    from tests.pipelines.synthetic_fixtures import make_training_shards

    def build(root: Path) -> None:
        make_training_shards(root, n_garments=9, n_persons=9, seed=7)

    return str(built_once(tmp_path_factory, "train-synthetic", build) / "shards")


@pytest.fixture
def in_process(monkeypatch):
    """``gpvton train`` with ``train_loop_per_worker`` run here as a single worker instead of on Ray
    Train: argument parsing, config file, checks, ``config.json`` and the run's files as usual. For
    tests whose point is not Ray Train (``test_parser_through_ray_train`` and the two-node cluster
    test cover it), so they do not pay its start-up."""
    import torch

    import pipelines.train
    from workers.train.per_worker import train_loop_per_worker

    threads = torch.get_num_threads()
    monkeypatch.setattr(pipelines.train, "fit_on_ray", lambda cfg, lc: train_loop_per_worker(lc))
    yield
    torch.set_num_threads(threads)   # the loop sets the run's threads
