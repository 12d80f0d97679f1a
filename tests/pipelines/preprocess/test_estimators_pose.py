"""Pose estimators: BlazePose accuracy on the real samples, several / no persons, the ONNX contract."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pydantic import ValidationError

from gpvton_core.conditions import pose_mapping as pm
from gpvton_core.conditions.pose import body25_from_openpose, coco18_to_body25, scale_keypoints
from pipelines.preprocess.estimators.pose import PersonPose, PoseConfig, PoseEstimator
from pipelines.preprocess.estimators.pose_onnx import decode_yolox, nms


@pytest.fixture(scope="module")
def blazepose():
    est = PoseEstimator(PoseConfig())
    yield est
    est.close()


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _samples(vitonhd: Path, dresscode: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(id, photo, reference BODY_25 in the photo's pixels) for every real person photo."""
    out = []
    for img in sorted((vitonhd / "test" / "image").glob("*.jpg")):
        data = json.loads((vitonhd / "test" / "openpose_json" / f"{img.stem}_keypoints.json").read_text())
        out.append((img.stem, _rgb(img), body25_from_openpose(data)))
    for img in sorted(dresscode.glob("*/images/*_0.jpg")):
        kp = img.parent.parent / "keypoints" / f"{img.stem[:-2]}_2.json"
        ref = coco18_to_body25(json.loads(kp.read_text())["keypoints"])
        rgb = _rgb(img)
        out.append((img.stem, rgb, scale_keypoints(ref, (512, 384), rgb.shape[:2])))
    return out


def test_blazepose_pck_on_real_photos(blazepose: PoseEstimator, vitonhd_root: Path, dresscode_root: Path) -> None:
    samples = _samples(vitonhd_root, dresscode_root)
    assert len(samples) == 13
    results = []
    for sid, rgb, ref in samples:
        persons = blazepose.estimate(rgb)
        assert len(persons) == 1, sid
        p = persons[0]
        assert isinstance(p, PersonPose) and p.keypoints.shape == (25, 3) and p.keypoints.dtype == np.float32
        x0, y0, x1, y1 = p.bbox
        assert 0 <= x0 < x1 <= rgb.shape[1] and 0 <= y0 < y1 <= rgb.shape[0]
        assert x1 - x0 > 0.3 * rgb.shape[1] and y1 - y0 > 0.8 * rgb.shape[0]    # the whole model
        assert 0.5 < p.score <= 1.0
        results.append(pm.pck(p.keypoints, ref, rgb.shape[0]))
    summary = pm.pck_summary(results)
    assert summary["n"] >= 120
    assert summary["overall"] >= 0.95, summary
    for joint in ("Neck", "RShoulder", "LShoulder", "RHip", "LHip"):
        assert summary[joint] >= 0.95, (joint, summary)


def test_provenance_and_config() -> None:
    est = PoseEstimator(PoseConfig(backend="none"))
    assert est.provenance == "none" and est.estimate(np.zeros((8, 8, 3), np.uint8)) == []
    est.close()
    with pytest.raises(RuntimeError, match="closed"):
        est.estimate(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValidationError, match="detector"):
        PoseConfig(backend="rtmpose", model="pose.onnx")
    with pytest.raises(ValidationError):
        PoseConfig(backend="mediapipe", colour="red")                      # extra keys are errors


def test_blazepose_provenance_and_input_checks(blazepose: PoseEstimator) -> None:
    name, sha = blazepose.provenance.split("@")
    assert name == "mediapipe-blazepose-full" and len(sha) == 12 and int(sha, 16) >= 0
    with pytest.raises(ValueError, match="uint8"):
        blazepose.estimate(np.zeros((64, 48, 3), np.float32))
    with pytest.raises(ValueError):
        blazepose.estimate(np.zeros((64, 48), np.uint8))


def test_blazepose_finds_every_person(blazepose: PoseEstimator, vitonhd_root: Path, dresscode_root: Path) -> None:
    left = _rgb(vitonhd_root / "test" / "image" / "00013_00.jpg")
    right = _rgb(dresscode_root / "lower_body" / "images" / "013563_0.jpg")
    both = np.concatenate([left, right], axis=1)                 # 1536×1024, two models
    persons = blazepose.estimate(both)
    assert len(persons) == 2
    centres = sorted((p.bbox[0] + p.bbox[2]) / 2 for p in persons)
    assert centres[0] < 768 < centres[1]
    for p in persons:                                            # each skeleton inside its own box
        k = p.keypoints[p.keypoints[:, 2] > 0]
        assert len(k) >= 12
        x0, y0, x1, y1 = p.bbox
        assert np.all((k[:, 0] >= x0 - 5) & (k[:, 0] <= x1 + 5) & (k[:, 1] >= y0 - 5) & (k[:, 1] <= y1 + 5))
    areas = [(p.bbox[2] - p.bbox[0]) * (p.bbox[3] - p.bbox[1]) * p.score for p in persons]
    assert areas == sorted(areas, reverse=True)


def _landscape(h: int = 600, w: int = 900) -> np.ndarray:
    g = np.linspace(0, 1, h)[:, None]
    sky = np.stack([120 + 100 * g, 170 + 60 * g, 235 - 20 * g], -1) * np.ones((1, w, 1))
    im = Image.fromarray(sky.astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.polygon([(0, 380), (150, 250), (300, 330), (480, 200), (650, 320), (900, 260), (900, 600), (0, 600)],
              fill=(90, 110, 120))
    d.polygon([(0, 470), (200, 420), (450, 460), (700, 410), (900, 450), (900, 600), (0, 600)], fill=(60, 130, 60))
    d.ellipse([700, 60, 780, 140], fill=(255, 230, 150))
    noise = np.random.default_rng(0).integers(-12, 12, (h, w, 3))
    return np.clip(np.asarray(im).astype(int) + noise, 0, 255).astype(np.uint8)


def test_blazepose_no_person(blazepose: PoseEstimator) -> None:
    assert blazepose.estimate(np.full((1024, 768, 3), 255, np.uint8)) == []
    assert blazepose.estimate(_landscape()) == []


# --- RTMPose / DWPose ONNX contract -----------------------------------------------------------------
DET_BOXES = np.array([[[40, 80, 200, 560, 0.9],        # person (letterboxed input coordinates)
                       [300, 300, 400, 400, 0.95],     # class 1: not a person
                       [420, 40, 600, 300, 0.2]]],     # under the detection threshold
                     np.float32)
DET_LABELS = np.array([[0, 1, 0]], np.int64)


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A dummy end-to-end detector (fixed boxes) and a SimCC pose model that points at red pixels.

    Exported with the TorchScript exporter (``dynamo=False``), which needs no extra package.
    """
    import torch

    class Detector(torch.nn.Module):
        def forward(self, x):
            zero = x.mean() * 0
            return torch.from_numpy(DET_BOXES) + zero, torch.from_numpy(DET_LABELS) + zero.long()

    class RedPointer(torch.nn.Module):
        """simcc_x/y peak on the column/row of the reddest input pixel, for all 17 joints, ×2 bins."""

        def forward(self, x):
            red = x[:, 0] - x[:, 1]                            # normalised R − G: high on pure red
            cols = red.amax(dim=1).repeat_interleave(2, dim=-1)
            rows = red.amax(dim=2).repeat_interleave(2, dim=-1)
            return cols[:, None].expand(-1, 17, -1), rows[:, None].expand(-1, 17, -1)

    tmp = tmp_path_factory.mktemp("onnx")
    det, pose = tmp / "det.onnx", tmp / "pose.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                        # legacy-exporter deprecation notes
        torch.onnx.export(Detector(), torch.zeros(1, 3, 640, 640), str(det), dynamo=False,
                          input_names=["input"], output_names=["dets", "labels"], opset_version=17)
        torch.onnx.export(RedPointer(), torch.zeros(1, 3, 256, 192), str(pose), dynamo=False,
                          input_names=["input"], output_names=["simcc_x", "simcc_y"], opset_version=17)
    return str(det), str(pose)


@pytest.mark.parametrize("dot", [(70, 150), (200, 440)])
def test_rtmpose_onnx_contract(onnx_pair: tuple[str, str], dot: tuple[int, int]) -> None:
    det, pose = onnx_pair
    # 320×480 photo → letterbox ratio 4/3 into 640×640: the person box becomes (30, 60, 150, 420);
    # the pose crop is that box × 1.25 at 3:4, x −78.75..258.75, y 15..465. A 5×5 red dot inside
    # the box, and one below it that only the padded crop sees.
    rgb = np.full((480, 320, 3), 200, np.uint8)
    rgb[dot[1] - 2:dot[1] + 3, dot[0] - 2:dot[0] + 3] = (255, 0, 0)
    cfg = PoseConfig(backend="rtmpose", detector=det, model=pose, device="cpu", min_confidence=0.3)
    with PoseEstimator(cfg) as est:
        assert est.provenance.startswith("rtmpose-onnx@")
        persons = est.estimate(rgb)
    assert len(persons) == 1                                   # not-person and low-score boxes dropped
    p = persons[0]
    np.testing.assert_allclose(p.bbox, (30, 60, 150, 420), atol=0.5)
    assert p.score == pytest.approx(0.9)
    present = p.keypoints[:, 2] > 0
    assert present.sum() == 19                                 # 17 body joints + Neck + MidHip
    assert not present[19:].any()
    # One input pixel is 450/256 ≈ 1.76 photo pixels: the dot comes back within about one of them.
    np.testing.assert_allclose(p.keypoints[present, :2], np.tile(dot, (19, 1)), atol=2.5)


def test_rtmpose_needs_cuda_when_asked(onnx_pair: tuple[str, str], tmp_path: Path) -> None:
    import onnxruntime as ort

    det, pose = onnx_pair
    cfg = PoseConfig(backend="rtmpose", detector=det, model=pose, device="cuda")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        PoseEstimator(cfg).close()
    else:
        with pytest.raises(RuntimeError, match="cuda"):
            PoseEstimator(cfg)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        PoseEstimator(PoseConfig(backend="rtmpose", detector=str(tmp_path / "missing.onnx"), model=pose))


def test_yolox_raw_decoding_and_nms() -> None:
    hw = (64, 64)                                              # anchors: 8×8 + 4×4 + 2×2 = 84
    raw = np.zeros((84, 7), np.float32)
    raw[:, 4] = 0.0
    i = 3 * 8 + 5                                              # stride 8, grid (x=5, y=3)
    raw[i] = (0.5, 0.5, np.log(2.0), np.log(4.0), 0.9, 0.8, 0.1)   # centre (44, 28), 16×32 px
    boxes, scores = decode_yolox(raw, hw)
    np.testing.assert_allclose(boxes[i], (36, 12, 52, 44), atol=1e-4)
    assert scores[i] == pytest.approx(0.72) and scores.argmax() == i
    with pytest.raises(ValueError, match="anchors"):
        decode_yolox(raw[:80], hw)
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    assert nms(b, np.array([0.5, 0.9, 0.7])) == [1, 2]


@pytest.mark.parametrize("below", [0.6, 0.4])
def test_blazepose_hips_on_photos_cut_above_the_knee(blazepose: PoseEstimator, vitonhd_root: Path,
                                                     dresscode_root: Path, below: float) -> None:
    """Model photos cut between the hips and the knees (``below`` torso lengths under the hips):
    the hips stay where the datasets' OpenPose puts them (bench/eval_pose_cuts.py measures more
    cuts; a photo padded at its cut edge instead moved the hips by about 0.08·H)."""
    errors, dys = [], []
    for sid, rgb, ref in _samples(vitonhd_root, dresscode_root):
        mid_hip, neck = ref[[9, 12], :2].mean(0), ref[[2, 5], :2].mean(0)
        bottom = int(round(mid_hip[1] + below * np.linalg.norm(mid_hip - neck)))
        cut = np.ascontiguousarray(rgb[:bottom])
        persons = blazepose.estimate(cut)
        assert len(persons) == 1, sid
        for j in (9, 12):
            p = persons[0].keypoints[j]
            assert p[2] > 0, (sid, j)
            errors.append(float(np.hypot(*(p[:2] - ref[j, :2]))) / cut.shape[0])
            dys.append(float(p[1] - ref[j, 1]) / cut.shape[0])
    errors_a = np.asarray(errors)
    assert len(errors) == 26
    assert np.median(errors_a) < 0.035 and errors_a.max() < 0.1, np.round(errors_a, 3)
    assert (errors_a < 0.05).mean() >= 0.8, np.round(errors_a, 3)
    assert abs(np.mean(dys)) < 0.02, np.round(dys, 3)      # no systematic shift up or down
