"""Training losses as pure functions: reconstruction, feature matching, and the ELBO's named terms.

Keyword-only arguments throughout, so a target can never be swapped with a prediction by position (the
feature-matching target is detached, so a swap would silently train the wrong side).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from afvae.metrics import ssim
from afvae.prior import at_least_f32, gaussian_kl

# AF-VAE (Liu et al., "Make a Face", ICCV 2019), Sec. 3: total = L1 + sum_l lambda_l * feature matching
# + beta * KL(q(z | x, y) || p(z | y)). Feature matching follows CRN (Chen & Koltun, "Photographic Image
# Synthesis with Cascaded Refinement Networks", ICCV 2017): L1 between a fixed network's activations psi_l.


def l1(*, x: Tensor, x_hat: Tensor) -> Tensor:
    """Mean absolute error over all elements: x, x_hat (B, 3, H, W) in [-1, 1] -> scalar (in fp32 under
    autocast)."""
    return (at_least_f32(x_hat) - at_least_f32(x)).abs().mean()


def feature_matching(*, feats_x: list[Tensor], feats_x_hat: list[Tensor], weights: Sequence[float]) -> Tensor:
    """sum_l lambda_l * mean |psi_l(x) - psi_l(x_hat)|, with the targets psi_l(x) detached.

    :param feats_x: L activations psi_l(x), each (B, C_l, H_l, W_l); no gradient flows into them.
    :param feats_x_hat: L activations psi_l(x_hat), same shapes.
    :param weights: L layer weights lambda_l.
    :return: scalar (in fp32 under autocast).
    """
    if not len(feats_x) == len(feats_x_hat) == len(weights) > 0:
        raise ValueError(
            f"need the same number (> 0) of target features, features and weights; "
            f"got {len(feats_x)}, {len(feats_x_hat)}, {len(weights)}"
        )
    terms = [lam * (at_least_f32(f_hat) - at_least_f32(f.detach())).abs().mean()
             for f, f_hat, lam in zip(feats_x, feats_x_hat, weights)]
    return sum(terms[1:], terms[0])


def ssim_loss(*, x: Tensor, x_hat: Tensor) -> Tensor:
    """1 - mean SSIM of x_hat against x (``afvae.metrics.ssim``: 11-px Gaussian window, in float32 outside autocast):
    x, x_hat (B, 3, H, W) in [-1, 1] -> scalar in [0, 2]. Not in the paper: an opt-in structure term
    (``loss.ssim``), after Zhao et al., "Loss Functions for Image Restoration with Neural Networks" (2017)."""
    with torch.autocast(x.device.type, enabled=False):  # bf16 would cancel E[x^2] - E[x]^2
        return 1 - ssim(x_hat, x, dtype=torch.float32).mean()


def elbo_terms(
    *,
    x: Tensor,
    x_hat: Tensor,
    mu: Tensor,
    logvar: Tensor,
    mu_p: Tensor,
    logvar_p: Tensor,
    beta: float,
    feats_x: list[Tensor] | None = None,
    feats_x_hat: list[Tensor] | None = None,
    feature_weights: Sequence[float] | None = None,
    feature_weight: float = 1.0,
    kl: bool = True,
    ssim_weight: float = 0.0,
) -> dict[str, Tensor]:
    """The named terms of the training loss (the negative ELBO plus feature matching).

    :param x, x_hat: (B, 3, H, W) images and reconstructions in [-1, 1].
    :param mu, logvar: (B, D) posterior q(z | x, y).
    :param mu_p, logvar_p: (B, D) prior p(z | y) (see ``afvae.prior``).
    :param beta: KL weight.
    :param feats_x, feats_x_hat: optional feature lists for feature matching; without them the term is 0.
    :param feature_weights: per-layer lambda_l (default 1 for every layer).
    :param feature_weight: overall weight of the feature-matching term.
    :param kl: False drops the KL (the "w/o KL" ablation): "kl" is then reported as 0 and gives no gradient.
    :param ssim_weight: > 0 adds ``ssim_weight * ssim_loss`` (not in the paper; reported as "ssim" only then).
    :return: scalars "l1", "feature", "kl" (batch mean of the per-example summed KL, Eq. 5) and
        "loss" = l1 + feature_weight * feature + beta * kl (+ ssim_weight * ssim).
    """
    rec = l1(x=x, x_hat=x_hat)
    if (feats_x is None) != (feats_x_hat is None):
        raise ValueError("give both feats_x and feats_x_hat, or neither")
    if feats_x is None:
        feature = x_hat.new_zeros(())
    else:
        lambdas = [1.0] * len(feats_x) if feature_weights is None else feature_weights
        feature = feature_matching(feats_x=feats_x, feats_x_hat=feats_x_hat, weights=lambdas)
    kl_term = gaussian_kl(mu, logvar, mu_p, logvar_p).mean() if kl else mu.new_zeros(())  # Eq. 5
    loss = rec + feature_weight * feature + beta * kl_term
    terms = {"l1": rec, "feature": feature, "kl": kl_term}
    if ssim_weight > 0:
        terms["ssim"] = ssim_loss(x=x, x_hat=x_hat)
        loss = loss + ssim_weight * terms["ssim"]
    return terms | {"loss": loss}


class NonFiniteLoss(FloatingPointError):
    """A NaN or infinite training loss: ``who`` names the network ("" for a single loss, "D " or "G "), ``values``
    the step's terms."""

    def __init__(self, who: str, values: dict[str, float]):
        super().__init__(f"non-finite {who}loss ({values})")
        self.who, self.values = who, values


def check_finite(terms: dict[str, Tensor], who: str = "") -> None:
    """Raise ``NonFiniteLoss`` when ``terms["loss"]`` is NaN or infinite (before any gradient is applied)."""
    if not torch.isfinite(terms["loss"]):
        raise NonFiniteLoss(who, {k: float(v.detach()) for k, v in terms.items()})
