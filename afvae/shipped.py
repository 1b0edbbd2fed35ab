"""The shipped weights: ``weights/manifest.json`` and its files, verified, and installed as finished runs.

Each reference model of ``afvae.zoo`` is one ``weights/NAME.safetensors`` (no pickle): the evaluated weights
(fp16 where the export measured no change in any metric beyond its interval) and the focal points, with the
training log in the file's metadata. The manifest records, per file, its config and config hash, SHA-256,
images seen, TFLOP, wall time, machine, commit and the metrics measured at export.

``install(cfg, runs)`` is the one way a consumer gets a shipped model: when the manifest holds ``cfg``'s hash,
the file is checked (SHA-256, config hash) and written out as the finished run ``runs/NAME-HASH``, which every
reader of runs (``afvae.experiment``, the notebooks, the explorer, the study) then loads as if it had trained
it. A shipped run holds no optimiser state: it cannot be resumed.

The manifest, the files' checksums and the shipped evaluation nets are ``afvae.weights_manifest``'s.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from afvae.atomic import write_text
from afvae.checkpoint import CHECKPOINT, METRICS, run_dir, save_checkpoint
from afvae.config import Config
from afvae.weights_manifest import MANIFEST, REGENERATE, manifest, verified_file, weights_dir

CENTRES = "focal_points"  # the safetensors key of the focal points (K, F), beside the network's own keys


def entry_for(cfg: Config, folder: str | Path | None = None) -> dict[str, Any] | None:
    """The manifest entry shipped for ``cfg`` (same config hash), or None."""
    return next((e for e in manifest(folder).values() if e["config_hash"] == cfg.hash()), None)


def load_state(entry: dict[str, Any], folder: str | Path | None = None) -> dict[str, Any]:
    """A checkpoint-shaped state (model, centres, config, step, no optimiser states) of a verified shipped file."""
    from safetensors import safe_open

    path = verified_file(entry, folder)
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        tensors = {k: t.float() if t.is_floating_point() else t for k, t in tensors.items()}
        meta = f.metadata() or {}
    centres = tensors.pop(CENTRES)
    return {"model": tensors, "centres": centres, "config": entry["config"], "step": entry["config"]["train"]["steps"],
            "states": {}, "shipped": entry["file"], "history": json.loads(meta.get("history", "[]"))}


def install(cfg: Config, runs: str | Path, folder: str | Path | None = None) -> Path | None:
    """Write the shipped model of ``cfg`` as the finished run ``runs/NAME-HASH`` -> that folder; None when the
    manifest has no model of ``cfg``'s hash (then it is trained instead)."""
    entry = entry_for(cfg, folder)
    if entry is None:
        return None
    state = load_state(entry, folder)
    run = run_dir(cfg, runs)
    run.mkdir(parents=True, exist_ok=True)
    write_text(run / METRICS, "".join(json.dumps(r) + "\n" for r in state.pop("history")))
    write_text(run / "config.json", cfg.to_json())
    model = _Weights(state["model"])
    save_checkpoint(run / CHECKPOINT, model=model, states={}, step=state["step"], cfg=cfg, centres=state["centres"],
                    shipped=state["shipped"], feature_net=entry.get("feature_net", "none"))
    return run


class _Weights:
    """A stand-in with ``state_dict`` for ``save_checkpoint``: the shipped tensors as they are."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self._tensors = tensors

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._tensors


def load(name: str = "full", folder: str | Path | None = None, device: str = "cpu") -> tuple[torch.nn.Module, Config]:
    """The shipped model ``name`` (eval mode) and its config, verified, without writing a run folder."""
    from afvae.checkpoint import model_from_state

    entries = manifest(folder)
    if name not in entries:
        where = Path(folder or weights_dir()) / MANIFEST
        raise FileNotFoundError(f"{where} ships no model {name!r} (it has {', '.join(entries) or 'none'}): make it "
                                f"with {REGENERATE}, or pass a run folder you trained")
    return model_from_state(load_state(entries[name], folder), device)
