"""The recipe ladder behind the default preset: each change measured by the quality benchmark's numbers.

``python -m afvae.bench recipe`` trains, from scratch with seed 0, the recipe before the time-to-quality work and
then each change on top of it (the compact preset, the SSIM and data-init recipes, then the default preset, the last
step), and scores each at the end of training on the quality benchmark's 400 edits (``afvae.bench.quality``). About
5 CPU-minutes per step at two threads; the narrower models of the equal-FLOPs steps see more images, and take 10-20
minutes at one thread.
"""
from __future__ import annotations

from typing import Any

from afvae.bench.quality import (at_budget, before_recipe, default_recipe, fresh_recipe, init_recipe, narrow,
                                 narrow_recipe, run as run_quality, ssim_recipe)
from afvae.config import Config, get_config

KEYS = ("yaw_ssim", "expr_changed_l1", "identity_sim", "landmark_nme", "rec_ssim", "train_tflop", "images_seen")


def ladder() -> dict[str, Config]:
    """Each step of the recipe search as a config: the compact preset (the default before the SSIM recipe), the
    "not kept" steps measured on top of it and left off, the SSIM and data-init recipes, and the default preset,
    the last."""
    default = get_config("compact")
    schedule = {"lr": 2e-3, "betas": (0.9, 0.99), "warmup": 0.03, "decay": "linear", "steps": 850}
    return {
        "before": before_recipe(),
        "warmup_linear_decay_b32": before_recipe().replace(train=schedule),
        "batch16": before_recipe().replace(train={**schedule, "lr": 1.5e-3, "batch_size": 16, "steps": 1700}),
        "film (compact preset)": default,
        "full_res (not kept)": default.replace(model={"full_res_width": 16}),
        "fresh identities (not kept)": fresh_recipe(),
        # width against images at the default preset's FLOPs (``at_budget``): a narrower model sees more images
        "half widths, equal FLOPs, 180 people (not kept)": at_budget(narrow(16)),
        "3/4 widths, equal FLOPs, fresh identities (not kept)": fresh_recipe(at_budget(narrow(24))),
        "half widths, equal FLOPs, fresh identities (not kept)": narrow_recipe(),
        "3/8 widths, equal FLOPs, fresh identities (not kept)": fresh_recipe(at_budget(narrow(12))),
        "half widths, no feature matching, equal FLOPs, fresh identities (not kept)":
            fresh_recipe(at_budget(narrow(16).replace(loss={"feature_net": "none"}))),
        "half widths, peak 3e-3, equal FLOPs, fresh identities (not kept)":
            fresh_recipe(at_budget(narrow(16).replace(train={"lr": 3e-3}))),
        "half widths, peak 3e-3, SSIM term, feature matching 0.3, equal FLOPs, fresh identities (SSIM recipe)":
            ssim_recipe(),
        "+ data-dependent init, warm-up 10 %, beta 1e-4, equal FLOPs (data-init recipe)": init_recipe(),
        "+ z broadcast over the 4 x 4, SSIM term 1, beta 3e-4, equal FLOPs (default preset)": default_recipe(),
    }



def run() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, cfg in ladder().items():
        row = run_quality(cfg, eval_points=1)
        out |= {f"{name}/{k}": row[k] for k in KEYS}
    return out
