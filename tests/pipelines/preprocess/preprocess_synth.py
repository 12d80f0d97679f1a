"""Helpers for the preprocess tests: synthetic catalogues written to tmp folders (no licensed data)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 1024, 768


def synthetic_person(seed: int = 0) -> dict:
    """A frontal synthetic person: RGB image, LIP parsing, BODY_25 OpenPose JSON, DensePose index."""
    rng = np.random.default_rng(seed)
    img = np.full((H, W, 3), 235, np.uint8)
    lip = np.zeros((H, W), np.uint8)
    dpi = np.zeros((H, W), np.uint8)
    lip[60:200, 300:470] = 13            # face
    lip[200:250, 340:430] = 10           # neck
    lip[250:650, 250:520] = 5            # upper clothes, torso
    lip[250:420, 520:580] = 5            # left sleeve (image right)
    lip[250:420, 190:250] = 5
    lip[420:700, 530:580] = 14           # left arm (image right)
    lip[420:700, 190:240] = 15
    lip[650:1000, 260:380] = 9           # pants
    lip[650:1000, 390:510] = 9
    colours = {13: (220, 180, 160), 10: (215, 175, 155), 5: (40, 80, 160), 14: (210, 170, 150),
               15: (210, 170, 150), 9: (30, 30, 40)}
    for lab, c in colours.items():
        img[lip == lab] = c
    img = np.clip(img.astype(int) + rng.integers(-5, 6, img.shape), 0, 255).astype(np.uint8)
    dpi[lip == 5] = 2
    dpi[lip == 13] = 23
    dpi[lip == 14] = 20
    dpi[lip == 15] = 21
    dpi[lip == 9] = 9
    k = np.zeros((25, 3), np.float32)
    k[0] = (385, 140, 0.9)
    k[1] = (385, 260, 0.9)
    k[2], k[5] = (270, 270, 0.9), (500, 270, 0.9)
    k[3], k[6] = (215, 450, 0.9), (555, 450, 0.9)
    k[4], k[7] = (215, 640, 0.9), (555, 640, 0.9)
    k[8] = (385, 640, 0.9)
    k[9], k[12] = (320, 640, 0.9), (450, 640, 0.9)
    k[10], k[13] = (320, 820, 0.9), (450, 820, 0.9)
    openpose = {"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": k.reshape(-1).tolist()}]}
    return {"image": img, "lip": lip, "densepose": dpi, "openpose": openpose}


def synthetic_garment(category: str = "upper") -> np.ndarray:
    img = np.full((H, W, 3), 250, np.uint8)
    if category == "lower":
        img[100:450, 200:568] = (40, 40, 90)
        img[450:950, 200:370] = (40, 40, 90)
        img[450:950, 398:568] = (40, 40, 90)
    else:
        img[120:900, 230:538] = (150, 30, 30)
        img[130:400, 110:230] = (150, 30, 30)
        img[130:400, 538:658] = (150, 30, 30)
        img[300:400, 330:430] = 255     # white print
    return img


def png(a: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def jpg(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb's signature)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write_good_manifest(root: Path, n_persons: int = 2) -> dict:
    """A small valid manifest catalogue (CSV) with relative URLs; returns expected counts."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "img").mkdir(exist_ok=True)
    (root / "ann").mkdir(exist_ok=True)
    rows_g = ["garment_id,image,category"]
    for i, cat in enumerate(("upper", "lower")):
        (root / "img" / f"g{i}.jpg").write_bytes(jpg(synthetic_garment(cat)))
        rows_g.append(f"g{i},img/g{i}.jpg,{cat}")
    rows_p = ["person_id,image,categories,keypoints,lip_parsing,densepose,worn_garment_id"]
    for i in range(n_persons):
        p = synthetic_person(i)
        (root / "img" / f"p{i}.jpg").write_bytes(jpg(p["image"]))
        (root / "ann" / f"p{i}.json").write_text(json.dumps(p["openpose"]))
        (root / "ann" / f"p{i}_lip.png").write_bytes(png(p["lip"]))
        (root / "ann" / f"p{i}_dp.png").write_bytes(png(p["densepose"]))
        rows_p.append(f"p{i},img/p{i}.jpg,upper;lower,ann/p{i}.json,ann/p{i}_lip.png,ann/p{i}_dp.png,g0")
    (root / "garments.csv").write_text("\n".join(rows_g) + "\n")
    (root / "persons.csv").write_text("\n".join(rows_p) + "\n")
    return {"persons": n_persons, "garments": 2}
