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
    from pipelines.report.ordering import severity

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
    _report(job, "--page-size", "8", "--fail-limit", "1")     # 3 pages of 8 with thumbnails (+ fail/error)
    rep = job / "report"
    thumbs = sorted((rep / "thumbs").rglob("*.jpg"))
    # the worst 24 rows: 20 try-ons (4 errors have none), their 6 persons (the hostile id's one row is an
    # ok row after rank 24) and 24 garments
    assert len(thumbs) == 20 + 6 + 24
    for t in thumbs[:5]:
        with Image.open(t) as im:
            assert im.height <= 160 and im.format == "JPEG"
    mtimes = {t: t.stat().st_mtime_ns for t in thumbs}
    s = json.loads((rep / "summary.json").read_text())
    assert s["thumbnails"]["made"] == {"person": 6, "garment": 24, "tryon": 20}
    _report(job, "--page-size", "8", "--fail-limit", "1")
    s = json.loads((rep / "summary.json").read_text())
    assert s["thumbnails"]["made"] == {"person": 0, "garment": 0, "tryon": 0}
    assert all(t.stat().st_mtime_ns == m for t, m in mtimes.items())
    html = (rep / "index.html").read_text()
    for link in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not link.startswith(("/", "file:", "http:", "https:", "s3:")), link
    page = (rep / "pages/v0/p00000.js").read_text()
    assert '"tt":"thumbs/tryon/' in page and '"o":"../renders/' in page


def _page_rows(rep: Path, view: str = "v0") -> list[dict]:
    rows = []
    for p in sorted((rep / "pages" / view).glob("p*.js")):
        rows += json.loads(re.search(r"gpvtonPage\(\"v\d+\",\d+,(.*)\);", p.read_text(), re.S).group(1))
    return rows


def test_thumbnails_only_for_the_worst_pages_and_failures(tmp_path):
    pairs = mixed_pairs(30, hostile_id=None)
    write_job(str(tmp_path / "job"), str(tmp_path / "shards"), pairs)
    rc, rep = _report(tmp_path / "job", "--page-size", "3", "--thumb-pages", "2", "--fail-limit", "1")
    rows = _page_rows(rep)
    assert len(rows) == 30
    with_thumbs = {r["n"] for r in rows if r["th"]}
    expect = {r["n"] for r in rows if r["n"] <= 6 or r["f"] in ("fail", "error")}
    assert with_thumbs == expect and len(expect) == 8      # 4 errors + 4 fails (ranks 1..8) ⊇ the first 6
    for r in rows:
        if r["th"]:
            assert r["tp"] and r["tg"] and (r["tt"] is None) == (r["f"] == "error")
        else:   # no thumbnail, a link to the render instead
            assert r["tp"] is r["tg"] is r["tt"] is None and r["o"].startswith("../renders/")
    tryons = {p.relative_to(rep).as_posix() for p in (rep / "thumbs" / "tryon").rglob("*.jpg")}
    assert tryons == {r["tt"] for r in rows if r["tt"]} and len(tryons) == 4
    html = (rep / "index.html").read_text()
    assert html.count('class="tile flag-') == 3 and "nothumb" not in html.split('id="gallery"')[1][:200]
    assert 'class="tile flag-ok nothumb"' not in html                     # first page: all with thumbnails
    rc, rep = _report(tmp_path / "job", "--page-size", "3", "--thumb-pages", "0", "--fail-limit", "1")
    rows = _page_rows(rep)
    assert {r["n"] for r in rows if r["th"]} == {r["n"] for r in rows if r["f"] in ("fail", "error")}
    # the ok rows' try-on thumbnails of the previous report are gone (no row uses them)
    assert {p.relative_to(rep).as_posix() for p in (rep / "thumbs" / "tryon").rglob("*.jpg")} == \
        {r["tt"] for r in rows if r["tt"]}


def _mtimes(rep: Path) -> dict[str, int]:
    skip = {"index.html", "summary.json", "config.json", "files.json", "thumbs/stamp.json"}
    return {p.relative_to(rep).as_posix(): p.stat().st_mtime_ns for p in rep.rglob("*")
            if p.is_file() and p.relative_to(rep).as_posix() not in skip}


def test_rerun_without_changes_rewrites_no_page_and_no_thumbnail(tmp_path):
    write_job(str(tmp_path / "job"), str(tmp_path / "shards"), mixed_pairs(30))
    for scope in ([], ["--all"]):
        _report(tmp_path / "job", "--page-size", "4", "--fail-limit", "1", *scope)
        rep = tmp_path / "job" / "report" / ("all" if scope else "")
        before = _mtimes(rep)
        assert any(k.startswith("pages/") for k in before) and any(k.startswith("thumbs/") for k in before)
        _report(tmp_path / "job", "--page-size", "4", "--fail-limit", "1", *scope)
        s = json.loads((rep / "summary.json").read_text())
        assert s["files"]["written"] == 0 and s["files"]["deleted"] == 0 and s["thumbnails"]["made"] == \
            {"person": 0, "garment": 0, "tryon": 0}
        assert _mtimes(rep) == before
    # a larger page size: fewer pages; those beyond the new count are deleted, the rest rewritten
    _report(tmp_path / "job", "--page-size", "10", "--fail-limit", "1")
    assert sorted(p.name for p in (tmp_path / "job/report/pages/v0").glob("*.js")) == \
        ["p00000.js", "p00001.js", "p00002.js"]


def _night_two(job: Path, shards: Path) -> dict:
    """Night 2 over the mixed job: 3 pairs re-rendered (one now fails), 2 added (ok), 2 retired."""
    night1 = mixed_pairs(30)
    ok = {"warp_miou": 0.95, "preserve_ssim": 0.95}
    assert night1[3].flag == "error" and night1[7].flag == "ok"
    updated = [Pair(night1[3].person, night1[3].garment, night1[3].category, "ok", ok),   # was an error
               Pair(night1[7].person, night1[7].garment, night1[7].category, "fail", {"warp_miou": 0.1},
                    reason="warp_miou=0.1<x"),                                           # was ok
               Pair(night1[8].person, night1[8].garment, night1[8].category, "ok", ok)]
    added = [Pair("P100", "UG100", "upper", "ok", ok), Pair("P101", "LG101", "lower", "ok", ok)]
    retired = [(night1[2].person, night1[2].garment), (night1[4].person, night1[4].garment)]
    return write_job(str(job), str(shards), updated + added, retired=retired)


def test_night_two_reports_only_its_changes_and_all_the_catalogue(tmp_path):
    job, shards = tmp_path / "job", tmp_path / "shards"
    write_job(str(job), str(shards), mixed_pairs(30))
    assert _report(job, "--page-size", "4")[0] == 1                         # night 1: 8 of 30 failed
    night1_thumbs = {p.relative_to(job / "report").as_posix() for p in (job / "report/thumbs").rglob("*.jpg")}
    info = _night_two(job, shards)
    rc, rep = _report(job, "--page-size", "4")
    s = json.loads((rep / "summary.json").read_text())
    assert rc == 1 and s["scope"] == "changes" and s["run_id"] == info["run_id"]   # 1 of 5 failed > 0.05
    assert s["changes"] == {"added": 2, "updated": 3, "retired": 2}
    assert s["pairs"] == 5 and s["counts"] == {"ok": 4, "warn": 0, "fail": 1, "error": 0}
    assert s["failed_fraction"] == pytest.approx(1 / 5)
    rows = list(csv.DictReader(io.StringIO((rep / "pairs.csv").read_text())))
    assert sorted((r["person_id"], r["garment_id"], r["change"]) for r in rows) == sorted(
        [(p, g, "updated") for p, g in (("P003", "LG003"), ("P001", "LG007"), ("P002", "UG008"))]
        + [("P100", "UG100", "added"), ("P101", "LG101", "added")])
    assert rows[0]["flag"] == "fail" and rows[0]["paired"] == "False" and rows[0]["seconds"] == "0.5"
    # the render's summary.json and the report agree on the catalogue
    job_summary = json.loads((job / "summary.json").read_text())
    for k in ("pairs", "scored", "missing", "counts", "unrendered", "failed", "failed_fraction"):
        assert s["catalogue"][k] == job_summary[k], k
    assert s["catalogue"]["pairs"] == 30 and s["catalogue"]["counts"]["error"] == 3
    # retired pairs: counted, listed, in retired.csv, never in the gallery
    retired = list(csv.DictReader(io.StringIO((rep / "retired.csv").read_text())))
    assert sorted((r["person_id"], r["garment_id"]) for r in retired) == [("P002", "UG002"), ("P004", "UG004")]
    assert all(r["output_key"].startswith("renders/upper/") for r in retired if r["flag"] != "error")
    html = (rep / "index.html").read_text()
    assert 'id="retired"' in html and "UG004" in html.split('id="retired"')[1]
    assert {r["g"] for r in _page_rows(rep)} == {"LG003", "LG007", "UG008", "UG100", "LG101"}
    # thumbnails: tonight's versions only (the updated pairs' new renders), night 1's are gone
    tonight = {p.relative_to(rep).as_posix() for p in (rep / "thumbs/tryon").rglob("*.jpg")}
    assert len(tonight) == 5 and not (tonight & night1_thumbs)
    assert all(any(f"-{r['output_key'].rsplit('-', 1)[1].split('.')[0]}." in t for t in tonight)
               for r in rows)

    # --all: the catalogue (30 - 2 retired + 2 added), gated as a whole, in report/all
    rc, _ = _report(job, "--page-size", "4", "--all")
    s_all = json.loads((job / "report/all/summary.json").read_text())
    assert rc == 1 and s_all["scope"] == "all" and s_all["changes"] is None
    assert {k: s_all[k] for k in ("pairs", "counts", "failed")} == \
        {k: job_summary[k] for k in ("pairs", "counts", "failed")}
    assert len(list(csv.DictReader(io.StringIO((job / "report/all/pairs.csv").read_text())))) == 30
    # the nightly report links to the catalogue report once it exists
    _report(job, "--page-size", "4")
    assert 'href="all/index.html"' in (rep / "index.html").read_text()


def test_the_gate_judges_the_scope(tmp_path):
    """Tonight's changes all pass: the nightly report passes while the catalogue (8/30 failed) does not."""
    job, shards = tmp_path / "job", tmp_path / "shards"
    write_job(str(job), str(shards), mixed_pairs(30))
    write_job(str(job), str(shards), [Pair("P200", "UG200", "upper", "ok", {"warp_miou": 0.9})])
    assert main(["report", "--job", str(job)]) == 0
    assert main(["report", "--job", str(job), "--all"]) == 1
    # a night without changes: an empty scope passes
    write_job(str(job), str(shards), [])
    assert main(["report", "--job", str(job)]) == 0
    s = json.loads((job / "report/summary.json").read_text())
    assert s["pairs"] == 0 and s["scored"] == 0 and s["catalogue"]["pairs"] == 31


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
    assert s["catalogue"]["missing"] == 2
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
