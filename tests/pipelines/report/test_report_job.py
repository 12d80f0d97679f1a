"""gpvton report: files, statistics, exit codes, escaping, pagination, thumbnails, S3."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gpvton_synthetic_job import Pair, mixed_pairs, write_job  # noqa: E402

from pipelines.cli import main  # noqa: E402

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def mixed_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    info = write_job(str(root / "job"), str(root / "shards"), mixed_pairs(30))
    return root / "job", info


def _report(job: Path, *extra: str) -> tuple[int, Path]:
    rc = main(["report", "--job", str(job), *extra])
    return rc, job / "report"


def test_report_files_statistics_and_exit_code(mixed_job):
    job, info = mixed_job
    rc, rep = _report(job, "--page-size", "8")
    assert rc == 1  # 8 fail+error of 30 > the job's max_failed_fraction 0.05
    for name in ("index.html", "summary.json", "pairs.csv", "config.json", "hist/warp_miou.png",
                 "hist/preserve_ssim.png", "pages/v0/p00000.js", "pages/v0/p00003.js"):
        assert (rep / name).is_file(), name
    s = json.loads((rep / "summary.json").read_text())
    assert s["success"] is False
    assert s["counts"] == {"error": 4, "fail": 4, "warn": 5, "ok": 17}
    assert s["failed_fraction"] == pytest.approx(8 / 30)
    assert s["fail_limit"] == 0.05 and s["fail_limit_source"] == "job config max_failed_fraction"
    assert s["categories"]["upper"]["total"] == 15 and s["categories"]["lower"]["total"] == 15
    vals = [r["scores"]["warp_miou"] for r in [{"scores": p.scores} for p in mixed_pairs(30)]
            if "warp_miou" in r["scores"]]
    st = s["scores"]["warp_miou"]
    assert st["count"] == 26 and st["mean"] == pytest.approx(sum(vals) / len(vals))
    assert st["p5"] <= st["p50"] <= st["p95"] and st["min"] == pytest.approx(min(vals))
    assert s["scores"]["ssim"] == {"count": 0}
    assert s["thresholds"]["warp_miou"] == {"warn": 0.5, "fail": 0.25}
    assert s["job"]["model_note"].startswith("randomly initialised")
    assert s["render"]["pairs_per_second"] == 2.5
    with Image.open(rep / "hist/warp_miou.png") as im:
        assert im.size == (420, 260)

    rc, _ = _report(job, "--page-size", "8", "--fail-limit", "0.3")
    assert rc == 0
    assert json.loads((rep / "summary.json").read_text())["success"] is True


def test_report_is_worst_first_and_csv_complete(mixed_job):
    job, _ = mixed_job
    _report(job, "--page-size", "8", "--fail-limit", "1")
    rows = list(csv.DictReader(io.StringIO((job / "report/pairs.csv").read_text())))
    assert len(rows) == 30
    order = {"error": 0, "fail": 1, "warn": 2, "ok": 3}
    ranks = [order[r["flag"]] for r in rows]
    assert ranks == sorted(ranks)
    from gpvton_synthetic_job import THRESHOLDS
    from pipelines.report.job import severity

    for flag in ("fail", "warn", "ok"):  # within a flag: smallest threshold margin first
        margins = [severity({k: float(v) for k, v in r.items() if k in THRESHOLDS and v}, THRESHOLDS)
                   for r in rows if r["flag"] == flag]
        assert margins == sorted(margins) and len(set(margins)) > 1
    assert [int(r["rank"]) for r in rows] == list(range(1, 31))
    err = next(r for r in rows if r["flag"] == "error")
    assert "out of memory" in err["error"] and err["output_key"] == ""


def test_ids_and_messages_are_escaped(mixed_job):
    job, _ = mixed_job
    _report(job, "--page-size", "40", "--fail-limit", "1")
    html = (job / "report/index.html").read_text()
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>boom</b>" not in html and "&lt;b&gt;boom&lt;/b&gt;" in html
    # only the page's own two scripts (the JSON data block and the viewer)
    assert len(re.findall(r"<script", html)) == 2
    pages = "".join(p.read_text() for p in (job / "report/pages").rglob("*.js"))
    assert HOSTILE not in pages and "<\\/script>" in pages


def test_page_does_not_embed_all_rows(tmp_path):
    pairs = [Pair(f"P{i % 5}", f"G{i:04d}", "upper" if i % 3 else "dresses", "ok",
                  {"warp_miou": 0.9}) for i in range(250)]
    write_job(str(tmp_path / "job"), str(tmp_path / "shards"), pairs, unit_size=64)
    rc, rep = _report(tmp_path / "job", "--page-size", "20")
    assert rc == 0
    html = (rep / "index.html").read_text()
    assert html.count('class="tile ') == 20
    assert "G0249" not in html or html.count("G02") < 30  # later pages are not inline
    views = json.loads(re.search(r'id="gpvton-views">(.*?)</script>', html, re.S).group(1))
    v0 = views["views"][0]
    assert v0["count"] == 250 and v0["pages"] == 13
    assert len(list((rep / "pages" / "v0").glob("p*.js"))) == 13
    by = {(v["flag"], v["category"]): v for v in views["views"]}
    assert by[(None, "dresses")]["count"] == 84 and by[("ok", "upper")]["count"] == 166
    assert ("fail", None) not in by  # empty views are not written


def test_thumbnails_are_small_made_once_and_relative(mixed_job):
    job, _ = mixed_job
    shutil_rm(job / "report")
    _report(job, "--page-size", "8", "--fail-limit", "1")
    rep = job / "report"
    thumbs = sorted((rep / "thumbs").rglob("*.jpg"))
    # 26 try-ons (4 errors have none) + 7 persons (6 + the hostile id) + 30 garments
    assert len(thumbs) == 26 + 7 + 30
    for t in thumbs[:5]:
        with Image.open(t) as im:
            assert im.height <= 160 and im.format == "JPEG"
    mtimes = {t: t.stat().st_mtime_ns for t in thumbs}
    s = json.loads((rep / "summary.json").read_text())
    assert s["thumbnails"]["made"] == {"person": 7, "garment": 30, "tryon": 26}
    _report(job, "--page-size", "8", "--fail-limit", "1")
    s = json.loads((rep / "summary.json").read_text())
    assert s["thumbnails"]["made"] == {"person": 0, "garment": 0, "tryon": 0}
    assert all(t.stat().st_mtime_ns == m for t, m in mtimes.items())
    html = (rep / "index.html").read_text()
    for link in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not link.startswith(("/", "file:", "http:", "https:", "s3:")), link
    page = (rep / "pages/v0/p00000.js").read_text()
    assert '"tt":"thumbs/tryon/' in page and '"o":"../renders/' in page


def shutil_rm(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def test_missing_pairs_and_shards_are_reported(tmp_path):
    pairs = [Pair(f"P{i}", f"G{i}", "upper", "ok", {"warp_miou": 0.9}) for i in range(10)]
    write_job(str(tmp_path / "job"), str(tmp_path / "shards"), pairs, planned_extra=2,
              max_failed_fraction=None)
    shutil_rm(tmp_path / "shards")  # moved away: the report still builds, without those thumbnails
    rc, rep = _report(tmp_path / "job", "--out", str(tmp_path / "elsewhere"))
    s = json.loads((tmp_path / "elsewhere/summary.json").read_text())
    assert rc == 1 and s["missing"] == 2 and s["failed_fraction"] == pytest.approx(2 / 12)
    assert s["fail_limit_source"] == "default" and s["fail_limit"] == 0.05
    assert s["thumbnails"]["made"]["tryon"] == 10 and s["thumbnails"]["made"]["person"] == 0
    page = (tmp_path / "elsewhere/pages/v0/p00000.js").read_text()
    assert '"o":null' in page  # no link to renders from outside the job folder
    assert not (rep).exists()


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["report", "--job", str(tmp_path / "nothing")]) == 2
    assert "job.json not found" in capsys.readouterr().err
    pairs = [Pair("P0", "G0", "upper", "ok", {"warp_miou": 0.9})]
    write_job(str(tmp_path / "job"), str(tmp_path / "shards"), pairs)
    assert main(["report", "--job", str(tmp_path / "job"), "--page-size", "0"]) == 2
    assert main(["report", "--job", str(tmp_path / "job"), "--fail-limit", "1.5"]) == 2


def test_csv_neutralises_formulas(tmp_path):
    pairs = [Pair("=HYPERLINK(\"x\")", "G0", "upper", "ok", {"warp_miou": 0.9})]
    write_job(str(tmp_path / "job"), str(tmp_path / "shards"), pairs)
    _report(tmp_path / "job")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "job/report/pairs.csv").read_text())))
    assert rows[0]["person_id"] == "'=HYPERLINK(\"x\")"


def test_report_over_s3(local_s3, monkeypatch):
    for k, v in local_s3.env().items():
        monkeypatch.setenv(k, v)
    job_url, shards_url = local_s3.url("report-test/job"), local_s3.url("report-test/shards")
    write_job(job_url, shards_url, mixed_pairs(12, hostile_id=None))
    assert main(["report", "--job", job_url, "--page-size", "5", "--fail-limit", "1"]) == 0
    from infra.storage import Storage

    rep = Storage(job_url + "/report")
    keys = rep.list()
    assert "index.html" in keys and "summary.json" in keys and "pages/v0/p00002.js" in keys
    assert sum(k.startswith("thumbs/tryon/") for k in keys) == 12 - 12 // 7 - (1 if 12 % 7 > 3 else 0)
    assert rep.read_json("summary.json")["scored"] == 12
