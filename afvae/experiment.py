"""What the notebooks share: the config a (scale, variant, data, seed) names, its cached trained model,
its logged history, and atomic JSON/CSV writing of headline numbers.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from afvae.atomic import atomic_path, write_text
from afvae.config import Config, get_config
from afvae.data.datasets import for_data
from afvae.model import AFVAE
from afvae.train import load_model, train_cached


def config(scale: str, variant: str = "full", data: str = "synthetic", seed: int = 0) -> Config:
    """The preset ``scale`` with ablation ``variant``, data source ``data`` and training seed ``seed``.

    ``data`` is "synthetic" or a prepared folder, whose keypoint schema sets the boundary channels.
    """
    return for_data(get_config(scale, variant), data).replace(train={"seed": seed})


def runs_root(results: str | Path) -> Path:
    return Path(results) / "runs"


def trained(cfg: Config, results: str | Path = "results", progress: bool = True) -> tuple[AFVAE, Config, Path]:
    """The trained model of ``cfg``: trained now unless ``results/runs/NAME-HASH`` already holds it."""
    run = train_cached(cfg, runs_root(results), progress=progress)
    model, saved = load_model(run)
    return model, saved, run


def history(run: str | Path) -> pd.DataFrame:
    """The logged metrics of a run (one row per logged step)."""
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the run has not logged anything yet")
    return pd.read_json(path, lines=True)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become None, tensors and numpy scalars become Python numbers."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Atomically write ``data`` as pretty JSON (NaN -> null)."""
    return write_text(path, json.dumps(_clean(data), indent=2, sort_keys=True) + "\n")


def write_csv(path: str | Path, df: pd.DataFrame) -> Path:
    """Atomically write a DataFrame as CSV."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)
