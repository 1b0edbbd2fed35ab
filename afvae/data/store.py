"""A prepared folder's images as one uint8 file on disk, read item by item: memory holds a batch, not a split.

``OUT/cache/images-{S}px-{key}.u8`` holds every image of ``landmarks.csv`` in its row order, (N, S, S, 3) uint8,
with ``key`` the SHA-1 of ``landmarks.csv`` (a re-prepared folder gets a new file; stale ones are removed).
``afvae.data.real.prepare`` writes it at the crop size as it writes the PNGs; any other size (or a folder
written before, or by ``write_folder``) is decoded and resized once, on first use. Reading takes ``os.pread`` per
item, so the OS page cache, shared by every process and DDP rank, is the only copy, and nothing grows with the
dataset. A folder that cannot hold the file (read-only) is decoded PNG by PNG instead (``PngImages``).
"""
from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def table_key(root: str | Path) -> str:
    """The SHA-1 (12 hex digits) of a folder's landmarks.csv: which images, in which order."""
    return hashlib.sha1((Path(root) / "landmarks.csv").read_bytes()).hexdigest()[:12]


def store_path(root: str | Path, size: int, key: str) -> Path:
    return Path(root) / "cache" / f"images-{size}px-{key}.u8"


def _as_rows(idx: Tensor | Sequence[int] | int) -> np.ndarray:
    return np.atleast_1d(np.asarray(torch.as_tensor(idx, dtype=torch.int64)))


class ImageStore:
    """Images ``rows`` of a store file: ``store[idx]`` -> (B, 3, S, S) uint8 tensor read from disk.

    rows: (N,) positions in the file of this split's items, in the split's order. Picklable (DataLoader
    workers reopen the file).
    """

    def __init__(self, path: str | Path, size: int, rows: np.ndarray):
        self.path, self.size, self.rows = Path(path), size, np.asarray(rows, np.int64)
        self.item_bytes = size * size * 3
        self._fd: int | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.rows), 3, self.size, self.size)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: Tensor | Sequence[int] | int) -> Tensor:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        rows = self.rows[_as_rows(idx)]
        out = np.empty((len(rows), self.size, self.size, 3), np.uint8)  # (B, S, S, 3) as stored
        for i, r in enumerate(rows):
            data = os.pread(self._fd, self.item_bytes, int(r) * self.item_bytes)
            if len(data) != self.item_bytes:
                raise OSError(f"{self.path}: item {r} is cut short; delete the file to rebuild it")
            out[i] = np.frombuffer(data, np.uint8).reshape(self.size, self.size, 3)
        return torch.from_numpy(out).permute(0, 3, 1, 2)  # (B, 3, S, S)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)


def read_png(root: Path, file: str, size: int) -> np.ndarray:
    """One folder image as (size, size, 3) uint8 RGB, bicubic-resized when stored at another size."""
    im = Image.open(root / file).convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.BICUBIC)
    return np.asarray(im)


class PngImages(ImageStore):
    """The same interface, decoding each requested PNG (for folders where no store file can be written)."""

    def __init__(self, root: str | Path, files: Sequence[str], size: int):
        super().__init__(Path(root), size, np.arange(len(files)))
        self.files = list(files)

    def __getitem__(self, idx: Tensor | Sequence[int] | int) -> Tensor:
        images = np.stack([read_png(self.path, self.files[int(i)], self.size) for i in _as_rows(idx)])
        return torch.from_numpy(images).permute(0, 3, 1, 2)


def build_store(root: str | Path, files: Sequence[str], size: int, key: str, progress: bool | None = None) -> Path:
    """Decode every PNG of ``files`` (all of landmarks.csv, in order) at ``size`` into the store file, written
    under a temporary name and renamed; earlier stores of this size are removed."""
    root = Path(root)
    path = store_path(root, size, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    show = len(files) > 2000 if progress is None else progress
    try:
        with open(tmp, "wb") as f:
            for file in tqdm(files, desc=f"image store {size}px", unit="img", disable=not show):
                f.write(read_png(root, file, size).tobytes())
        install_store(tmp, root, size, key)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("image store: %d images at %d px -> %s", len(files), size, path)
    return path


def install_store(raw: str | Path, root: str | Path, size: int, key: str) -> Path:
    """Rename a complete raw (N, S, S, 3) uint8 file into place as ``root``'s store for ``key``; earlier stores of
    this size are removed."""
    path = store_path(root, size, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(raw, path)
    for stale in path.parent.glob(f"images-{size}px-*.u8"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return path


def open_images(root: str | Path, files: Sequence[str], rows: np.ndarray, size: int) -> ImageStore:
    """The images ``rows`` of a folder at ``size``: from its store file (built on first use), or, when the
    folder is read-only, decoded PNG by PNG. ``files``: every file of landmarks.csv, in order."""
    key = table_key(root)
    path = store_path(root, size, key)
    if not path.exists():
        try:
            build_store(root, files, size, key)
        except OSError as e:
            log.warning("%s: cannot write an image store (%s); decoding each image as it is read", root, e)
            return PngImages(root, [files[int(r)] for r in rows], size)
    return ImageStore(path, size, rows)
