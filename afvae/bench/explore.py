"""Latent explorer latency: one ``Explorer.update`` per control at 64 px (``python -m afvae.bench explore``).

Uses the default preset's trained full model when ``results/runs`` holds it, otherwise trains (and caches) the
smoke model, whose 32-px numbers are then reported with its size. Each control's sweep runs ``REPEATS`` times
with the caches cleared before every pass (its first update is a cold start: the face is encoded); one torch
thread, as the notebook. Target: < 200 ms per update at 64 px.
"""
from __future__ import annotations

from typing import Any

import torch

from afvae import experiment, explore
from afvae.checkpoint import finished
from afvae.data.datasets import build_dataset

REPEATS = 5
RESULTS = "results"


def _model() -> tuple[Any, Any, str]:
    """The default-scale full model if cached and finished, else the smoke one (trained now if needed)."""
    default = experiment.config("default", "full")
    scale = "default" if finished(default, experiment.runs_root(RESULTS)) else "smoke"
    model, cfg, run = experiment.trained(experiment.config(scale, "full"), RESULTS, progress=False)
    return model, cfg, run.name


def run() -> dict[str, float | int | str | bool]:
    """Median / 95th-percentile ms per update, over all controls and per control, and the live UI's refresh."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, cfg, name = _model()
        explorer = explore.Explorer(model, build_dataset(cfg.data, "test"))
        source, other = explore.pick_faces(explorer.dataset, seed=0)
        base = explore.ExplorerState(source=source, other=other)
        summary = explore.latency_summary(explore.latency(explorer, explore.sweeps(explorer, base), REPEATS))
        ui_ms = explore.ui_refresh_ms(explore.build_ui(explorer, base), "yaw", torch.linspace(-40, 40, 20).tolist())
    finally:
        torch.set_num_threads(threads)
    return {"run": name, "size": cfg.data.size, "repeats": REPEATS, **{k: round(v, 2) for k, v in summary.items()},
            "ui_refresh_median_ms": round(ui_ms, 2), "target_ms": explore.TARGET_MS,
            "meets_target": cfg.data.size == 64 and summary["p95_ms"] < explore.TARGET_MS}


