"""The repository's ``weights/``: its ``manifest.json``, file checksums, and the shipped evaluation nets.

``afvae.shipped`` installs the shipped models from here as finished runs. Beside them ship the evaluation nets
of their data (``NETS``: the factor net, the landmark net and the held-out scorer of ``afvae.features`` and
``afvae.scorer``), in ``weights/nets/``, fp32: ``install_net`` writes one into the evaluation-net cache in place
of training it (``afvae.features.cached_net``), so that ``make paper SCALE=long`` trains nothing.
``$AFVAE_RETRAIN=1`` ignores every shipped file, models and nets alike. Nothing here imports the model code.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from afvae.atomic import atomic_path
from afvae.config import Config

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"  # the repository's weights/ (AFVAE_WEIGHTS overrides)
MANIFEST = "manifest.json"
REGENERATE = "make weights (or: python -m afvae.zoo train NAME --runs DIR, then python -m afvae.zoo export)"
NETS = "nets"  # the manifest's list of shipped evaluation nets, and their folder in weights/
NET_PREFIX = "model."  # safetensors keys of a net's weights; its other tensors (mean, std) keep their names


class ShippedMismatch(ValueError):
    """A shipped file that is not what its manifest entry says: refused, never loaded."""


def weights_dir() -> Path:
    """The folder of the shipped weights: ``$AFVAE_WEIGHTS`` or the repository's ``weights/``."""
    return Path(os.environ.get("AFVAE_WEIGHTS", WEIGHTS))


def retraining() -> bool:
    """Whether shipped files are to be ignored (``$AFVAE_RETRAIN`` set to 1, ``make paper RETRAIN=1``)."""
    return os.environ.get("AFVAE_RETRAIN", "0") == "1"


def _body(folder: str | Path | None = None) -> dict[str, Any]:
    path = Path(folder or weights_dir()) / MANIFEST
    if not path.exists():
        return {}
    try:
        body = json.loads(path.read_text())
        if not isinstance(body["models"], list):
            raise TypeError("'models' is not a list")
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a weights manifest ({e}); restore it from the repository (git checkout "
                         f"{path.name})") from e
    return body


def manifest(folder: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The manifest's model entries by model name; {} when nothing is shipped."""
    return {e["name"]: e for e in _body(folder).get("models", [])}


def nets(folder: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The manifest's evaluation-net entries by the name of their cache file; {} when none are shipped."""
    return {e["cache_file"]: e for e in _body(folder).get(NETS, [])}


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verified_file(entry: dict[str, Any], folder: str | Path | None = None) -> Path:
    """The path of ``entry``'s file, once its SHA-256 and (for a model) its config's hash are what the manifest
    says."""
    path = Path(folder or weights_dir()) / entry["file"]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing (the manifest lists it): regenerate it with {REGENERATE}, or "
                                f"restore it from the repository")
    actual = sha256(path)
    if actual != entry["sha256"]:
        raise ShippedMismatch(f"{path}: SHA-256 {actual[:16]}... is not the manifest's {entry['sha256'][:16]}...: "
                              f"a corrupt or replaced file; restore it (git checkout) or regenerate it with {REGENERATE}")
    if "config" not in entry:  # an evaluation net: keyed by its cache file's name, which hashes its data
        return path
    cfg_hash = Config.from_dict(entry["config"]).hash()
    if cfg_hash != entry["config_hash"]:
        raise ShippedMismatch(f"{path}: its manifest config hashes to {cfg_hash}, not the recorded "
                              f"{entry['config_hash']}: the config code changed since export; regenerate with "
                              f"{REGENERATE}")
    return path


def install_net(cache_file: str | Path, folder: str | Path | None = None) -> bool:
    """Write the shipped evaluation net whose cache file is named ``cache_file.name`` to ``cache_file``, in the
    cache's format (``afvae.features.cached_net``) -> whether one is shipped (never when retraining)."""
    from safetensors import safe_open

    cache_file = Path(cache_file)
    entry = nets(folder).get(cache_file.name)
    if entry is None or retraining():
        return False
    with safe_open(str(verified_file(entry, folder)), framework="pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, json.loads((f.metadata() or {}).get("meta", "{}"))
    model = {k.removeprefix(NET_PREFIX): v for k, v in tensors.items() if k.startswith(NET_PREFIX)}
    others = {k: v for k, v in tensors.items() if not k.startswith(NET_PREFIX)}
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache_file) as tmp:
        torch.save({"model": model, **others, **meta}, tmp)
    return True


def export_net(cache_file: str | Path, folder: str | Path | None = None) -> dict[str, Any]:
    """Write the cached evaluation net ``cache_file`` to ``folder/nets/STEM.safetensors`` (fp32) -> its manifest
    entry (not yet written: ``afvae.zoo.write_manifest``)."""
    from safetensors.torch import save_file

    cache_file, folder = Path(cache_file), Path(folder or weights_dir())
    state = torch.load(cache_file, map_location="cpu", weights_only=True)
    tensors = {f"{NET_PREFIX}{k}": v for k, v in state.pop("model").items()}
    tensors |= {k: state.pop(k) for k in [k for k, v in state.items() if isinstance(v, torch.Tensor)]}
    path = folder / NETS / f"{cache_file.stem}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"meta": json.dumps(state)})
        tmp.chmod(0o644)
    return {"cache_file": cache_file.name, "file": f"{NETS}/{path.name}", "kind": cache_file.stem.rsplit("-", 1)[0],
            "sha256": sha256(path), "bytes": path.stat().st_size, "dtype": "float32", "meta": state}
