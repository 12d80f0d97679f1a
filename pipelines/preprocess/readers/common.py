"""Plumbing every reader shares: the input folder on fsspec, file listings, pair lists, categories."""

from __future__ import annotations

import posixpath
from typing import Any

from infra.storage import S3Settings, filesystem, protocol

CATEGORY_ALIASES = {"upper": "upper", "upper_body": "upper", "top": "upper", "tops": "upper",
                    "lower": "lower", "lower_body": "lower", "bottom": "lower", "bottoms": "lower",
                    "dresses": "dresses", "dress": "dresses"}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class ReaderError(ValueError):
    """The input cannot be read at all (missing root, no items): a configuration problem."""


def normalize_category(value: Any) -> str | None:
    """Canonical category for an alias, or None when unknown."""
    if value is None:
        return None
    return CATEGORY_ALIASES.get(str(value).strip().lower())


class InputFolder:
    """The root folder of one input on any fsspec filesystem (local or ``s3://``): lists and reads
    files and hands back URLs in the form the items carry (bare paths for local files)."""

    def __init__(self, root: str, s3: S3Settings | None):
        self.root = root.rstrip("/")
        self.fs = filesystem(root, s3)
        self.proto = protocol(root)

    def url(self, path: str) -> str:
        p = path.split("://", 1)[-1]
        if self.proto == "file":
            return p
        return f"{self.proto}://{p}"

    def _fs_path(self, url: str) -> str:
        return url[len("file://"):] if url.startswith("file://") else url

    def ls_files(self, url: str) -> dict[str, str]:
        """name → URL of the files directly under ``url`` (empty when the folder is absent)."""
        try:
            entries = self.fs.ls(self._fs_path(url), detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        out = {}
        for e in entries:
            if e.get("type") == "file":
                name = posixpath.basename(e["name"].rstrip("/"))
                out[name] = self.url(e["name"])
        return out

    def ls_dirs(self, url: str) -> list[str]:
        """Names of the folders directly under ``url`` (sorted; empty when absent)."""
        try:
            entries = self.fs.ls(self._fs_path(url), detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(posixpath.basename(e["name"].rstrip("/")) for e in entries if e.get("type") == "directory")

    def isdir(self, url: str) -> bool:
        try:
            return bool(self.fs.isdir(self._fs_path(url)))
        except FileNotFoundError:
            return False

    def read_text(self, url: str) -> str:
        with self.fs.open(self._fs_path(url), "rb") as fh:
            return fh.read().decode("utf-8")

    def read_bytes(self, url: str) -> bytes:
        with self.fs.open(self._fs_path(url), "rb") as fh:
            return fh.read()


def file_stem(name: str) -> str:
    """File name without its extension (the id of most dataset files)."""
    return name.rsplit(".", 1)[0]


def images_by_stem(files: dict[str, str]) -> dict[str, str]:
    """stem → URL of the image files among ``files`` (name → URL), sorted by name."""
    return {file_stem(n): u for n, u in sorted(files.items()) if n.lower().endswith(IMAGE_EXTS)}


def read_pairs(folder: InputFolder, url: str) -> list[tuple[str, str]]:
    """(person stem, garment stem) per line of a pair list; empty when the file is absent."""
    try:
        text = folder.read_text(url)
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out.append((file_stem(parts[0]), file_stem(parts[1])))
    return out
