"""The garment matting contract with a tiny ONNX model the test exports itself."""

import numpy as np
import pytest
import torch

from pipelines.preprocess.estimators.matting import GarmentMatting, MattingConfig



class RedIsGarment(torch.nn.Module):
    """Logit = 8 × (normalised R − normalised G): a red garment is foreground."""

    def forward(self, x):
        return (8.0 * (x[:, 0:1] - x[:, 1:2]))


def _export(path, size=(64, 64)):
    torch.onnx.export(RedIsGarment(), torch.zeros(1, 3, *size), str(path), input_names=["image"],
                      output_names=["saliency"], dynamo=False)


def test_matting_mask_on_a_busy_background(tmp_path):
    _export(tmp_path / "sal.onnx")
    rng = np.random.default_rng(0)
    img = np.zeros((150, 100, 3), np.uint8)
    img[..., 1] = rng.integers(120, 255, (150, 100))      # busy greenish background
    img[..., 2] = rng.integers(0, 255, (150, 100))
    truth = np.zeros((150, 100), bool)
    truth[30:120, 20:80] = True
    img[truth] = (230, 20, 30)
    m = GarmentMatting(MattingConfig(model=str(tmp_path / "sal.onnx"), input_size=(64, 64),
                                     mean=(0, 0, 0), std=(1, 1, 1), activation="sigmoid", normalize="none"))
    mask = m.mask(img)
    assert mask.shape == truth.shape
    assert (mask & truth).sum() / (mask | truth).sum() > 0.9
    assert m.provenance.startswith("onnx-matting@") and len(m.provenance) == len("onnx-matting@") + 12


def test_missing_model_file_names_the_url(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        GarmentMatting(MattingConfig(model=str(tmp_path / "nope.onnx")))


def test_model_file_from_object_storage(local_s3, tmp_path, monkeypatch):
    """Model files are URLs: a worker fetches s3:// once into its cache (atomic), keyed by the file."""
    from infra.models import fetch_model
    from infra.storage import filesystem

    monkeypatch.setenv("GPVTON_MODEL_CACHE", str(tmp_path / "cache"))
    _export(tmp_path / "sal.onnx")
    fs = filesystem(local_s3.url(), local_s3.settings)
    fs.put(str(tmp_path / "sal.onnx"), f"{local_s3.bucket}/models/sal.onnx")
    url = local_s3.url("models/sal.onnx")
    first = fetch_model(url, local_s3.settings)
    again = fetch_model(url, local_s3.settings)
    assert first.path == again.path and first.path.startswith(str(tmp_path / "cache"))
    assert first.sha256 == fetch_model(str(tmp_path / "sal.onnx")).sha256
    m = GarmentMatting(MattingConfig(model=url, input_size=(64, 64), activation="sigmoid", normalize="none"),
                       local_s3.settings)
    assert m.provenance == f"onnx-matting@{first.sha256[:12]}"
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        fetch_model(local_s3.url("models/missing.onnx"), local_s3.settings)
