"""Fixtures for the gpvton_core network tests: small random inputs that look like the real ones."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from gpvton_core.tryon_batches import GarmentInputs, PersonInputs

TINY = 1 / 16  # width of the tiny test networks (same code and keys as the official ones)


def _blob(b: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """Random rectangles as {0,1} masks, B×1×H×W."""
    m = torch.zeros(b, 1, h, w)
    for i in range(b):
        y0 = int(torch.randint(0, h // 2, (1,), generator=g))
        x0 = int(torch.randint(0, w // 2, (1,), generator=g))
        m[i, :, y0:y0 + h // 2, x0:x0 + w // 2] = 1
    return m


def make_inputs(n_person: int, n_garment: int, h: int, w: int, categories: list[str] | None = None,
                seed: int = 0) -> tuple[PersonInputs, GarmentInputs]:
    g = torch.Generator().manual_seed(seed)
    pose = torch.where(torch.rand(n_person, 25, h, w, generator=g) < 0.05, 1.0, -1.0)
    preserve = _blob(n_person, h, w, g)
    person = PersonInputs(
        image=torch.rand(n_person, 3, h, w, generator=g) * 2 - 1,
        densepose=torch.randint(0, 25, (n_person, 1, h, w), generator=g, dtype=torch.uint8),
        pose=pose,
        preserve_warp=preserve,
        preserve_gen=preserve.clone(),
        skin=torch.rand(n_person, 3, generator=g) * 2 - 1,
    )
    mask = torch.zeros(n_garment, 1, h, w)
    mask[:, :, h // 8:-h // 8, w // 8:-w // 8] = 1
    parts = torch.zeros(n_garment, 3, h, w)
    x = torch.arange(w).view(1, w).expand(h, w)
    parts[:, 0] = (x >= 2 * w // 3).float() * mask[:, 0]
    parts[:, 1] = ((x >= w // 3) & (x < 2 * w // 3)).float() * mask[:, 0]
    parts[:, 2] = (x < w // 3).float() * mask[:, 0]
    garment = GarmentInputs(
        image=torch.rand(n_garment, 3, h, w, generator=g) * 2 - 1,
        mask=mask,
        parts=parts,
        category=list(categories) if categories is not None else ["upper"] * n_garment,
    )
    return person, garment


@pytest.fixture
def inputs() -> Callable[..., tuple[PersonInputs, GarmentInputs]]:
    return make_inputs


@pytest.fixture
def single_thread():
    """Tiny networks run fastest on one thread, and far faster on a busy machine (no OpenMP barriers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def parity_fixtures(spec_dir):
    """../shared/spec/parity: the official networks' inputs and outputs for deterministic weights."""
    d = spec_dir / "parity"
    if not any(d.glob("*.npz")):
        pytest.fail(f"no parity fixtures in {d}")
    return d


@pytest.fixture
def parity_case(parity_fixtures) -> Callable[[str, object], None]:
    """``check(network, dtype_or_run)``: one parity fixture through our network, every compared
    output within the stated tolerance, and the outputs that this path must produce all compared."""
    from gpvton_core import parity

    def check(name: str, dtype) -> None:
        path = parity_fixtures / f"{name}.npz"
        assert path.is_file(), f"parity fixture missing: {path}"
        lines: list[str] = []
        fill = parity.load_fill_weights(parity_fixtures, None)
        checks = parity.run_fixture(path, fill, parity_fixtures.parent / "checkpoints", [dtype], log=lines.append)
        print("\n".join(lines))
        assert checks, "fixture not recognised"
        failed = [c.line() for c in checks if not c.ok]
        assert not failed, "\n".join(failed)
        names = {c.name for c in checks}
        if name == "generator":
            assert {"in_gen_inputs", "ref_gen_raw", "ref_p_tryon"} <= names
        elif isinstance(dtype, parity.Run) and dtype.path == "inference":  # no training-only debug outputs
            assert {"ref_last_flow", "ref_seg_logits", "ref_warped_cloth", "ref_warped_label"} == names
        else:
            assert {"ref_last_flow", "ref_seg_logits", "ref_warped_cloth", "ref_warped_label", "dbg_attention_l0",
                    "dbg_delta_l1_refine"} <= names

    return check
