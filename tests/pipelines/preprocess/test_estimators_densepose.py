import numpy as np
import pytest
import torch
from pydantic import ValidationError

from pipelines.preprocess.estimators.densepose import (DensePoseConfig, DensePoseModel,
                                                       DensePoseModelError, detect_format)


class Bands(torch.nn.Module):
    """Part index = vertical band of the input: 0..``parts``−1 left to right (1×H×W, int64)."""

    def __init__(self, parts: int = 25, logits: bool = False):
        super().__init__()
        self.parts, self.logits = parts, logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[3]
        cols = torch.arange(w, device=x.device) * self.parts // w           # W
        idx = cols.view(1, 1, w).expand(x.shape[0], x.shape[2], w)          # N×H×W
        idx = idx + (x[:, 0] * 0).long()       # depend on the input (else ONNX export drops it)
        if self.logits:
            return torch.nn.functional.one_hot(idx, 25).permute(0, 3, 1, 2).float() * 3.0 - 1.0
        return idx


class Brightness(torch.nn.Module):
    """Part index = round(first input channel × 24): checks channel order and normalisation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x[:, 0:1] * 24.0)


def bands(width: int, parts: int = 25) -> np.ndarray:
    return (np.arange(width) * parts // width).astype(np.uint8)


def torchscript(module: torch.nn.Module, path) -> str:
    torch.jit.script(module).save(str(path))
    return str(path)


def onnx_model(module: torch.nn.Module, path, size=(32, 24)) -> str:
    pytest.importorskip("onnx", reason="exporting the test models needs the onnx package (dev extra)")
    torch.onnx.export(module.eval(), torch.zeros(1, 3, *size), str(path), dynamo=False,
                      input_names=["input"], output_names=["out"], opset_version=17)
    return str(path)


def photo(h: int = 40, w: int = 30) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_torchscript_index_model_at_native_size(tmp_path):
    m = DensePoseModel(DensePoseConfig(model=torchscript(Bands(), tmp_path / "dp.pt")))
    assert m.format == "torchscript"
    assert m.provenance.startswith("torchscript-densepose@") and len(m.provenance.split("@")[1]) == 12
    out = m.predict(photo(40, 50))
    assert out.dtype == np.uint8 and out.shape == (40, 50)
    np.testing.assert_array_equal(out, np.broadcast_to(bands(50), (40, 50)))


def test_logits_at_input_size_come_back_at_the_photo_size(tmp_path):
    cfg = DensePoseConfig(model=torchscript(Bands(logits=True), tmp_path / "dp.pt"),
                          output="logits", input_size=(20, 25))
    out = DensePoseModel(cfg).predict(photo(40, 50))
    assert out.shape == (40, 50)
    # nearest upsampling ×2 of the 25-column band layout: column x shows band x // 2
    np.testing.assert_array_equal(out[0], np.repeat(np.arange(25), 2))
    assert (out == out[:1]).all()


def test_onnx_index_model_and_format_detection(tmp_path):
    path = onnx_model(Bands(parts=5), tmp_path / "dp.bin", size=(32, 24))
    assert detect_format(path) == "onnx"
    m = DensePoseModel(DensePoseConfig(model=path, input_size=(32, 24)))
    assert m.format == "onnx" and m.provenance.startswith("onnx-densepose@")
    out = m.predict(photo(64, 48))
    np.testing.assert_array_equal(out, np.broadcast_to(np.repeat(bands(24, 5), 2), (64, 48)))


def test_onnx_logits_model(tmp_path):
    path = onnx_model(Bands(logits=True), tmp_path / "dp.onnx", size=(16, 25))
    cfg = DensePoseConfig(model=path, output="logits", input_size=(16, 25))
    out = DensePoseModel(cfg).predict(photo(16, 25))
    np.testing.assert_array_equal(out, np.broadcast_to(np.arange(25), (16, 25)))


def test_normalisation_and_channel_order(tmp_path):
    path = torchscript(Brightness(), tmp_path / "b.pt")
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 0], img[..., 2] = 255, 0          # red photo
    rgb = DensePoseModel(DensePoseConfig(model=path)).predict(img)
    assert (rgb == 24).all()                    # x/255 = 1 → 24
    bgr = DensePoseModel(DensePoseConfig(model=path, channel_order="bgr")).predict(img)
    assert (bgr == 0).all()                     # first channel is now blue = 0
    half = DensePoseModel(DensePoseConfig(model=path, mean=(0.5, 0, 0), std=(2.0, 1, 1))).predict(img)
    assert (half == 6).all()                    # (1 − 0.5) / 2 × 24


def test_index_out_of_range_is_a_clear_error(tmp_path):
    m = DensePoseModel(DensePoseConfig(model=torchscript(Bands(parts=30), tmp_path / "bad.pt")))
    with pytest.raises(DensePoseModelError, match=r"out of range 0\.\.24.*max 29"):
        m.predict(photo(10, 30))


def test_logits_with_wrong_channel_count_are_rejected(tmp_path):
    m = DensePoseModel(DensePoseConfig(model=torchscript(Bands(), tmp_path / "dp.pt"), output="logits"))
    with pytest.raises(DensePoseModelError, match="logits"):
        m.predict(photo(10, 30))


def test_config_and_loading_errors(tmp_path):
    with pytest.raises(ValidationError):
        DensePoseConfig(model="x.pt", colour="rgb")           # unknown keys are errors
    with pytest.raises(ValidationError):
        DensePoseConfig(std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="not set"):
        DensePoseModel(DensePoseConfig())
    with pytest.raises(FileNotFoundError):
        DensePoseModel(DensePoseConfig(model=str(tmp_path / "missing.pt")))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(DensePoseModelError, match="cannot load"):
        DensePoseModel(DensePoseConfig(model=str(junk)))
    model = DensePoseModel(DensePoseConfig(model=torchscript(Bands(), tmp_path / "dp.pt")))
    with pytest.raises(ValueError, match="H×W×3"):
        model.predict(np.zeros((4, 4), np.uint8))
