"""Atomic file writes: write a hidden temporary sibling, then rename it onto the target.

The rename is atomic on POSIX, so a crash leaves the previous file (or none), never a torn one; the file is
synced before the rename and its folder after, so a power loss cannot leave the new name on unwritten data.
Imports nothing from afvae: every module that writes results, checkpoints or figures goes through here.
"""
from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` when the block succeeds.

    The temporary has a unique name, so concurrent writers never share one, and keeps the suffix
    (``.a.1f2e3d4c.tmp.png`` for ``a.png``) so writers that infer the format from the name (matplotlib, PIL)
    still work; it is removed if the block fails. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        durable_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def durable_replace(src: str | Path, dst: str | Path) -> None:
    """Rename the complete file ``src`` onto ``dst``: ``src`` is synced to disk first, the folder after."""
    with open(src, "rb") as f:
        os.fsync(f.fileno())
    os.replace(src, dst)
    folder = os.open(Path(dst).parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` to ``path``; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def replace_dir(new: str | Path, target: str | Path) -> Path:
    """Move the complete folder ``new`` onto ``target`` (same file system): the old ``target`` is renamed aside
    first and deleted after, so a crash leaves one whole folder (or an aside copy to recover), never a mix."""
    new, target = Path(new), Path(target)
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target
