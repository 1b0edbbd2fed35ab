"""Focal points, focal weights and the priors of AF-VAE (Sec. 3.2, Eq. 4-5).

The additive focal prior is p(z | y) = N(sum_k w_k mu_k, sum_k w_k^2 sigma_k^2) (Eq. 4), where the focal
weights w = w(c) say how close the boundary map c is to each of K focal points (k-means centres of the
training boundary maps). The KL between q(z | x, y) and any diagonal Gaussian prior is in closed form (Eq. 5).

Three priors, selected by ``ModelConfig.prior`` and kept as three small functions behind one module:
  "additive"     the paper's prior (Eq. 4),
  "gmm_sampled"  the approximation the paper argues against: draw one focal point k ~ Categorical(w) per
                 example and use N(mu_k, sigma_k^2),
  "standard"     N(0, I), the vanilla conditional VAE ("w/o GMM" in Table 3).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PriorKind = Literal["additive", "gmm_sampled", "standard"]
KINDS: tuple[str, ...] = ("additive", "gmm_sampled", "standard")


def at_least_f32(t: Tensor) -> Tensor:
    """Upcast bf16 / fp16 to fp32: under autocast the prior, the KL and the losses stay in fp32."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


# ----------------------------------------------------------------------------------------------------------
# Focal points and focal weights


def boundary_features(c: Tensor, downsample: int = 16) -> Tensor:
    """Flattened, average-pooled boundary maps: the space the focal points live in.

    :param c: (B, C, H, W) boundary maps in [0, 1].
    :param downsample: side d of the pooled map.
    :return: (B, C*d*d) features.
    """
    B = c.shape[0]
    return F.adaptive_avg_pool2d(c, downsample).reshape(B, -1)  # (B, C*d*d)


def fit_focal_points(c: Tensor, k: int = 8, *, downsample: int = 16, seed: int = 0, n_init: int = 10) -> Tensor:
    """K focal points: k-means centres of the pooled training boundary maps.

    :param c: (N, C, H, W) training boundary maps in [0, 1], N >= k.
    :param k: number of focal points K.
    :param downsample: side d of the pooled map the clustering runs on.
    :param seed: KMeans ``random_state``; the result is deterministic given it.
    :return: (K, C*d*d) float32 centres, on the device of ``c``.
    """
    from sklearn.cluster import KMeans  # only needed once per run; keep `import afvae.prior` light

    if c.shape[0] < k:
        raise ValueError(f"need at least k={k} boundary maps to fit {k} focal points, got {c.shape[0]}")
    feats = boundary_features(c.detach().float(), downsample).cpu().numpy()  # (N, F)
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(feats)
    return torch.as_tensor(km.cluster_centers_, dtype=torch.float32, device=c.device)  # (K, F)


def _as_features(c_or_features: Tensor, centres: Tensor) -> Tensor:
    """(B, C, H, W) maps -> (B, F) features with the pooling size implied by ``centres``; (B, F) passes."""
    if c_or_features.dim() == 2:
        return c_or_features
    C, n_features = c_or_features.shape[1], centres.shape[1]
    d = math.isqrt(n_features // C)
    if C * d * d != n_features:
        raise ValueError(f"centres have {n_features} features, not C*d*d for C={C} boundary channels")
    return boundary_features(c_or_features, d)


def focal_weights(c_or_features: Tensor, centres: Tensor, *, temperature: float = 0.1) -> Tensor:
    """Focal weights w(c): softmax over the K centres of cosine similarity / temperature.

    Why softmax rather than cos / sum(cos): pooled boundary maps are non-negative and every face boundary has
    a cosine of roughly 0.5-0.9 with every centre, so dividing raw cosines by their sum gives nearly uniform
    weights for every face (and, by Eq. 4, a prior mean that is the average of all mu_k); it is also undefined
    for a blank map (all cosines 0). softmax(cos / T) is smooth in c, strictly positive, always defined (a blank
    map gets uniform weights), keeps the order of the cosines (argmax = nearest centre by cosine), and T sets
    the sharpness: T -> inf is uniform, T -> 0 is the nearest centre alone; T = 0 returns that exact one-hot.

    :param c_or_features: (B, C, H, W) boundary maps in [0, 1], or (B, F) features from ``boundary_features``.
    :param centres: (K, F) focal points from ``fit_focal_points``.
    :param temperature: T >= 0.
    :return: (B, K) weights, each row >= 0 and summing to 1.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    with torch.autocast(c_or_features.device.type, enabled=False):
        feats = at_least_f32(_as_features(c_or_features, centres))  # (B, F)
        centres = centres.to(device=feats.device, dtype=feats.dtype)
        cos = F.normalize(feats, dim=1) @ F.normalize(centres, dim=1).T  # (B, K), in [-1, 1]
        if temperature == 0:
            return F.one_hot(cos.argmax(dim=1), centres.shape[0]).to(cos.dtype)
        return torch.softmax(cos / temperature, dim=1)


# ----------------------------------------------------------------------------------------------------------
# The three priors, as functions of the focal weights. Each returns (mu_p, logvar_p), both (B, D).


def additive_prior(w: Tensor, mu_k: Tensor, log_sigma_k: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 4: p(z | y) = N(sum_k w_k mu_k, sum_k w_k^2 sigma_k^2), per dimension.

    This is the law of sum_k w_k z_k for independent z_k ~ N(mu_k, sigma_k^2), not a mixture. Hence the variance
    is below every sigma_k^2 unless w is one-hot: sum_k w_k^2 sigma_k^2 <= max_k sigma_k^2 * sum_k w_k^2 and
    sum_k w_k^2 < 1 for a spread-out w (uniform w and equal sigma_k give sigma_k^2 / K).

    :param w: (B, K) focal weights, rows summing to 1.
    :param mu_k: (K, D) focal means.
    :param log_sigma_k: (K, D) log focal spreads.
    :return: mu_p (B, D) and logvar_p (B, D).
    """
    mu_p = w @ mu_k  # (B, D)  Eq. 4 mean
    # Eq. 4 variance in log space: log sum_k exp(2 log w_k + 2 log sigma_k). Stable for any sigma_k; the clamp
    # keeps log(0) finite so exact zeros in w (a one-hot w) give no NaN gradients.
    log_w = torch.log(w.clamp_min(torch.finfo(w.dtype).tiny))  # (B, K)
    logvar_p = torch.logsumexp(2 * log_w[:, :, None] + 2 * log_sigma_k[None], dim=1)  # (B, D)
    return mu_p, logvar_p


def gmm_sampled_prior(
    w: Tensor, mu_k: Tensor, log_sigma_k: Tensor, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """One focal point per example, k ~ Categorical(w), and its Gaussian N(mu_k, sigma_k^2).

    :param w: (B, K) focal weights.
    :param generator: a ``torch.Generator`` on w's device, for reproducible draws.
    :return: mu_p (B, D) and logvar_p (B, D) of the drawn components.
    """
    k = torch.multinomial(w, 1, generator=generator).squeeze(1)  # (B,)
    return mu_k[k], 2 * log_sigma_k[k]  # (B, D), (B, D)


def standard_prior(batch: int, z_dim: int, *, like: Tensor) -> tuple[Tensor, Tensor]:
    """N(0, I): zeros (batch, z_dim) for both mu_p and logvar_p, with the dtype and device of ``like``."""
    return like.new_zeros(batch, z_dim), like.new_zeros(batch, z_dim)  # separate tensors: safe to edit in place


class AdditiveFocalPrior(nn.Module):
    """p(z | y) given the focal weights: the additive (Eq. 4), GMM-sampled or standard prior (``kind``).

    Buffer ``centres`` (K, F): the focal points, saved in the state_dict with the model. Parameters ``mu_k``
    (K, D), initialised to random directions on the unit sphere (norm exactly 1: the K means start equally far
    from the origin and about sqrt(2) apart, on the scale of sigma_k = 1), and ``log_sigma_k`` (K, D),
    initialised to 0. With kind "standard" both are frozen (``requires_grad=False``): they are unused, and DDP
    rejects trainable parameters that get no gradient.
    """

    def __init__(
        self, centres: Tensor, z_dim: int, *, kind: PriorKind = "additive", temperature: float = 0.1, seed: int = 0
    ) -> None:
        """:param centres: (K, F) focal points from ``fit_focal_points``. :param seed: seeds the mu_k init."""
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown prior {kind!r}; choose one of {KINDS}")
        self.kind, self.temperature = kind, temperature
        K, _ = centres.shape
        self.register_buffer("centres", centres.detach().clone().float())  # (K, F)
        g = torch.Generator().manual_seed(seed)  # independent of the global RNG
        directions = torch.randn(K, z_dim, generator=g)
        self.mu_k = nn.Parameter(directions / directions.norm(dim=1, keepdim=True))  # (K, D), unit norm
        self.log_sigma_k = nn.Parameter(torch.zeros(K, z_dim))  # (K, D), sigma_k = 1
        if kind == "standard":
            self.mu_k.requires_grad_(False)
            self.log_sigma_k.requires_grad_(False)

    def weights(self, c: Tensor) -> Tensor:
        """Focal weights (B, K) of boundary maps c (B, C, H, W) or features (B, F)."""
        return focal_weights(c, self.centres, temperature=self.temperature)

    def forward(self, w: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Prior parameters for focal weights w (B, K): mu_p (B, D), logvar_p (B, D), in the dtype of mu_k."""
        return prior_params(self, self.kind, w, generator=generator)

    def sample(self, w: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z ~ p(z | y) for focal weights w (B, K): (B, D). ``generator`` drives every draw (component and noise)."""
        mu_p, logvar_p = self(w, generator=generator)
        eps = torch.randn(mu_p.shape, generator=generator, device=mu_p.device, dtype=mu_p.dtype)
        return mu_p + torch.exp(0.5 * logvar_p) * eps  # (B, D)


def prior_params(
    prior: AdditiveFocalPrior | None,
    kind: PriorKind,
    w: Tensor,
    generator: torch.Generator | None = None,
    *,
    z_dim: int | None = None,
) -> tuple[Tensor, Tensor]:
    """(mu_p, logvar_p), both (B, D), of the prior ``kind`` for focal weights w (B, K).

    Runs outside autocast, in the dtype of ``prior.mu_k`` (the prior is tiny; keep it exact). ``prior`` may be
    None only for kind "standard", which then needs ``z_dim``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown prior {kind!r}; choose one of {KINDS}")
    B, _ = w.shape
    if prior is None:
        if kind != "standard" or z_dim is None:
            raise ValueError(f"prior {kind!r} needs the AdditiveFocalPrior module (standard needs z_dim)")
        return standard_prior(B, z_dim, like=at_least_f32(w))
    if prior.kind == "standard" and kind != "standard":
        raise ValueError(f"this module was built for the standard prior (mu_k, sigma_k frozen), not {kind!r}")
    with torch.autocast(w.device.type, enabled=False):
        w = w.to(prior.mu_k.dtype)
        if kind == "additive":
            return additive_prior(w, prior.mu_k, prior.log_sigma_k)
        if kind == "gmm_sampled":
            return gmm_sampled_prior(w, prior.mu_k, prior.log_sigma_k, generator=generator)
        return standard_prior(B, prior.mu_k.shape[1], like=prior.mu_k)


# ----------------------------------------------------------------------------------------------------------
# KL divergences (Eq. 5)


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """Eq. 5: KL(N(mu_q, diag e^logvar_q) || N(mu_p, diag e^logvar_p)), summed over dimensions.

    Computed from log-variances (no division by a variance that could underflow); bf16 / fp16 inputs are
    upcast to fp32.

    :param mu_q, logvar_q, mu_p, logvar_p: (B, D) tensors (prior ones may broadcast).
    :return: (B,) KL per example, in nats.
    """
    mu_q, logvar_q, mu_p, logvar_p = map(at_least_f32, (mu_q, logvar_q, mu_p, logvar_p))
    # Eq. 5: 0.5 * sum_d [log(s_p^2 / s_q^2) + (s_q^2 + (m_q - m_p)^2) / s_p^2 - 1]
    kl = logvar_p - logvar_q + torch.exp(logvar_q - logvar_p) + (mu_q - mu_p).pow(2) * torch.exp(-logvar_p) - 1
    return 0.5 * kl.sum(dim=-1)  # (B,)


def standard_normal_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)) = 0.5 * sum_d (mu^2 + e^logvar - logvar - 1): (B, D) -> (B,)."""
    mu, logvar = at_least_f32(mu), at_least_f32(logvar)
    return 0.5 * (mu.pow(2) + torch.exp(logvar) - logvar - 1).sum(dim=-1)  # (B,)
