"""gpvton eval over a synthetic render job: known answers, weights handling, usage errors."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpvton_synthetic_job import Pair, parsing, render_label, write_job  # noqa: E402

from gpvton_core.metrics.lpips import LPIPS  # noqa: E402
from gpvton_core.metrics.set_metrics import ssim_images  # noqa: E402
from pipelines.cli import main  # noqa: E402


def _pairs() -> list[Pair]:
    out = []
    for i in range(6):  # paired: each person wears its own garment
        out.append(Pair(f"P{i}", f"G{i}", "upper" if i < 4 else "lower", "ok", {"ssim": 0.9}, paired=True))
    for i in range(6):  # unpaired: someone else's garment
        out.append(Pair(f"P{i}", f"G{(i + 1) % 6}", "upper" if (i + 1) % 6 < 4 else "lower", "ok", {}))
    out.append(Pair("P1", "G9", "upper", "error", {}, error="boom"))
    out.append(Pair("P2", "G2x", "upper", "error", {}, error="boom", paired=True))
    return out


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    info = write_job(str(root / "job"), str(root / "shards"), _pairs())
    return root, info


def _read(path) -> dict:
    return json.loads(path.read_text())


def test_paired_ssim_and_miou_known_answers(job):
    root, info = job
    assert main(["eval", "--job", str(root / "job"), "--metrics", "ssim,miou", "--batch-size", "4"]) == 0
    m = _read(root / "job/eval/metrics.json")
    assert (root / "job/eval/config.json").is_file()
    assert m["reference"] == "paired"
    assert m["pairs"]["evaluated"] == 6 and m["pairs"]["skipped_error_rows"] == 1

    # SSIM: the mean over pairs of our protocol, recomputed here from the files
    expect = []
    for r in info["rows"]:
        if r["paired"] and r["flag"] != "error":
            fake = np.asarray(Image.open(root / "job" / r["output_key"]).convert("RGB"), np.float64) / 255
            real = np.asarray(Image.open(io.BytesIO(_person_png(info, r["person_id"]))).convert("RGB"),
                              np.float64) / 255
            t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
            expect.append(float(ssim_images(t(fake), t(real))[0]))
    assert m["metrics"]["ssim"]["value"] == pytest.approx(np.mean(expect), abs=1e-6)
    assert 0.3 < m["metrics"]["ssim"]["value"] < 1.0

    # mIoU: per-class intersections / unions summed over the six pairs, background left out
    from gpvton_core.inputs import person_targets

    inter, union = np.zeros(10), np.zeros(10)
    for r in info["rows"]:
        if r["paired"] and r["flag"] != "error":
            i = info["person_index"][r["person_id"]]
            pred = render_label(i, r["category"])
            target = person_targets(parsing(i), "vitonhd", r["category"]).numpy()
            for c in range(10):
                inter[c] += np.sum((pred == c) & (target == c))
                union[c] += np.sum((pred == c) | (target == c))
    present = [c for c in range(1, 10) if union[c] > 0]
    miou = m["metrics"]["miou"]
    assert miou["value"] == pytest.approx(np.mean([inter[c] / union[c] for c in present]))
    assert sorted(int(c) for c in miou["per_class"]) == present
    assert m["protocol"]["ssim"]["precision"] == "float64"

    # per category, from the same per-pair values
    by = m["by_category"]
    assert by["upper"]["ssim"]["n"] == 4 and by["lower"]["ssim"]["n"] == 2
    overall = (4 * by["upper"]["ssim"]["value"] + 2 * by["lower"]["ssim"]["value"]) / 6
    assert overall == pytest.approx(m["metrics"]["ssim"]["value"])
    assert by["upper"]["miou"]["n"] == 4 and 0 < by["lower"]["miou"]["value"] <= 1


def _person_png(info, pid: str) -> bytes:
    import pyarrow.parquet as pq

    t = pq.read_table(io.BytesIO(info["shards"].read_bytes("persons/part-00000.parquet")))
    return dict(zip(t.column("person_id").to_pylist(), t.column("image_png").to_pylist()))[pid]


def test_missing_weights_name_the_flag(job, capsys, tmp_path):
    root, _ = job
    assert main(["eval", "--job", str(root / "job"), "--metrics", "ssim,fid"]) == 2
    err = capsys.readouterr().err
    assert "--inception-weights" in err and "pt_inception-2015-12-05-6726825d.pth" in err
    assert main(["eval", "--job", str(root / "job"), "--metrics", "lpips"]) == 2
    err = capsys.readouterr().err
    assert "--lpips-weights" in err and "alexnet-owt-7be5be79.pth" in err and "alex.pth" in err
    assert main(["eval", "--job", str(root / "job"), "--reference", "unpaired",
                 "--inception-weights", str(tmp_path / "nope.pth")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["eval", "--job", str(root / "job"), "--metrics", "lpips",
                 "--lpips-weights", str(tmp_path)]) == 2
    assert "lacks alexnet-owt-7be5be79.pth, alex.pth" in capsys.readouterr().err


def test_usage_errors(job, capsys, tmp_path):
    root, _ = job
    assert main(["eval", "--job", str(root / "job"), "--reference", "unpaired", "--metrics", "ssim"]) == 2
    assert "only apply to --reference paired" in capsys.readouterr().err
    assert main(["eval", "--job", str(root / "job"), "--metrics", "psnr"]) == 2
    assert main(["eval", "--job", str(tmp_path / "none")]) == 2
    only_unpaired = tmp_path / "u"
    write_job(str(only_unpaired / "job"), str(only_unpaired / "shards"), [Pair("P0", "G1", "upper")])
    assert main(["eval", "--job", str(only_unpaired / "job"), "--metrics", "ssim"]) == 2
    assert "try --reference unpaired" in capsys.readouterr().err


def test_lpips_with_weight_files(job, tmp_path):
    root, _ = job
    torch.manual_seed(0)
    ref = LPIPS("alex")
    torch.save({k: torch.randn(v.shape) * 0.05 for k, v in ref.trunk_state_dict().items()},
               tmp_path / "alexnet-owt-7be5be79.pth")
    torch.save({k: torch.rand(v.shape) for k, v in ref.lin_state_dict().items()}, tmp_path / "alex.pth")
    out = tmp_path / "out"
    assert main(["eval", "--job", str(root / "job"), "--metrics", "lpips", "--lpips-weights", str(tmp_path),
                 "--out", str(out)]) == 0
    m = _read(out / "metrics.json")
    assert m["metrics"]["lpips"]["value"] > 0 and m["metrics"]["lpips"]["n"] == 6
    assert m["weights"]["lpips"]["net"] == "alex"
    assert len(m["weights"]["lpips"]["files"][0]["sha256"]) == 64


class _Tiny(nn.Module):
    num_features = 6

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 5, stride=2)
        self.seen: list[tuple] = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        return torch.tanh(self.conv(x.float())).mean(dim=(2, 3))


@pytest.mark.parametrize("reference,n_real,n_fake", [("paired", 6, 6), ("unpaired", 6, 6)])
def test_fid_kid_sets(job, monkeypatch, reference, n_real, n_fake):
    """Which images form the real and the try-on sets (the extractor is swapped for a small one;
    the Inception itself is tested in tests/gpvton_core/metrics)."""
    root, _ = job
    import pipelines.evaluate.job as ev

    tiny = _Tiny()
    monkeypatch.setattr(ev, "load_extractors", lambda cfg, metrics: (tiny, None, {"inception": "test"}))
    out = root / f"eval-{reference}"
    assert main(["eval", "--job", str(root / "job"), "--reference", reference, "--metrics", "fid,kid",
                 "--kid-subset-size", "4", "--kid-subsets", "3", "--out", str(out)]) == 0
    m = _read(out / "metrics.json")
    assert m["metrics"]["fid"]["n_real"] == n_real and m["metrics"]["fid"]["n_fake"] == n_fake
    assert m["metrics"]["fid"]["value"] > 0
    assert m["metrics"]["kid"]["subset_size"] == 4 and np.isfinite(m["metrics"]["kid"]["value"])
    assert m["pairs"]["skipped_error_rows"] == 1


FID_NAME = "pt_inception-2015-12-05-6726825d.pth"


def test_weights_from_s3_give_the_same_metrics(job, local_s3, monkeypatch, tmp_path):
    """--inception-weights / --lpips-weights as s3:// URLs on the S3 server (a file, and a folder of the
    two LPIPS files) go through infra.models: fetched once into the sha256-keyed cache, they give the
    same metrics as the local files. The Inception is swapped for a small extractor that checks it
    was handed the user's bytes (the network itself is tested in tests/gpvton_core/metrics)."""
    import gpvton_core.metrics.inception as fid
    from infra.models import sha256_file
    from infra.storage import filesystem

    root, _ = job
    for k, v in local_s3.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("GPVTON_MODEL_CACHE", str(tmp_path / "cache"))
    lpips_dir, inception = tmp_path / "lpips", tmp_path / FID_NAME
    lpips_dir.mkdir()
    torch.manual_seed(0)
    ref = LPIPS("alex")
    torch.save({k: torch.randn(v.shape) * 0.05 for k, v in ref.trunk_state_dict().items()},
               lpips_dir / "alexnet-owt-7be5be79.pth")
    torch.save({k: torch.rand(v.shape) for k, v in ref.lin_state_dict().items()}, lpips_dir / "alex.pth")
    torch.save({"stand-in": torch.arange(8.0)}, inception)
    handed: list[bytes] = []

    def small_inception(path):
        handed.append(Path(path).read_bytes())
        return _Tiny()

    monkeypatch.setattr(fid, "load_fid_inception", small_inception)
    fs = filesystem(local_s3.url(), local_s3.settings)
    for f in (lpips_dir / "alexnet-owt-7be5be79.pth", lpips_dir / "alex.pth", inception):
        fs.put(str(f), f"{local_s3.bucket}/weights/{f.relative_to(tmp_path).as_posix()}")
    urls = {"local": (str(inception), str(lpips_dir)),
            "s3": (local_s3.url(f"weights/{FID_NAME}"), local_s3.url("weights/lpips"))}
    got = {}
    for where, (inception_url, lpips_url) in urls.items():
        out = tmp_path / f"eval-{where}"
        assert main(["eval", "--job", str(root / "job"), "--metrics", "ssim,lpips,fid,kid",
                     "--inception-weights", inception_url, "--lpips-weights", lpips_url,
                     "--kid-subset-size", "4", "--kid-subsets", "3", "--out", str(out)]) == 0
        got[where] = _read(out / "metrics.json")
    local, s3 = got["local"], got["s3"]
    assert local["metrics"]["lpips"]["n"] == 6 and local["metrics"]["fid"]["value"] > 0
    assert s3["metrics"] == local["metrics"] and s3["by_category"] == local["by_category"]
    assert handed == [inception.read_bytes()] * 2
    digest = sha256_file(inception)
    assert s3["weights"]["inception"] == {"path": urls["s3"][0], "sha256": digest}
    assert (tmp_path / "cache" / digest / FID_NAME).is_file()
    assert [f["sha256"] for f in s3["weights"]["lpips"]["files"]] == [
        f["sha256"] for f in local["weights"]["lpips"]["files"]] == [
        sha256_file(lpips_dir / "alexnet-owt-7be5be79.pth"), sha256_file(lpips_dir / "alex.pth")]
    assert main(["eval", "--job", str(root / "job"), "--metrics", "lpips",
                 "--lpips-weights", local_s3.url("weights/none")]) == 2


def test_eval_over_s3(local_s3, monkeypatch):
    for k, v in local_s3.env().items():
        monkeypatch.setenv(k, v)
    job_url, shards_url = local_s3.url("eval-test/job"), local_s3.url("eval-test/shards")
    write_job(job_url, shards_url, _pairs()[:4])
    assert main(["eval", "--job", job_url, "--metrics", "ssim,miou"]) == 0
    from infra.storage import Storage

    m = Storage(job_url).read_json("eval/metrics.json")
    assert m["pairs"]["evaluated"] == 4 and m["metrics"]["ssim"]["value"] > 0.3
    assert m["metrics"]["miou"]["value"] > 0.5


def test_eval_reads_the_catalogue_index_not_the_work_area(tmp_path):
    """After a second night (one pair re-rendered, one retired) eval covers the catalogue: the index's
    current renders, with the work area (unit score files, the plan) gone."""
    import shutil

    job, shards = tmp_path / "job", tmp_path / "shards"
    write_job(str(job), str(shards), _pairs())
    night2 = write_job(str(job), str(shards), [Pair("P0", "G0", "upper", "ok", {"ssim": 0.9}, paired=True)],
                       retired=[("P1", "G1")])
    shutil.rmtree(job / "scores")
    shutil.rmtree(job / "plan")
    assert main(["eval", "--job", str(job), "--metrics", "ssim"]) == 0
    m = _read(job / "eval/metrics.json")
    assert m["pairs"]["evaluated"] == 5 and m["pairs"]["score_rows"] == 13
    # the re-rendered pair is read at its new version: remove it and eval says so
    new_key = night2["rows"][0]["output_key"]
    (job / new_key).unlink()
    assert main(["eval", "--job", str(job), "--metrics", "ssim"]) == 0
    m = _read(job / "eval/metrics.json")
    assert m["pairs"]["missing_renders"] == 1 and m["pairs"]["missing_render_examples"] == [new_key]
