"""The computations behind notebook 11, the C-VAE tutorial (no plotting: that is ``afvae.plotting``).

* gradient estimators of E_{z ~ N(mu, sigma^2)}[f(z)]: reparameterisation and score function (REINFORCE)
* Monte Carlo KL with its standard error, to check the closed form (Eq. 5)
* the additive prior built the long way, as the law of sum_k w_k z_k (Eq. 4), and the GMM-sampled prior
  along a path of focal weights between two focal points
* the tutorial's tiny training configs, prior samples, and the "mean face" collapse metrics
* ``refit_prior``: the additive prior's parameters moved to their optimum for a frozen encoder

Vocabulary as everywhere: ``x`` images (B, 3, H, W) in [-1, 1], ``c`` boundary maps, ``z`` (B, D),
``w`` focal weights (B, K), ``mu_k``, ``log_sigma_k`` (K, D).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import Tensor
from torch.distributions import Independent, Normal
from tqdm.auto import tqdm

from afvae.config import PRESETS, TUTORIAL_SIZES, Config
from afvae.experiment import config as experiment_config
from afvae.model import AFVAE
from afvae.prior import additive_prior, gaussian_kl

def tiny_config(scale: str, prior: str, beta: float, data: str = "synthetic", seed: int = 0) -> Config:
    """The tutorial's small C-VAE: prior ``prior`` ("standard" | "additive" | "gmm_sampled"), KL weight ``beta``.

    ``scale`` "smoke" is the CI preset; "default", "long" and "paper" all give the 32-px laptop model (the
    tutorial is small by design). Checkpoints and samples only at the end; feature matching off.
    """
    if scale not in PRESETS:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(PRESETS)}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    size = TUTORIAL_SIZES["smoke" if scale == "smoke" else "default"]
    base = experiment_config("smoke", "full", data, seed)
    steps = size["train"]["steps"]
    return base.replace(
        name=f"tutorial_{prior}", data=size.get("data", {}), model={**size.get("model", {}), "prior": prior},
        loss={"beta": beta, "feature_net": "none"},
        train={**size["train"], "log_every": max(1, steps // 20), "sample_every": steps, "checkpoint_every": steps},
    )


# ----------------------------------------------------------------------------------------------------------
# Gradient estimators of g(mu, log_sigma) = E_{z ~ N(mu, sigma^2)}[f(z)], per dimension


def mean_se(samples: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard error over the first axis: (n, ...) -> (...), (...)."""
    n = samples.shape[0]
    return samples.mean(0), samples.std(0) / n**0.5


def reparam_grad(f: Callable[[Tensor], Tensor], mu: Tensor, log_sigma: Tensor, n: int,
                 generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Reparameterisation estimate of d/d(mu, log_sigma) E[sum_d f(z)_d], z = mu + sigma * eps.

    :param f: elementwise function, (n, D) -> (n, D).
    :param mu, log_sigma: (D,) parameters.
    :return: "mu", "log_sigma" gradient means (D,) and their standard errors "mu_se", "log_sigma_se" over n draws.
    """
    eps = torch.randn(n, *mu.shape, generator=generator, dtype=mu.dtype)  # (n, D)
    m = mu.detach().expand(n, -1).clone().requires_grad_()  # one copy per draw: per-draw gradients
    s = log_sigma.detach().expand(n, -1).clone().requires_grad_()
    f(m + torch.exp(s) * eps).sum().backward()
    (g_mu, se_mu), (g_s, se_s) = mean_se(m.grad), mean_se(s.grad)
    return {"mu": g_mu, "log_sigma": g_s, "mu_se": se_mu, "log_sigma_se": se_s}


def score_function_grad(f: Callable[[Tensor], Tensor], mu: Tensor, log_sigma: Tensor, n: int,
                        generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Score-function (REINFORCE) estimate: E[f(z) * d/d(mu, log_sigma) log N(z; mu, sigma^2)].

    Needs only values of f, no gradient through it; same arguments and return keys as ``reparam_grad``.
    """
    eps = torch.randn(n, *mu.shape, generator=generator, dtype=mu.dtype)  # (n, D)
    fz = f(mu + torch.exp(log_sigma) * eps).detach()  # (n, D)
    # d log N / d mu = (z - mu) / sigma^2 = eps / sigma;  d log N / d log sigma = eps^2 - 1
    (g_mu, se_mu), (g_s, se_s) = mean_se(fz * eps / torch.exp(log_sigma)), mean_se(fz * (eps**2 - 1))
    return {"mu": g_mu, "log_sigma": g_s, "mu_se": se_mu, "log_sigma_se": se_s}


# ----------------------------------------------------------------------------------------------------------
# Monte Carlo KL and the additive prior built from its definition


def diag_normal(mu: Tensor, logvar: Tensor) -> Independent:
    """N(mu, diag e^logvar) as a torch distribution over the last axis: (..., D) -> event shape (D,)."""
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)


def mc_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor, n: int,
          generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Monte Carlo KL(q || p) = E_q[log q(z) - log p(z)] for diagonal Gaussians, with its standard error.

    :param mu_q, logvar_q, mu_p, logvar_p: (B, D).
    :param n: draws per example.
    :return: estimate (B,) and standard error (B,), in nats.
    """
    eps = torch.randn(n, *mu_q.shape, generator=generator, dtype=mu_q.dtype)  # (n, B, D)
    z = mu_q + torch.exp(0.5 * logvar_q) * eps
    log_ratio = diag_normal(mu_q, logvar_q).log_prob(z) - diag_normal(mu_p, logvar_p).log_prob(z)  # (n, B)
    return mean_se(log_ratio)


def additive_samples(w: Tensor, mu_k: Tensor, log_sigma_k: Tensor, n: int,
                     generator: torch.Generator | None = None) -> Tensor:
    """Draws of sum_k w_k z_k with independent z_k ~ N(mu_k, sigma_k^2): the definition behind Eq. 4.

    :param w: (B, K) focal weights; mu_k, log_sigma_k: (K, D).
    :return: (n, B, D) samples.
    """
    z_k = mu_k + torch.exp(log_sigma_k) * torch.randn(n, *mu_k.shape, generator=generator, dtype=mu_k.dtype)
    return torch.einsum("bk,nkd->nbd", w, z_k)  # (n, B, D)


def prior_path(mu_k: Tensor, log_sigma_k: Tensor, t: Tensor, n: int, mu_q: Tensor, logvar_q: Tensor,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Additive vs GMM-sampled prior as w moves from focal point 0 (t = 0) to focal point 1 (t = 1).

    :param mu_k, log_sigma_k: (2, D) two focal Gaussians; t: (T,) positions, w = (1 - t, t).
    :param n: prior draws per position; mu_q, logvar_q: (D,) a fixed posterior q whose KL to each prior is shown.
    :return: "additive", "gmm" samples (T, n, D); "additive_mean" (T, D); "kl_additive" (T,) the closed-form KL;
        "components" (T, n) the focal point each GMM-sampled draw used; "kl_gmm" (T, n) the KL that draw's
        component gives (what one training step sees).
    """
    w = torch.stack([1 - t, t], dim=1)  # (T, 2)
    mu_p, logvar_p = additive_prior(w, mu_k, log_sigma_k)  # (T, D) each, Eq. 4
    add = mu_p + torch.exp(0.5 * logvar_p) * torch.randn(n, *mu_p.shape, generator=generator, dtype=mu_p.dtype)
    k = torch.multinomial(w, n, replacement=True, generator=generator)  # (T, n) component per draw
    gmm = mu_k[k] + torch.exp(log_sigma_k[k]) * torch.randn(*k.shape, mu_k.shape[1], generator=generator,
                                                          dtype=mu_k.dtype)  # (T, n, D)
    kl_k = gaussian_kl(mu_q[None], logvar_q[None], mu_k, 2 * log_sigma_k)  # (2,) KL to each component
    return {"additive": add.transpose(0, 1), "gmm": gmm, "additive_mean": mu_p, "components": k,
            "kl_additive": gaussian_kl(mu_q[None], logvar_q[None], mu_p, logvar_p), "kl_gmm": kl_k[k]}


# ----------------------------------------------------------------------------------------------------------
# Prior samples of a trained model and the "mean face" metrics


@torch.no_grad()
def prior_samples(model: AFVAE, c: Tensor, n: int, seed: int) -> Tensor:
    """n decoded prior samples per boundary map, x = D(z, y) with z ~ p(z | y): c (B, C_b, H, W) -> (B, n, 3, H, W)."""
    B = c.shape[0]
    x = model.sample(c.repeat_interleave(n, 0), generator=torch.Generator().manual_seed(seed))
    return x.view(B, n, *x.shape[1:])


@torch.no_grad()
def posterior_swaps(model: AFVAE, x: Tensor, c_x: Tensor, c: Tensor, n: int, seed: int) -> Tensor:
    """Reference variety: the posterior means of n random faces x (N, 3, H, W) decoded with each target map.

    :param c_x: (N, C_b, H, W) the faces' own maps; c: (B, C_b, H, W) targets. :return: (B, n, 3, H, W).
    """
    if x.shape[0] < n:
        raise ValueError(f"need at least n={n} faces, got {x.shape[0]}")
    pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    mu, _ = model.encode(x[pick], c_x[pick])  # (n, D)
    B = c.shape[0]
    out = model.decode(mu.repeat(B, 1), c.repeat_interleave(n, 0))  # (B * n, 3, H, W)
    return out.view(B, n, *out.shape[1:])


def collapse_metrics(samples: Tensor, mean_face: Tensor) -> dict[str, float]:
    """How much decoded samples (B, n, 3, H, W) collapse onto a mean face: (3, H, W), or one per map (B, 3, H, W).

    :return: "diversity": pixel std across the n samples of each map, averaged (0 = identical samples);
        "to_mean_face": mean L1 between a sample and the mean face (0 = the mean face itself).
    """
    if samples.dim() != 5 or samples.shape[1] < 2:
        raise ValueError(f"samples must be (B, n >= 2, 3, H, W), got {tuple(samples.shape)}")
    mean_face = mean_face[:, None] if mean_face.dim() == 4 else mean_face  # (B, 1, 3, H, W) or (3, H, W)
    return {"diversity": float(samples.std(dim=1).mean()), "to_mean_face": float((samples - mean_face).abs().mean())}


@torch.no_grad()
def latent_fit(model: AFVAE, x: Tensor, c: Tensor) -> dict[str, float]:
    """Where the encoder puts faces vs where the prior samples: spreads averaged over the D dimensions.

    :return: "posterior_spread" std of the posterior means over the faces; "posterior_sigma" median sigma_q;
        "prior_sigma" mean prior sd; "prior_mean_spread" std of the prior mean mu_p(c) over the faces (how much the
        prior depends on structure); "kl" mean KL(q || p) per face (nats, Eq. 5); "rec_l1" L1 of the
        posterior-mean reconstructions D(mu, y), what the codes still carry about x.
    """
    mu, logvar = model.encode(x, c)  # (N, D)
    rec_l1 = float((model.decode(mu, c) - x).abs().mean())
    mu_p, logvar_p = model.prior(model.focal_weights(c), generator=torch.Generator().manual_seed(0))
    return {"posterior_spread": float(mu.std(0).mean()), "posterior_sigma": float(torch.exp(0.5 * logvar).median()),
            "prior_sigma": float(torch.exp(0.5 * logvar_p).mean()), "prior_mean_spread": float(mu_p.std(0).mean()),
            "kl": float(gaussian_kl(mu, logvar, mu_p, logvar_p).mean()), "rec_l1": rec_l1}


def refit_prior(model: AFVAE, x: Tensor, c: Tensor, steps: int = 300, lr: float = 0.05,
                progress: bool = False) -> AFVAE:
    """A copy of ``model`` whose additive prior (mu_k, log_sigma_k) minimises the mean KL(q(z|x,y) || p(z|y)).

    The encoder is frozen: this is where the KL term of training drives the prior's parameters, reached in a
    few hundred full-batch Adam steps instead of thousands of training steps. x (N, 3, H, W), c (N, C_b, H, W).
    """
    if model.prior.kind != "additive":
        raise ValueError(f"refit_prior needs a model with the additive prior, not {model.prior.kind!r}")
    new = copy.deepcopy(model).eval()
    with torch.no_grad():
        mu, logvar = new.encode(x, c)
        w = new.focal_weights(c)
    params = [new.prior.mu_k, new.prior.log_sigma_k]
    opt = torch.optim.Adam(params, lr=lr)
    for _ in tqdm(range(steps), desc="refit prior", disable=not progress):
        kl = gaussian_kl(mu, logvar, *additive_prior(w, *params)).mean()  # Eq. 5 with Eq. 4
        opt.zero_grad()
        kl.backward()
        opt.step()
    return new
