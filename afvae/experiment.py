"""The trained model for a config, from the run cache, the shipped weights or by training: what the notebooks,
the study, the explorer and the baseline comparison share.

Runs are cached under ``results/runs/NAME-HASH`` (``afvae.checkpoint.run_dir``): a config trained to its last
step is loaded; one the repository ships (``weights/``, ``afvae.shipped``) is installed there from its verified
file; an unfinished one is resumed, a new one trained. AF-VAE variants and the GAN baselines alike.
``$AFVAE_RETRAIN=1`` (``make paper RETRAIN=1``) trains even what is shipped.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from afvae.checkpoint import CHECKPOINT, METRICS, RunInUse, finished, load_model, run_dir, wait_for_run
from afvae.config import SHIPPED_SCALE, Config, get_config
from afvae.data.datasets import for_data
from afvae.shipped import entry_for, install
from afvae.train import train
from afvae.weights_manifest import retraining


def config(scale: str, variant: str = "full", data: str = "synthetic", seed: int = 0) -> Config:
    """The preset ``scale`` with ablation ``variant``, data source ``data`` and training seed ``seed``.

    ``data`` is "synthetic" or a prepared folder, whose keypoint schema sets the boundary channels. The GAN
    baselines' configs are ``afvae.baselines.config``.
    """
    return for_data(get_config(scale, variant), data).replace(train={"seed": seed})


def runs_root(results: str | Path) -> Path:
    return Path(results) / "runs"


def train_cached(cfg: Config, root: str | Path = "results/runs", progress: bool = True) -> Path:
    """Train ``cfg`` unless a finished run with the same hash exists or is shipped; resumes an unfinished one
    -> its folder. While another process trains it (a notebook, a worker of ``make paper``'s pool), waits for it
    and reads its run.

    Feature networks are cached beside the runs, in ``root/../cache``.
    """
    out = run_dir(cfg, root)
    if not ready(cfg, root):
        try:
            train(cfg, out, resume=True, progress=progress, cache_root=Path(root).parent / "cache")
        except RunInUse as e:
            print(f"{out.name}: waiting for the training in process {e.holder} to end", flush=True)
            wait_for_run(out)
            return train_cached(cfg, root, progress)  # finished by it, or (stopped early) resumed here
    return out


def ready(cfg: Config, root: str | Path = "results/runs") -> bool:
    """Whether ``root`` holds a finished run of ``cfg``, once a shipped one is installed there (unless retraining,
    or a run of it was started here: that one resumes)."""
    started = (run_dir(cfg, root) / CHECKPOINT).exists()
    return finished(cfg, root) or (not retraining() and not started and install(cfg, root) is not None)


def trains_nothing(scale: str) -> bool:
    """Whether notebooks at ``scale`` must not train: the shipped models' preset (``long``), unless retraining."""
    return scale == SHIPPED_SCALE and not retraining()


def available(cfg: Config, results: str | Path = "results") -> bool:
    """Whether ``trained(cfg, results)`` trains nothing: a finished run is cached, or (unless retraining) shipped."""
    return finished(cfg, runs_root(results)) or (not retraining() and entry_for(cfg) is not None)


def trained(cfg: Config, results: str | Path = "results", progress: bool = True
            ) -> tuple[torch.nn.Module, Config, Path]:
    """The trained model of ``cfg`` (AF-VAE or a baseline), its saved config and its run folder: trained now
    unless ``results/runs/NAME-HASH`` already holds it."""
    run = train_cached(cfg, runs_root(results), progress=progress)
    model, saved = load_model(run)
    return model, saved, run


def reference(cfg: Config, results: str | Path = "results", progress: bool = True
              ) -> tuple[torch.nn.Module, Config, Path]:
    """``trained``, for the interactive tools (explorer, tutorial, study): when ``cfg`` is the synthetic full model
    and no finished run of it is cached, the shipped full model (the ``long`` preset) instead of training one."""
    shipped = get_config("long", "full")
    if (not finished(cfg, runs_root(results)) and not retraining() and cfg.name == "full"
            and cfg.data.source == "synthetic" and entry_for(shipped) is not None):
        return trained(shipped, results, progress)
    return trained(cfg, results, progress)


def history(run: str | Path) -> pd.DataFrame:
    """The logged metrics of a run (one row per logged step)."""
    path = Path(run) / METRICS
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the run has not logged anything yet")
    return pd.read_json(path, lines=True)
