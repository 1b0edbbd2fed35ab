"""Fresh identities at the default budget, over seeds: is their gain real?

``quality_fresh`` measured one seed: trained on 27,200 people (one image each, ``data.train_images``) instead of
40 images of each of 180, the default recipe edited new people +0.019 yaw SSIM better. The seed-to-seed spread
of the full model is of that order, so this trains both recipes with each of ``SEEDS`` (training seed: the
initialisation and the batches; the data are the same) on one machine and scores each at the end on the
quality benchmark's 400 edits (``afvae.bench.quality.run``, one evaluation point). The verdict reads the paired
difference per seed (fresh minus default, same seed) with its 95 % t-interval over seeds (``afvae.claims``).

Each (recipe, seed) result is kept in ``$AFVAE_RUNS/fresh_seeds/`` (``afvae.bench.fresh_long.runs_folder``)
under its config hash, so an interrupted run resumes with the next one and ``piece`` can be run by separate
processes. About 4 minutes a run on 2 CPU cores, 25 in all.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from afvae.config import Config

SEEDS = (0, 1, 2)
KEYS = ("yaw_ssim", "expr_changed_l1", "identity_sim", "identity_sim_heldout", "landmark_nme", "rec_ssim")


def recipes(seed: int) -> dict[str, Config]:
    """The default recipe and the same on fresh identities, both with training seed ``seed``."""
    from afvae.bench.quality import fresh_recipe
    from afvae.config import get_config

    return {name: cfg.replace(train={"seed": seed})
            for name, cfg in (("default", get_config("default")), ("fresh", fresh_recipe()))}


def piece(cfg: Config, folder: Path | None = None) -> dict[str, Any]:
    """``cfg``'s final quality scores (``KEYS``, those without a held-out scorer left out; ``seen``; the
    machine), from ``folder`` when already measured."""
    from afvae.atomic import write_text
    from afvae.bench import machine_info
    from afvae.bench.fresh_long import runs_folder
    from afvae.bench.quality import run as run_quality

    path = (folder or runs_folder() / "fresh_seeds") / f"{cfg.hash()}.json"
    if path.exists():
        return json.loads(path.read_text())
    row = run_quality(cfg, eval_points=1)
    out = {k: row[k] for k in KEYS if k in row} | {"seen": row["seen"], "images_seen": row["images_seen"],
                                       "train_minutes": row["train_minutes"], **machine_info()}
    write_text(path, json.dumps(out, indent=1) + "\n")
    return out


def run(seeds: tuple[int, ...] = SEEDS, folder: Path | None = None) -> dict[str, Any]:
    from afvae.claims import t_interval

    rows = {(name, s): piece(cfg, folder) for s in seeds for name, cfg in recipes(s).items()}
    out: dict[str, Any] = {"seeds": list(seeds), "per_seed": {f"{n}/seed{s}": r for (n, s), r in rows.items()}}
    for k in (*KEYS, "seen_yaw_ssim"):
        get = (lambda r: r["seen"]["yaw_ssim"]) if k == "seen_yaw_ssim" else (lambda r, k=k: r.get(k, math.nan))
        for name in ("default", "fresh"):
            out[f"{name}/{k}"] = t_interval([get(rows[name, s]) for s in seeds])
        out[f"fresh-default/{k}"] = t_interval([get(rows["fresh", s]) - get(rows["default", s]) for s in seeds])
    return out
