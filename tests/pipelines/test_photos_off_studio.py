"""Bare photos that are not studio shots at 3:4: a landscape photo with a small person that
preprocessing must crop and pad (the delivered image goes back into that photo where the frame
box says), and a person before a busy background (parsing and DensePose stay on the person).

The people are the procedural catalogue's (pipelines/synthetic/), pasted into larger scenes;
pose comes from the bundled BlazePose, the parsing from a tiny exported parser that — like a
parser meeting photos unlike its training data — also labels dark background pixels."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).parent / "preprocess"))
from shard_rows import decode_person_row  # noqa: E402

from pipelines.cli import main  # noqa: E402
from pipelines.preprocess.beam_pipeline import read_table  # noqa: E402

pytestmark = pytest.mark.slow


def _parser(path: Path) -> Path:
    """gp29 parser ONNX + parser.json: dark pixels → upper clothes (5), bright → background."""
    import torch

    class Dark(torch.nn.Module):
        def forward(self, x):
            dark = 8.0 * (0.45 - x.mean(dim=1, keepdim=True))
            return torch.nn.functional.one_hot(torch.tensor(5), 29).view(1, 29, 1, 1).float() * dark

    torch.onnx.export(Dark(), torch.zeros(1, 3, 64, 48), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    path.with_suffix(".json").write_text(json.dumps({"classes": "gp29", "input_size": [64, 48],
                                                    "channel_order": "rgb", "mean": [0, 0, 0], "std": [1, 1, 1]}))
    return path


def _scene(cat: Path, pid: str, hw: tuple[int, int], at: tuple[int, int], person_h: int,
           background: np.ndarray) -> np.ndarray:
    """The catalogue person ``pid`` (its parsing as the cut-out) scaled to ``person_h`` px, pasted at ``at``."""
    img = Image.open(cat / "persons" / f"{pid}.png").convert("RGB")
    mask = Image.fromarray(((np.asarray(Image.open(cat / "persons" / f"{pid}_parsing.png")) > 0) * 255).astype(np.uint8))
    w = round(img.width * person_h / img.height)
    img, mask = img.resize((w, person_h), Image.BICUBIC), mask.resize((w, person_h), Image.BILINEAR)
    out = Image.fromarray(background.copy())
    out.paste(img, at, mask)
    return np.asarray(out)


def _busy(hw: tuple[int, int]) -> np.ndarray:
    """Leaves and logos: dark blobs and letters-like bars on a light background."""
    rng = np.random.default_rng(3)
    h, w = hw
    bg = np.full((h, w, 3), 225, np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(40):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(8, 24)
        bg[(yy - cy) ** 2 + ((xx - cx) * 1.6) ** 2 < r * r] = (20, 70, 25)       # leaves
    for _ in range(12):
        y, x = rng.integers(0, h - 12), rng.integers(0, w - 60)
        bg[y:y + 10, x:x + 50] = (30, 30, 30)                                       # logo bars
    return bg


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Preprocessed photos (one Beam run at 256×192): a landscape scene and a busy-background one."""
    from pipelines.synthetic.catalogue import make_catalogue

    root = tmp_path_factory.mktemp("off-studio")
    cat = root / "cat"
    make_catalogue(cat, n_garments=9, n_persons=3, height=512, width=384, seed=0)
    meta = json.loads((cat / "meta.json").read_text()) if (cat / "meta.json").exists() else None
    photos = root / "photos"
    photos.mkdir()
    land = _scene(cat, "p0000", (300, 800), (560, 10), 280, np.full((300, 800, 3), 200, np.uint8))
    Image.fromarray(land).save(photos / "landscape.png")
    busy_bg = _busy((512, 512))
    Image.fromarray(busy_bg).save(photos / "busy_bg.png")
    busy = _scene(cat, "p0000", (512, 512), (140, 40), 440, busy_bg)
    Image.fromarray(busy).save(photos / "busy.png")
    # a landscape photo with given keypoints and parsing: kept whole, centre-cropped to 3:4 by the fit
    pad = np.full((512, 208, 3), 200, np.uint8)
    person = np.asarray(Image.open(cat / "persons" / "p0001.png").convert("RGB"))
    Image.fromarray(np.concatenate([pad, person, pad], 1)).save(photos / "given.png")
    lab = np.asarray(Image.open(cat / "persons" / "p0001_parsing.png"))
    Image.fromarray(np.pad(lab, ((0, 0), (208, 208)))).save(photos / "given_parsing.png")
    kp = json.loads((cat / "persons" / "p0001_keypoints.json").read_text())
    flat = kp["people"][0]["pose_keypoints_2d"]
    for i in range(0, len(flat), 3):
        if flat[i + 2] > 0:
            flat[i] += 208
    (photos / "given_keypoints.json").write_text(json.dumps(kp))
    rows = ["image,kind,category,categories,id,keypoints,parsing", "landscape.png,model,,upper,landscape,,",
            "busy.png,model,,upper,busy,,", "given.png,model,,upper,given,given_keypoints.json,given_parsing.png"]
    for gid in ("g0002", "g0007"):
        Image.open(cat / "garments" / f"{gid}.png").convert("RGB").save(photos / f"{gid}.png")
        rows.append(f"{gid}.png,garment,upper,,{gid},,")
    (photos / "photos.csv").write_text("\n".join(rows) + "\n")
    parser = _parser(root / "parser.onnx")
    shards = root / "shards"
    assert main(["preprocess", "--input", f"photos:{photos / 'photos.csv'}", "--parser", str(parser),
                 "--output", str(shards), "--resolution", "256", "--set", "framing.person_margin=0.2"]) == 0
    persons = {r["person_id"]: r for r in read_table(str(shards), "persons").to_pylist()}
    garments = read_table(str(shards), "garments").to_pylist()
    assert set(persons) == {"landscape", "busy", "given"} and len(garments) == 2, read_table(str(shards), "errors").to_pylist()
    return {"root": root, "photos": photos, "shards": shards, "persons": persons, "busy_bg": busy_bg, "meta": meta}


def _render(shards: Path, job: Path, frame: str) -> list[dict]:
    from pipelines.render import RenderConfig, run_job

    res = run_job(RenderConfig(shards=str(shards), output=str(job), runner="local", categories=["upper"],
                               model={"variant": "vitonhd", "width": 0.0625}, random_weights=True,
                               persons={"include": ["landscape", "given"]}, progress=False, composite="paste-back",
                               output_format={"format": "png", "frame": frame}))
    assert res.exit_code == 0
    return pq.read_table(sorted(job.glob("scores/unit-*.parquet"))[0]).to_pylist()


def test_original_frame_of_a_cropped_and_padded_photo(scenes, tmp_path):
    """`landscape` was framed around its small person: cropped at the sides and padded above and
    below (the person nearly fills its height: the frame with its 20 % margin does not fit); `given` came with
    its keypoints and parsing and was centre-cropped to 3:4. The delivered image has the photo's
    size, equals the photo outside the frame box, and inside it carries the try-on where the box says."""
    from gpvton_core.composite import place_in_photo

    boxes = {}
    for pid in ("landscape", "given"):
        row = scenes["persons"][pid]
        photo = np.asarray(Image.open(scenes["photos"] / f"{pid}.png").convert("RGB"))
        assert (row["photo_height"], row["photo_width"]) == photo.shape[:2]
        boxes[pid] = row["frame_box"]
        assert boxes[pid] is not None and abs((boxes[pid][2] - boxes[pid][0]) / (boxes[pid][3] - boxes[pid][1]) - 0.75) < 0.01
    x0, y0, x1, y1 = boxes["landscape"]
    assert x0 > 0 and x1 < 800 and y0 < 0 and y1 > 300, boxes    # cropped sideways, padded above and below
    assert boxes["given"] == [208, 0, 592, 512], boxes              # the centre crop
    orig = _render(scenes["shards"], tmp_path / "orig", "original")
    work = _render(scenes["shards"], tmp_path / "work", "working")
    assert sorted(r["person_id"] for r in orig) == sorted(r["person_id"] for r in work) and len(orig) == 4
    for r, w in zip(sorted(orig, key=lambda r: r["output_key"]), sorted(work, key=lambda r: r["output_key"])):
        pid = r["person_id"]
        photo = np.asarray(Image.open(scenes["photos"] / f"{pid}.png").convert("RGB"))
        x0, y0, x1, y1 = box = boxes[pid]
        out = np.asarray(Image.open(tmp_path / "orig" / r["output_key"]).convert("RGB"))
        tryon = np.asarray(Image.open(tmp_path / "work" / w["output_key"]).convert("RGB"))
        assert out.shape == photo.shape
        outside = np.ones(photo.shape[:2], bool)
        outside[max(0, y0):min(photo.shape[0], y1), max(0, x0):min(photo.shape[1], x1)] = False
        assert np.array_equal(out[outside], photo[outside])    # the photo's own pixels outside the box
        changed = np.abs(out.astype(int) - photo).max(-1) > 0
        assert changed.sum() > 500                                  # the try-on is there ...
        placed = place_in_photo(tryon, photo, box).astype(int)      # ... where the box says
        misplaced = place_in_photo(tryon, photo, None).astype(int)  # (the whole photo as the frame)
        err = np.abs(out.astype(int) - placed)[changed].mean()
        assert err < 4.0 and np.abs(out.astype(int) - misplaced)[changed].mean() > 4 * err, (pid, err)


def test_parsing_and_densepose_stay_on_the_person_before_a_busy_background(scenes):
    """The parser labels dark leaves and logos as clothes; preprocessing keeps only what lies on
    the person mask, for the parsing and the DensePose approximation alike, and records per row
    how much it cut (the fraction of labelled pixels outside the mask)."""
    from gpvton_core.conditions import framing as fr
    from gpvton_core.conditions import resize as rs

    row = scenes["persons"]["busy"]
    prov = json.loads(row["provenance"])
    assert prov["parsing"].startswith("estimated:onnx-parser:gp29@") and prov["densepose"] == "estimated:mask+skeleton"
    cut = prov["outside_person_mask"]
    assert cut["parsing"] > 0.05, cut                  # the background the parser labelled was cut ...
    assert 0.0 <= cut["densepose"] < 0.02, cut           # ... so DensePose, built on it, had nothing to cut
    photo = np.asarray(Image.open(scenes["photos"] / "busy.png").convert("RGB"))
    background = np.all(photo == scenes["busy_bg"], axis=-1)   # where the pasted person is not
    box = fr.CropBox(*row["frame_box"]) if row["frame_box"] else fr.whole(photo.shape[:2])
    H, W = row["height"], row["width"]
    bg = rs.resize_labels(fr.crop_labels(background.astype(np.uint8), box, fill=1), (H, W), mode="crop") > 0
    person = (~bg).astype(np.uint8) * 255
    near = np.asarray(Image.fromarray(person).filter(ImageFilter.MaxFilter(7))) > 0      # 3 px
    around = np.asarray(Image.fromarray(person).filter(ImageFilter.MaxFilter(51))) > 0   # 25 px (≈10 % of H)
    p = decode_person_row(row)
    for name in ("parsing", "densepose"):
        labelled = p[name] > 0
        assert labelled.sum() > 500, name
        # nothing on the background away from the person; next to it, only what the person
        # segmenter itself took for the person (it bleeds onto leaves touching the body)
        assert not (labelled & ~around).any(), name
        assert (labelled & ~near).sum() / labelled.sum() < 0.08, name


def test_user_densepose_and_matting_models_in_a_preprocess_run(scenes, tmp_path):
    """`--densepose-model` (TorchScript) and `--garment-matting` (ONNX), tiny models exported here
    under the contracts of pipelines/preprocess/estimators/, drive a real preprocess run."""
    import torch

    class Columns(torch.nn.Module):
        """Part index 1..24 by column band (N×H×W int64): the contract's index output."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = x.shape[3]
            idx = 1 + torch.arange(w, device=x.device) * 24 // w
            return idx.view(1, 1, w).expand(x.shape[0], x.shape[2], w) + (x[:, 0] * 0).long()

    class RedIsGarment(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 8.0 * (x[:, 0:1] - x[:, 1:2])

    dp_model = tmp_path / "dp.pt"
    torch.jit.script(Columns()).save(str(dp_model))
    matting = tmp_path / "sal.onnx"
    torch.onnx.export(RedIsGarment(), torch.zeros(1, 3, 64, 64), str(matting), input_names=["image"],
                      output_names=["saliency"], dynamo=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "landscape.png").write_bytes((scenes["photos"] / "landscape.png").read_bytes())
    rng = np.random.default_rng(0)
    shot = np.zeros((400, 300, 3), np.uint8)
    shot[..., 1], shot[..., 2] = rng.integers(120, 255, (400, 300)), rng.integers(0, 255, (400, 300))
    shot[60:340, 50:250] = (230, 20, 30)                  # a red garment on a busy green background
    Image.fromarray(shot).save(photos / "red.png")
    (photos / "photos.csv").write_text("image,kind,category,categories,id\nlandscape.png,model,,upper,landscape\n"
                                       "red.png,garment,upper,,red\n")
    shards = tmp_path / "shards"
    assert main(["preprocess", "--input", f"photos:{photos / 'photos.csv'}", "--output", str(shards),
                 "--resolution", "256", "--parser", str(scenes["root"] / "parser.onnx"),
                 "--densepose-model", str(dp_model), "--garment-matting", str(matting),
                 "--set", "garment_matting.input_size=[64,64]", "--set", "garment_matting.mean=[0,0,0]",
                 "--set", "garment_matting.std=[1,1,1]", "--set", "garment_matting.activation=sigmoid",
                 "--set", "garment_matting.normalize=none"]) == 0
    person = read_table(str(shards), "persons").to_pylist()
    garment = read_table(str(shards), "garments").to_pylist()
    assert len(person) == 1 and len(garment) == 1, read_table(str(shards), "errors").to_pylist()
    prov = json.loads(person[0]["provenance"])
    assert prov["densepose"].startswith("estimated:model:torchscript-densepose@"), prov
    assert prov["models"]["densepose"].startswith("torchscript-densepose@")
    assert prov["outside_person_mask"]["densepose"] > 0.5          # the model labels every pixel; kept on the person
    dpi = decode_person_row(person[0])["densepose"]
    on = dpi > 0
    assert on.any() and set(np.unique(dpi[on])) <= set(range(1, 25))
    gprov = json.loads(garment[0]["provenance"])
    assert gprov["mask"].startswith("estimated:onnx-matting@"), gprov
    mask = np.asarray(Image.open(io.BytesIO(garment[0]["mask_png"]))) > 0
    assert 0.3 < mask.mean() < 0.9
