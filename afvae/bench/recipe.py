"""The recipe ladder behind the default preset: each change measured by the quality benchmark's numbers.

``python -m afvae.bench recipe`` trains, from scratch with seed 0, the recipe before the time-to-quality work and
then each change on top of it (the last kept step is the default preset), and scores each at the end of
training on the quality benchmark's 400 edits (``afvae.bench.quality``). About 5 CPU-minutes per step.
"""
from __future__ import annotations

from typing import Any

from afvae.bench.quality import before_recipe, fresh_recipe, run as run_quality
from afvae.config import Config, get_config

KEYS = ("yaw_ssim", "expr_changed_l1", "identity_sim", "landmark_nme", "rec_ssim", "train_tflop", "images_seen")


def ladder() -> dict[str, Config]:
    """Each step of the recipe search as a config; "default" is the preset, the "not kept" ones steps measured
    on top of it and left off."""
    default = get_config("default")
    schedule = {"lr": 2e-3, "betas": (0.9, 0.99), "warmup": 0.03, "decay": "linear", "steps": 850}
    return {
        "before": before_recipe(),
        "warmup_linear_decay_b32": before_recipe().replace(train=schedule),
        "batch16": before_recipe().replace(train={**schedule, "lr": 1.5e-3, "batch_size": 16, "steps": 1700}),
        "film (default)": default,
        "full_res (not kept)": default.replace(model={"full_res_width": 16}),
        "fresh identities (not kept)": fresh_recipe(),
    }


def run() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, cfg in ladder().items():
        row = run_quality(cfg, eval_points=1)
        out |= {f"{name}/{k}": row[k] for k in KEYS}
    return out
