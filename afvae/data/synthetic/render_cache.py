"""A disk cache of rendered image sets, so that the processes of one ``make paper`` render each set once.

Every notebook runs in a fresh kernel and every training worker in a fresh process, and each rendered the same
faces again (the 7,200 training faces take over a minute at one thread). ``afvae.pipeline`` points
``$AFVAE_RENDER_CACHE`` at ``results/cache/renders`` while it runs; without the variable nothing is cached on disk.

An entry is keyed by what decides its pixels: the subject, the size, the batch size, the sampled factors
(their values, not their seed) and a digest of the renderer's source files and the torch version. A change of
the renderer's code is a new key, never a stale image. Entries are ``safetensors`` files (uint8 images, float32
keypoints) written atomically; an unreadable one is rendered again.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from afvae.atomic import atomic_path

if TYPE_CHECKING:
    from torch import Tensor

    from afvae.data.synthetic.sampling import Factors

log = logging.getLogger(__name__)

ENV = "AFVAE_RENDER_CACHE"  # the cache folder; unset: no disk cache
MAX_BYTES = 1 << 30  # larger sets (e.g. 256 px) are rendered each time rather than written
_PACKAGE = Path(__file__).resolve().parents[2]  # afvae/
# The code a render runs: the synthetic package, the uint8 conversion, the keypoint schemas.
_SOURCES = ("data/synthetic/*.py", "images.py", "boundaries.py")


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 over the renderer's source files and the torch version."""
    import torch

    h = hashlib.sha256(torch.__version__.encode())
    for pattern in _SOURCES:
        for path in sorted(_PACKAGE.glob(pattern)):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def entry(subject: str, size: int, batch_size: int, appearance: Factors, structure: Factors) -> Path | None:
    """The cache file of a render (appearance of A, structure of N), or None when no cache is set or the set is
    too large to keep; the factors are read (``to_vector``) only when there is a cache."""
    folder = os.environ.get(ENV)
    if not folder or len(structure) * 3 * size * size > MAX_BYTES:
        return None
    h = hashlib.sha256(f"{subject}|{size}|{batch_size}|{code_digest()}|".encode())
    for factors in (appearance, structure):
        v = factors.to_vector().detach().float().contiguous().cpu()  # (A, Fa) or (N, Fs)
        h.update(str(tuple(v.shape)).encode() + v.numpy().tobytes())
    return Path(folder) / f"{subject}-{size}px-{len(structure)}-{h.hexdigest()[:20]}.safetensors"


def read(path: Path | None) -> tuple[Tensor, Tensor] | None:
    """(images (N, 3, S, S) uint8, keypoints (N, P, 2)) of a cache entry, or None when it is absent or unreadable."""
    if path is None or not path.is_file():
        return None
    from safetensors.torch import load_file

    try:
        t = load_file(path)
        return t["images"], t["keypoints"]
    except Exception as e:  # a torn or foreign file: render again, and overwrite it
        log.warning("%s: unreadable render cache entry (%s); rendering again", path, e)
        return None


def write(path: Path | None, images: Tensor, keypoints: Tensor) -> None:
    """Store a render (atomically; nothing when ``path`` is None)."""
    if path is None:
        return
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({"images": images.contiguous(), "keypoints": keypoints.contiguous()}, str(tmp))
