"""The published dataset layouts: VITON-HD (also HR-VITON) and Dress Code."""

from __future__ import annotations

from infra.storage import S3Settings, join

from .common import InputFolder, ReaderError, file_stem, images_by_stem, read_pairs

DRESSCODE_CATEGORIES = {"upper_body": "upper", "lower_body": "lower", "dresses": "dresses"}


def read_vitonhd(root: str, s3: S3Settings | None = None, source: str = "vitonhd") -> list[dict]:
    """VITON-HD / HR-VITON: ``<root>/{train,test}/image|cloth|...`` (all upper-body); a person wears
    the garment its ``{split}_pairs_paired.txt`` line names, else the garment with its own id."""
    folder = InputFolder(root, s3)
    splits = [s for s in ("train", "test") if folder.isdir(join(folder.root, s, "image"))]
    if not splits:
        raise ReaderError(f"vitonhd: no {root}/train/image or {root}/test/image folder")
    items: list[dict] = []
    for split in splits:
        base = join(folder.root, split)
        persons = images_by_stem(folder.ls_files(join(base, "image")))
        cloths = images_by_stem(folder.ls_files(join(base, "cloth")))
        cmasks = images_by_stem(folder.ls_files(join(base, "cloth-mask")))
        lip = images_by_stem(folder.ls_files(join(base, "image-parse-v3")))
        gp = images_by_stem(folder.ls_files(join(base, "parse-bytedance")))
        gp.update({k: v for k, v in images_by_stem(folder.ls_files(join(base, "parse-bytedance_512"))).items()
                   if k not in gp})
        dp_grey = images_by_stem(folder.ls_files(join(base, "densepose")))
        dp_rgb = images_by_stem(folder.ls_files(join(base, "image-densepose")))
        poses = {n[: -len("_keypoints.json")]: u for n, u in folder.ls_files(join(base, "openpose_json")).items()
                 if n.endswith("_keypoints.json")}
        worn = {p: g for p, g in read_pairs(folder, join(folder.root, f"{split}_pairs_paired.txt"))}
        for gid, url in cloths.items():
            items.append({"kind": "garment", "id": gid, "source": source, "source_uri": url,
                          "image": url, "category": "upper", "mask": cmasks.get(gid), "parts": None})
        for pid, url in persons.items():
            wid = worn.get(pid, pid if pid in cloths else None)
            wg = None
            if wid is not None and wid in cloths:
                wg = {"image": cloths[wid], "mask": cmasks.get(wid), "category": "upper"}
            items.append({
                "kind": "person", "id": pid, "source": source, "source_uri": url, "image": url,
                "categories": ["upper"], "keypoints": poses.get(pid), "keypoints_format": "openpose",
                "keypoints_ref_hw": None, "parsing": gp.get(pid), "lip_parsing": lip.get(pid),
                "atr_parsing": None, "densepose": dp_grey.get(pid), "densepose_rendered": dp_rgb.get(pid),
                "worn_garment_id": wid if wg else None, "worn_garment": wg,
            })
    return items


def read_dresscode(root: str, s3: S3Settings | None = None, source: str = "dresscode") -> list[dict]:
    """Dress Code: ``<root>/<category folder>/images/ID_0.jpg`` (person) and ``ID_1.jpg`` (garment)
    with annotations named ``ID_<n>``; a person wears its paired garment, else ``ID_1``."""
    folder = InputFolder(root, s3)
    items: list[dict] = []
    found = False
    for subfolder, category in DRESSCODE_CATEGORIES.items():
        base = join(folder.root, subfolder)
        imgs = images_by_stem(folder.ls_files(join(base, "images")))
        if not imgs:
            continue
        found = True
        kps = {n[: -len("_2.json")]: u for n, u in folder.ls_files(join(base, "keypoints")).items()
               if n.endswith("_2.json")}
        labels = {file_stem(n)[: -2]: u for n, u in folder.ls_files(join(base, "label_maps")).items()
                  if n.endswith("_4.png")}
        dense = {file_stem(n)[: -2]: u for n, u in folder.ls_files(join(base, "dense")).items()
                 if n.endswith("_5.png")}
        dense_rgb = {file_stem(n)[: -2]: u for n, u in folder.ls_files(join(base, "image-densepose")).items()
                     if file_stem(n).endswith("_0")}
        gp = images_by_stem(folder.ls_files(join(base, "parse-bytedance")))
        worn: dict[str, str] = {}
        for name in sorted(folder.ls_files(base)):
            if name.endswith(".txt") and "pairs" in name and "unpaired" not in name:
                worn.update(read_pairs(folder, join(base, name)))
        for stem, url in imgs.items():
            if stem.endswith("_1"):
                items.append({"kind": "garment", "id": stem, "source": source, "source_uri": url,
                              "image": url, "category": category, "mask": None, "parts": None})
        for stem, url in imgs.items():
            if not stem.endswith("_0"):
                continue
            base_id = stem[:-2]
            wid = worn.get(stem, f"{base_id}_1")
            wg = {"image": imgs[wid], "mask": None, "category": category} if wid in imgs else None
            items.append({
                "kind": "person", "id": stem, "source": source, "source_uri": url, "image": url,
                "categories": [category], "keypoints": kps.get(base_id), "keypoints_format": "coco18",
                "keypoints_ref_hw": [512, 384], "parsing": gp.get(stem), "lip_parsing": None,
                "atr_parsing": labels.get(base_id), "densepose": dense.get(base_id),
                "densepose_rendered": dense_rgb.get(base_id),
                "worn_garment_id": wid if wg else None, "worn_garment": wg,
            })
    if not found:
        raise ReaderError(f"dresscode: no {root}/<upper_body|lower_body|dresses>/images folder")
    return items
