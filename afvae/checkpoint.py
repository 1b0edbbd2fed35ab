"""Checkpoints: written atomically, loaded as data (``weights_only=True``), never as code."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from afvae.atomic import atomic_path
from afvae.config import Config

REQUIRED = ("model", "optimizer", "step", "config", "centres")


def save_checkpoint(path: str | Path, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer], step: int, cfg: Config,
                    centres: torch.Tensor | None = None, **extra: Any) -> Path:
    """Write model, optimiser(s), focal points, config, step and RNG state to ``path`` (temp file, then rename).

    ``optimizer``: one, or a dict of them (a GAN's G and D); ``centres``: the focal points (K, F), by default
    AF-VAE's ``model.prior.centres``.
    """
    path = Path(path)
    optim = ({k: o.state_dict() for k, o in optimizer.items()} if isinstance(optimizer, dict)
             else optimizer.state_dict())
    state = {
        "model": model.state_dict(),
        "optimizer": optim,
        "step": int(step),
        "config": cfg.to_dict(),
        "centres": (model.prior.centres if centres is None else centres).detach().cpu(),
        "rng": torch.get_rng_state(),
        **extra,
    }
    with atomic_path(path) as tmp:  # a crash leaves the previous checkpoint intact
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint saved by ``save_checkpoint``; clear errors for missing or foreign files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}: train first (python -m afvae.train) or pass a run folder")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors have many types; re-raise with the file named
        raise ValueError(f"{path} is not a readable afvae checkpoint ({type(e).__name__}: {e})") from e
    missing = [k for k in REQUIRED if k not in state] if isinstance(state, dict) else list(REQUIRED)
    if missing:
        raise ValueError(f"{path} is not an afvae checkpoint: missing {missing}")
    return state
