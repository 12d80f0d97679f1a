"""Real data end to end: VITON-HD samples → `gpvton preprocess` (Beam) → render on Ray (paired scores)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from infra.storage import Storage
from pipelines.render import RenderConfig, run_job


def test_paired_render_on_preprocessed_vitonhd(ray_local, vitonhd_shards, tmp_path):
    job = tmp_path / "job"
    cfg = RenderConfig(shards=str(vitonhd_shards), output=str(job), runner="ray", pairing="paired",
                       persons={"include": ["00006_00", "00008_00"]}, model={"width": 0.0625},
                       unit_size=1, batch_size=1, actors=2, num_cpus=0.5, progress=False, random_weights=True,
                       output_format={"format": "png", "debug": True})
    res = run_job(cfg)
    assert res.exit_code == 0
    st = Storage(str(job))
    assert st.read_json("job.json")["variant"] == "vitonhd"
    scores = pa.concat_tables([pq.read_table(io.BytesIO(st.read_bytes(k))) for k in st.list("scores", ".parquet")])
    rows = sorted(scores.to_pylist(), key=lambda r: r["person_id"])
    assert [(r["person_id"], r["garment_id"]) for r in rows] == [("00006_00", "00006_00"), ("00008_00", "00008_00")]
    for r in rows:
        assert r["paired"] and r["flag"] in ("ok", "warn", "fail")
        for k in ("warp_miou", "preserve_ssim", "ssim", "parse_miou"):
            assert r[k] is not None and (-1.0 if "ssim" in k else 0.0) <= r[k] <= 1.0, (k, r[k])
        assert st.exists(r["output_key"]) and r["output_key"].endswith(".png")
        assert st.exists(r["output_key"].replace("renders/", "debug/").replace(".png", ".label.png"))
