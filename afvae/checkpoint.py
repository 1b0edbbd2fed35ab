"""Checkpoints and run folders as data: written atomically, loaded with ``weights_only=True``, never as code.

A run folder holds ``checkpoint.pt``, ``metrics.jsonl`` (one JSON row per logged step), ``config.json`` and
``samples/``; while training, ``checkpoint.pending.pt`` is the newest checkpoint, not yet known to train on.
A checkpoint holds the network, the focal points, the config, the step and ``states``: the state of everything
else an exact resume needs (the optimisers, by name), saved and restored generically.
One training at a time owns a folder: it holds ``train.lock`` (an OS lock; the file names its PID).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from afvae.atomic import atomic_path
from afvae.config import RESUMABLE, UNHASHED, Config
from afvae.methods import build_network

log = logging.getLogger(__name__)
CHECKPOINT, METRICS, LOCK = "checkpoint.pt", "metrics.jsonl", "train.lock"
PENDING = "checkpoint.pending.pt"  # a checkpoint whose parameters have not yet shown a finite loss
REQUIRED = ("model", "step", "config", "centres")


class RunFolderError(ValueError):
    """A run folder that cannot be trained into as asked (in use by another training, ...)."""


class RunInUse(RunFolderError):
    """A run folder another process is training into (it holds the folder's lock): ``holder`` is its PID."""

    def __init__(self, run: Path, holder: str):
        super().__init__(f"{run} is in use by another training (PID {holder}); wait for it to end, or train into "
                         f"another folder (--out)")
        self.run, self.holder = run, holder


def wait_for_run(run: str | Path) -> None:
    """Block until no process holds ``run``'s lock: its training has ended, however it ended."""
    import fcntl

    with open(Path(run) / LOCK, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # waits for the holder; released when the file closes


@contextmanager
def lock_run(run: str | Path) -> Iterator[Path]:
    """Hold ``run``'s lock for a training (POSIX ``flock`` on ``run/train.lock``, which gets this PID) -> the
    folder. Refuses a folder another process holds; the OS releases the lock however the holder ends (kill -9).
    Temporaries a killed writer left in the folder are removed once the lock is held.
    """
    import fcntl  # POSIX only, like the rest of the run-folder handling

    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    f = open(run / LOCK, "a+")  # "a+": never truncate the holder's PID before holding the lock
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise RunInUse(run, holder) from None
    try:
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        for stale in run.glob(".*.tmp*"):  # atomic_path's temporaries of a killed write
            stale.unlink()
        yield run
    finally:
        f.close()  # releases the lock


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


def start_over(run: str | Path, overwrite: bool = False) -> None:
    """Ready ``run`` for a training from step 0: a folder that holds a run (a checkpoint or logged metrics) is
    refused, unless ``overwrite``, which deletes that run's checkpoint, metrics and samples."""
    run = Path(run)
    found = [name for name in (CHECKPOINT, PENDING, METRICS) if (run / name).exists()]
    if found and not overwrite:
        raise RunFolderError(f"{run} already holds a run ({', '.join(found)}): pass --resume to continue it, or "
                             f"--overwrite to delete it and start over")
    if found:  # overwrite: the old run's files only (the folder may hold other things)
        for name in found:
            (run / name).unlink(missing_ok=True)  # DDP: every rank clears the folder, before any writes to it
        shutil.rmtree(run / "samples", ignore_errors=True)


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


def check_resumable(state: dict[str, Any], cfg: Config, path: str | Path) -> None:
    """Refuse to resume the checkpoint ``state`` (read from ``path``) with a config whose hash differs from the
    one it was trained with, except in the fields a resume may change (``RESUMABLE``: steps, lr)."""
    saved = Config.from_dict(state["config"])
    if saved.replace(train={k: getattr(cfg.train, k) for k in RESUMABLE}).hash() == cfg.hash():
        return
    old, new = saved.to_dict(), cfg.to_dict()
    changed = [f"name: {old['name']!r} -> {new['name']!r}"] if old["name"] != new["name"] else []
    for section in ("data", "model", "loss", "train"):
        skip = UNHASHED + RESUMABLE if section == "train" else ()
        changed += [f"{section}.{k}: {old[section].get(k)!r} -> {v!r}" for k, v in new[section].items()
                    if k not in skip and old[section].get(k) != v]
    raise RunFolderError(f"{path} was trained with a different config ({', '.join(changed) or 'another hash'}): "
                         f"resume it with its own config ({Path(path).parent / 'config.json'}), or train into "
                         f"another folder")


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
    lines = path.read_text().splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n < len(lines):
                raise ValueError(f"{path}:{n} is not a JSON row; repair or delete that line") from None
            log.warning("%s:%d: dropping a torn last row (a write was interrupted)", path, n)
    return rows if upto is None else [r for r in rows if r["step"] <= upto]


def model_from_state(state: dict[str, Any], device: str = "cpu") -> tuple[torch.nn.Module, Config]:
    """The network (AF-VAE or a baseline, eval mode) and config of an already-loaded checkpoint ``state``.

    Leaves the caller's global RNG as it was.
    """
    cfg = Config.from_dict(state["config"])
    with torch.random.fork_rng(devices=[]):
        model = build_network(cfg, state["centres"])
    model.load_state_dict(evaluated_weights(state))
    return model.to(device).eval(), cfg


def evaluated_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint is evaluated with: the EMA of the weights when the recipe kept one, else the
    trained weights themselves."""
    ema = state.get("states", {}).get("ema")
    if ema is None:
        return state["model"]
    return {k.removeprefix("module."): v for k, v in ema.items() if k != "n_averaged"}


def load_model(run: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, Config]:
    """Trained network (AF-VAE or a baseline) and its config from a run folder or a checkpoint file."""
    return model_from_state(load_checkpoint(checkpoint_path(run)), device)
