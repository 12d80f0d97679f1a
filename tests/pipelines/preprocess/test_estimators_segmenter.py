"""Person mask: agrees with the datasets' own parsings on real photos, empty on an empty photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.preprocess.estimators.segmenter import PersonSegmenter


def _pairs(vitonhd: Path, dresscode: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(photo, foreground of the dataset parsing) for one VITON-HD and one full-body Dress Code photo."""
    out = []
    for img, lab in ((vitonhd / "test" / "image" / "00013_00.jpg",
                      vitonhd / "test" / "image-parse-v3" / "00013_00.png"),
                     (dresscode / "dresses" / "images" / "020714_0.jpg",
                      dresscode / "dresses" / "label_maps" / "020714_4.png")):
        rgb = np.asarray(Image.open(img).convert("RGB"))
        fg = np.asarray(Image.open(lab).resize((rgb.shape[1], rgb.shape[0]), Image.NEAREST)) > 0
        out.append((rgb, fg))
    return out


@pytest.mark.parametrize("model", ["selfie", "pose"])
def test_mask_matches_dataset_parsing(model: str, vitonhd_root: Path, dresscode_root: Path) -> None:
    with PersonSegmenter(model) as seg:
        name, sha = seg.provenance.split("@")
        assert name.startswith("mediapipe-") and len(sha) == 12
        for rgb, fg in _pairs(vitonhd_root, dresscode_root):
            m = seg.mask(rgb)
            assert m.shape == rgb.shape[:2] and m.dtype == np.float32
            assert 0.0 <= m.min() and m.max() <= 1.0
            on = m > 0.5
            assert (on & fg).sum() / (on | fg).sum() > 0.9
        assert seg.mask(np.full((512, 384, 3), 255, np.uint8)).mean() < 0.02
    with pytest.raises(RuntimeError, match="closed"):
        seg.mask(np.zeros((8, 8, 3), np.uint8))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown segmenter"):
        PersonSegmenter("sam")  # type: ignore[arg-type]
    with PersonSegmenter() as seg:
        with pytest.raises(ValueError, match="uint8"):
            seg.mask(np.zeros((8, 8), np.uint8))
