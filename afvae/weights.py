"""Pretrained-weight files: explicit path -> environment variable -> torch hub cache -> download.

No package ships VGG, Inception or FAN weights, and offline machines cannot download them; every
loader goes through ``resolve_weights`` so the failure is one clear message naming the file and where
to put it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)


class WeightsUnavailable(FileNotFoundError):
    """A pretrained-weight file could not be found locally nor downloaded."""


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

    Raises ``WeightsUnavailable`` naming the file, the places looked at and where to put it.
    """
    explicit = path or os.environ.get(env)
    if explicit:
        p = Path(explicit).expanduser()
        if p.is_file():
            return p
        raise WeightsUnavailable(f"{p} (from {'argument' if path else '$' + env}) does not exist; expected {filename}")
    cached = hub_checkpoints() / filename
    if cached.is_file():
        return cached
    if download and url:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), progress=False)
            return cached
        except Exception as e:  # offline: URLError, socket errors, HTTP errors — all mean "not available"
            log.info("download of %s failed: %s", url, e)
    raise WeightsUnavailable(
        f"{filename} is not available: not in ${env}, not in {_shown(cached.parent)}, and the download "
        f"{'failed (offline?)' if download and url else 'was not attempted'}. Fetch it on a machine "
        f"with internet{f' from {url}' if url else ''} and put it at {_shown(cached)} or set {env}=/path/to/{filename}."
    )


def weights_available(filename: str, *, env: str, path: str | Path | None = None) -> bool:
    """Whether ``filename`` can be found locally (no download attempted)."""
    try:
        resolve_weights(filename, env=env, path=path, download=False)
        return True
    except WeightsUnavailable:
        return False
