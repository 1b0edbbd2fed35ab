"""Checkpoints and run folders as data: written atomically, loaded with ``weights_only=True``, never as code.

A run folder holds ``checkpoint.pt``, ``metrics.jsonl`` (one JSON row per logged step), ``config.json`` and
``samples/``. A checkpoint holds the network, the focal points, the config, the step and ``states``: the
state of everything else an exact resume needs (the optimisers, by name), saved and restored generically.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from afvae.atomic import atomic_path
from afvae.config import Config
from afvae.methods import build_network

CHECKPOINT, METRICS = "checkpoint.pt", "metrics.jsonl"
REQUIRED = ("model", "step", "config", "centres")


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, states: Mapping[str, Any], step: int, cfg: Config,
                    centres: torch.Tensor, **extra: Any) -> Path:
    """Write model, ``states`` (objects with ``state_dict``: optimisers, ...), focal points (K, F), config,
    step and RNG state to ``path`` (temp file, then rename)."""
    path = Path(path)
    state = {
        "model": model.state_dict(),
        "states": {k: obj.state_dict() for k, obj in states.items()},
        "step": int(step),
        "config": cfg.to_dict(),
        "centres": centres.detach().cpu(),
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


def restore(state: dict[str, Any], model: torch.nn.Module, states: Mapping[str, Any]) -> int:
    """Load a checkpoint's weights into ``model`` and its ``states`` into the same-named objects -> its step."""
    saved = state.get("states", {})
    missing = [k for k in states if k not in saved]
    if missing:
        raise ValueError(f"the checkpoint has no saved state for {missing}: it cannot be resumed exactly; "
                         f"train into a new folder")
    model.load_state_dict(state["model"])
    for k, obj in states.items():
        obj.load_state_dict(saved[k])
    return int(state["step"])


def checkpoint_path(run: str | Path) -> Path:
    """A run folder's checkpoint file (a checkpoint file is returned as it is)."""
    path = Path(run)
    return path / CHECKPOINT if path.is_dir() else path


def run_dir(cfg: Config, root: str | Path = "results/runs") -> Path:
    """Where a config's run lives: ``root/NAME-HASH``, so a figure notebook never retrains."""
    return Path(root) / f"{cfg.name}-{cfg.hash()}"


def finished(cfg: Config, root: str | Path = "results/runs") -> bool:
    """Whether ``root`` holds a run of ``cfg`` trained to its last step."""
    ckpt = run_dir(cfg, root) / CHECKPOINT
    return ckpt.exists() and load_checkpoint(ckpt)["step"] >= cfg.train.steps


def read_history(run: str | Path, upto: int | None = None) -> list[dict[str, float]]:
    """The rows a run logged (``metrics.jsonl``), those up to step ``upto`` when given; [] before any."""
    path = Path(run) / METRICS
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows if upto is None else [r for r in rows if r["step"] <= upto]


def model_from_state(state: dict[str, Any], device: str = "cpu") -> tuple[torch.nn.Module, Config]:
    """The network (AF-VAE or a baseline, eval mode) and config of an already-loaded checkpoint ``state``.

    Leaves the caller's global RNG as it was.
    """
    cfg = Config.from_dict(state["config"])
    with torch.random.fork_rng(devices=[]):
        model = build_network(cfg, state["centres"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg


def load_model(run: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, Config]:
    """Trained network (AF-VAE or a baseline) and its config from a run folder or a checkpoint file."""
    return model_from_state(load_checkpoint(checkpoint_path(run)), device)
