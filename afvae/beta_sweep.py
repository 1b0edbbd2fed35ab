"""The computations behind notebook 14: is the prior active? The KL weight β swept for the three priors.

At a small β the KL is a sliver of the loss: the prior p(z | y) then barely shapes the codes, prior samples
decode to one "mean face" (``afvae.tutorial``) and a comparison of priors tests little. Per (variant, β):

* ``kl_share``: the KL's share of the training loss at the end of training, β · KL / loss (``metrics.jsonl``);
* ``sample_diversity``: how different decoded prior samples z ~ p(z | y) are for the same unseen boundary map,
  beside the posterior codes of real unseen faces decoded with the same maps (the variety the decoder can give);
* ``advantages``: the full model's paired advantage over each other prior on the ground-truth metrics, with a
  95 % bootstrap interval over the evaluation pairs and ``afvae.claims.verdict``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from afvae.claims import verdict
from afvae.config import Config
from afvae.experiment import config as experiment_config
from afvae.failures import bootstrap_mean
from afvae.model import AFVAE
from afvae.tutorial import collapse_metrics, latent_fit, posterior_swaps, prior_samples

BETAS = (1e-5, 1e-4, 1e-3, 1e-2)
PRIORS = ("full", "standard_prior", "gmm_sampled")  # additive (the paper's), N(0, I), one focal Gaussian per step
PAPER = "full"
BETTER = {"gt_l1": "min", "gt_changed_l1": "min", "gt_ssim": "max", "identity_sim": "max", "landmark_nme": "min"}
ACTIVE_SHARE = 0.10  # the KL is at least this share of the loss ...
VARIED = 0.5  # ... and prior samples at least this fraction as diverse as posterior swaps: the prior is active
TAIL = 10  # logged steps averaged for "the end of training"


def configs(scale: str, data: str = "synthetic", seed: int = 0, betas: Sequence[float] = BETAS,
            variants: Sequence[str] = PRIORS) -> dict[tuple[str, float], Config]:
    """The sweep's configs, keyed (variant, β): ``experiment.config`` with ``loss.beta`` replaced."""
    return {(v, b): experiment_config(scale, v, data, seed).replace(loss={"beta": b}) for b in betas for v in variants}


def kl_share(history: pd.DataFrame, beta: float, tail: int = TAIL) -> dict[str, float]:
    """The KL's weight in the loss over the last ``tail`` logged steps of a run's ``history`` (``metrics.jsonl``).

    :return: "kl" mean KL(q || p) per face (nats, Eq. 5), "loss" mean total loss, "kl_share" mean of
        β · KL / loss per logged step (in [0, 1]), "step" the last step.
    """
    if not {"kl", "loss"} <= set(history.columns) or history.empty:
        raise ValueError("the history has no logged kl and loss")
    end = history.tail(tail)
    return {"kl": float(end["kl"].mean()), "loss": float(end["loss"].mean()),
            "kl_share": float((beta * end["kl"] / end["loss"]).mean()), "step": int(end["step"].iloc[-1])}


@torch.no_grad()
def sample_diversity(model: AFVAE, faces: dict[str, Tensor], targets: Tensor, mean_face: Tensor, n: int,
                     seed: int) -> dict[str, float]:
    """Variety of decoded prior samples vs posterior swaps for the same boundary maps, and where the codes are.

    :param faces: unseen test faces, "x" (N, 3, H, W) and their maps "c"; targets: (B, C_b, H, W) unseen maps.
    :param mean_face: (3, H, W) a mean face (of the unseen faces, say); n: samples per map.
    :return: ``prior_*`` and ``posterior_*`` ``collapse_metrics``, "diversity_ratio" = prior / posterior
        diversity (1: samples as varied as real faces' codes, 0: one face), and ``latent_fit``'s numbers.
    """
    model = model.eval()
    prior = collapse_metrics(prior_samples(model, targets, n, seed), mean_face)
    swaps = collapse_metrics(posterior_swaps(model, faces["x"], faces["c"], targets, n, seed), mean_face)
    out = {f"prior_{k}": v for k, v in prior.items()} | {f"posterior_{k}": v for k, v in swaps.items()}
    fit = latent_fit(model, faces["x"], faces["c"])
    return out | {"diversity_ratio": prior["diversity"] / swaps["diversity"],
                  **{k: fit[k] for k in ("posterior_spread", "prior_sigma", "rec_l1")}, "kl_test": fit["kl"]}


def is_active(kl_share_: float, diversity_ratio: float) -> bool:
    """Whether the prior shapes the model: KL share >= ``ACTIVE_SHARE`` and diversity ratio >= ``VARIED``."""
    return kl_share_ >= ACTIVE_SHARE and diversity_ratio >= VARIED


def advantage(paper: np.ndarray, other: np.ndarray, better: str, n_boot: int = 2000, seed: int = 0
              ) -> dict[str, Any]:
    """The paper's method's paired advantage on one metric: per pair ``other - paper`` ("min": lower is better)
    or ``paper - other`` ("max"), its mean and 95 % percentile-bootstrap interval over the pairs (pairs where
    either is NaN dropped), and ``afvae.claims.verdict``. paper, other: (n,) scores of the same pairs."""
    if paper.shape != other.shape:
        raise ValueError(f"paired scores need the same pairs, got {paper.shape} and {other.shape}")
    if better not in ("min", "max"):
        raise ValueError(f"better must be 'min' or 'max', got {better!r}")
    d = (other - paper) if better == "min" else (paper - other)
    d = d[~np.isnan(d)]
    mean, lo, hi = bootstrap_mean(d, n_boot, seed)
    return {"advantage": mean, "lo": lo, "hi": hi, "n": len(d),
            "verdict": verdict(lo, hi) if math.isfinite(lo) else "undecided (no pairs)"}


def advantages(pairs: pd.DataFrame, baselines: Sequence[str] = PRIORS[1:], better: dict[str, str] = BETTER,
               n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """``advantage`` of ``PAPER`` over each baseline, per β and metric -> one row each.

    ``pairs``: per-pair scores with columns ``variant``, ``beta``, ``pair`` and the metrics of ``better``.
    """
    rows = []
    for beta, at in pairs.groupby("beta", sort=True):
        wide = {v: part.set_index("pair").sort_index() for v, part in at.groupby("variant")}
        for base in baselines:
            if PAPER not in wide or base not in wide:
                continue
            for metric, direction in better.items():
                a, b = wide[PAPER][metric], wide[base][metric]
                if not a.index.equals(b.index):
                    raise ValueError(f"beta {beta}: {PAPER} and {base} were scored on different pairs")
                rows.append({"beta": beta, "baseline": base, "metric": metric, "better": direction,
                             **advantage(a.to_numpy(), b.to_numpy(), direction, n_boot, seed)})
    return pd.DataFrame(rows)


def first_beta(table: pd.DataFrame, column: str = "active") -> float | None:
    """The smallest β at which ``column`` is true for every variant (``table``: rows with ``beta`` and
    ``column``, e.g. "active"), or None when there is none."""
    every = table.groupby("beta")[column].all()
    return float(every[every].index.min()) if every.any() else None
