"""Contact sheet of derived garment parts for the sample garments (visual QA).

    python bench/contact_sheet.py [--shared ../shared/data] [--out /tmp/gpvton_garment_parts.png]

Each tile: the garment at 512×384 and the same garment with its derived part map overlaid
(red = wearer's left = image right, green = middle/torso, blue = wearer's right; grey = outside
the mask). The sheet shows licensed images: write it outside the repository (default /tmp) and do
not commit it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

COLOURS = np.array([[96, 96, 96], [230, 40, 40], [40, 200, 60], [40, 80, 230]], np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("GPVTON_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--out", default="/tmp/gpvton_garment_parts.png")
    ap.add_argument("--columns", type=int, default=4)
    args = ap.parse_args(argv)

    from pipelines.preprocess.garment_derivation import derive_garment_arrays
    from pipelines.preprocess.readers import read_inputs

    shared = Path(args.shared)
    items = [i for i in read_inputs([("vitonhd", str(shared / "vitonhd")), ("dresscode", str(shared / "dresscode"))])
             if i["kind"] == "garment"]

    def read(url: str) -> bytes:
        with open(url, "rb") as fh:
            return fh.read()

    tiles = []
    for it in items:
        g = derive_garment_arrays(it, read, 512)
        img, parts = g["image"], g["parts"]
        overlay = (0.45 * img + 0.55 * COLOURS[parts]).astype(np.uint8)
        overlay[parts == 0] = (0.5 * img[parts == 0] + 0.5 * 96).astype(np.uint8)
        tile = Image.fromarray(np.concatenate([img, overlay], axis=1))
        ImageDraw.Draw(tile).text((6, 6), f"{it['id']} ({g['category']}, mask {g['provenance']['mask']})", fill=(0, 0, 0))
        tiles.append(tile.resize((384, 256)))
    cols = args.columns
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * 384, rows * 256), (0, 0, 0))
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * 384, (i // cols) * 256))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"contact sheet: {len(tiles)} garments → {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
