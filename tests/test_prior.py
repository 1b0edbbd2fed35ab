"""Focal points, focal weights, the three priors and the closed-form KL (Eq. 4-5) against references."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from afvae.prior import (
    AdditiveFocalPrior,
    additive_prior,
    prior_params,
    boundary_features,
    fit_focal_points,
    focal_weights,
    gaussian_kl,
    standard_normal_kl,
)


def _gaussians(B: int = 5, D: int = 7, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    mu_q, mu_p = torch.randn(2, B, D, generator=g, dtype=torch.float64)
    logvar_q, logvar_p = torch.randn(2, B, D, generator=g, dtype=torch.float64)
    return mu_q, logvar_q, mu_p, logvar_p


def _centres(K: int = 4, F: int = 6) -> torch.Tensor:
    return torch.rand(K, F, generator=torch.Generator().manual_seed(K * F))


def _prior(kind: str = "additive", K: int = 4, D: int = 3, seed: int = 0) -> AdditiveFocalPrior:
    prior = AdditiveFocalPrior(_centres(K), D, kind=kind, seed=seed).double()
    with torch.no_grad():
        prior.log_sigma_k.copy_(0.5 * torch.randn(K, D, generator=torch.Generator().manual_seed(seed + 1)))
    return prior


def _blob_maps(n_per: int = 20, C: int = 2, H: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three clusters of toy boundary maps: a Gaussian blob near one of three positions, jittered, plus noise."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[8.0, 8.0], [8.0, 24.0], [24.0, 16.0]])
    labels = torch.arange(3).repeat_interleave(n_per)  # (N,)
    pos = centres[labels] + torch.randn(len(labels), 2, generator=g)  # (N, 2) jitter of ~1 px
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(H, dtype=torch.float32), indexing="ij")
    d2 = (yy - pos[:, 0, None, None]) ** 2 + (xx - pos[:, 1, None, None]) ** 2  # (N, H, W)
    blob = torch.exp(-d2 / (2 * 3.0**2))[:, None].expand(-1, C, -1, -1)  # (N, C, H, W)
    c = (blob + 0.05 * torch.rand(len(labels), C, H, H, generator=g)).clamp(0, 1)
    return c, labels


# --- KL (Eq. 5) ----------------------------------------------------------------------------------------------


def test_gaussian_kl_matches_torch_distributions():
    mu_q, logvar_q, mu_p, logvar_p = _gaussians()
    ours = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
    ref = kl_divergence(Normal(mu_q, (0.5 * logvar_q).exp()), Normal(mu_p, (0.5 * logvar_p).exp())).sum(-1)
    assert ours.shape == (5,)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=0)


def test_gaussian_kl_matches_monte_carlo():
    mu_q, logvar_q, mu_p, logvar_p = _gaussians(B=3, D=4, seed=1)
    q = Normal(mu_q, (0.5 * logvar_q).exp())
    p = Normal(mu_p, (0.5 * logvar_p).exp())
    eps = torch.randn(200_000, 3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z = mu_q + (0.5 * logvar_q).exp() * eps  # (S, B, D) samples from q
    log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(-1)  # (S, B)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(z.shape[0])
    exact = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
    assert torch.all((mc - exact).abs() < 5 * se), (mc, exact, se)


def test_kl_is_zero_iff_q_equals_p_and_positive_otherwise():
    mu_q, logvar_q, mu_p, logvar_p = _gaussians()
    torch.testing.assert_close(gaussian_kl(mu_q, logvar_q, mu_q, logvar_q), torch.zeros(5, dtype=torch.float64))
    assert torch.all(gaussian_kl(mu_q, logvar_q, mu_p, logvar_p) > 0)


def test_kl_is_finite_for_extreme_log_variances():
    mu = torch.zeros(2, 3)
    logvar_q = torch.tensor([[-60.0, 0.0, 60.0], [30.0, -30.0, 0.0]])
    kl = gaussian_kl(mu, logvar_q, mu, torch.zeros(2, 3))
    assert torch.isfinite(kl).all()
    torch.testing.assert_close(kl, standard_normal_kl(mu, logvar_q))


def test_standard_kind_gives_the_usual_vae_kl():
    mu, logvar, _, _ = _gaussians()
    mu_p, logvar_p = _prior("standard", D=7)(torch.full((5, 4), 0.25, dtype=torch.float64))
    assert torch.equal(mu_p, torch.zeros(5, 7, dtype=torch.float64)) and torch.equal(logvar_p, mu_p)
    by_hand = 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar, mu_p, logvar_p), by_hand)
    torch.testing.assert_close(standard_normal_kl(mu, logvar), by_hand)


# --- Eq. 4 ---------------------------------------------------------------------------------------------------


def test_additive_prior_matches_hand_computation():
    w = torch.tensor([[0.25, 0.75]], dtype=torch.float64)
    mu_k = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    sigma_k = torch.tensor([[1.0, 2.0], [0.5, 1.0]], dtype=torch.float64)
    mu_p, logvar_p = additive_prior(w, mu_k, sigma_k.log())
    # mean 0.25*mu_1 + 0.75*mu_2; var 0.0625*sigma_1^2 + 0.5625*sigma_2^2
    torch.testing.assert_close(mu_p, torch.tensor([[2.5, -0.25]], dtype=torch.float64))
    torch.testing.assert_close(logvar_p.exp(), torch.tensor([[0.203125, 0.8125]], dtype=torch.float64))


def test_additive_variance_shrinks_for_spread_weights():
    prior = AdditiveFocalPrior(_centres(8), 5)  # sigma_k = 1 at init
    _, logvar_p = prior(torch.full((1, 8), 1 / 8))
    torch.testing.assert_close(logvar_p.exp(), torch.full((1, 5), 1 / 8))  # sigma_k^2 / K


def test_one_hot_weights_reduce_to_single_gaussian_kl():
    prior = _prior(K=4, D=3)
    mu, logvar, _, _ = _gaussians(B=4, D=3, seed=3)
    w = torch.eye(4, dtype=torch.float64)  # example b sits on focal point b
    mu_p, logvar_p = prior(w)
    torch.testing.assert_close(mu_p, prior.mu_k.detach())
    torch.testing.assert_close(logvar_p, 2 * prior.log_sigma_k.detach())
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(prior.mu_k, prior.log_sigma_k.exp())).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar, mu_p, logvar_p), ref.detach())


def test_gradient_flows_to_focal_means_and_spreads():
    prior = _prior(K=4, D=3)
    mu, logvar, _, _ = _gaussians(B=6, D=3, seed=4)
    w = torch.softmax(torch.randn(6, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64), 1)
    gaussian_kl(mu, logvar, *prior(w)).mean().backward()
    for p in (prior.mu_k, prior.log_sigma_k):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().min() > 0


def test_one_hot_weights_give_finite_gradients():
    prior = _prior(K=3, D=2)
    w = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    mu_p, logvar_p = prior(w)
    mu_q, logvar_q = torch.ones(1, 2, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    gaussian_kl(mu_q, logvar_q, mu_p, logvar_p).sum().backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(prior.log_sigma_k.grad).all()


def test_standard_kind_freezes_unused_parameters():
    prior = AdditiveFocalPrior(_centres(4), 3, kind="standard")
    assert not prior.mu_k.requires_grad and not prior.log_sigma_k.requires_grad
    assert AdditiveFocalPrior(_centres(4), 3).mu_k.requires_grad


def test_mu_k_init_on_unit_sphere_and_seeded():
    a, b = AdditiveFocalPrior(_centres(8), 16, seed=3), AdditiveFocalPrior(_centres(8), 16, seed=3)
    torch.testing.assert_close(a.mu_k.norm(dim=1), torch.ones(8))
    assert torch.equal(a.mu_k, b.mu_k) and not torch.equal(a.mu_k, AdditiveFocalPrior(_centres(8), 16, seed=4).mu_k)
    assert torch.equal(a.log_sigma_k, torch.zeros(8, 16))


def test_additive_sample_moments():
    prior = _prior(K=4, D=3)
    w = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64).expand(40_000, -1)
    z = prior.sample(w, torch.Generator().manual_seed(0)).detach()
    mu_p, logvar_p = (t.detach() for t in prior(w[:1]))
    se = (0.5 * logvar_p).exp() / math.sqrt(len(z))
    assert torch.all((z.mean(0) - mu_p[0]).abs() < 5 * se[0])
    torch.testing.assert_close(z.var(0), logvar_p[0].exp(), rtol=0.05, atol=0)


# --- GMM-sampled prior ---------------------------------------------------------------------------------------


def test_gmm_sampled_frequencies_follow_weights():
    prior = _prior("gmm_sampled", K=4, D=3)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    n = 20_000
    mu_p, logvar_p = prior(w.expand(n, -1), generator=torch.Generator().manual_seed(0))
    match = (mu_p[:, None, :] == prior.mu_k[None].detach()).all(-1)  # (n, K)
    assert torch.all(match.sum(1) == 1)  # every draw is exactly one focal Gaussian ...
    k = match.int().argmax(1)
    torch.testing.assert_close(logvar_p, 2 * prior.log_sigma_k.detach()[k])  # ... with its own spread
    counts = torch.bincount(k, minlength=4).double()
    chi2 = ((counts - n * w) ** 2 / (n * w)).sum()
    assert chi2 < 21.1  # chi-square, 3 dof: P(chi2 > 21.1) ~ 1e-4
    w_rows = torch.eye(4, dtype=torch.float64)[[3, 0, 2, 1]]  # each example on its own focal point
    mu_rows, _ = prior(w_rows, generator=torch.Generator().manual_seed(1))
    assert torch.equal(mu_rows, prior.mu_k.detach()[[3, 0, 2, 1]])


def test_gmm_sampled_is_deterministic_with_seeded_generator():
    prior = _prior("gmm_sampled", K=4, D=3)
    w = torch.softmax(torch.randn(64, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64), 1)
    a = prior(w, generator=torch.Generator().manual_seed(7))[0]
    b = prior(w, generator=torch.Generator().manual_seed(7))[0]
    c = prior(w, generator=torch.Generator().manual_seed(8))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    za = prior.sample(w, torch.Generator().manual_seed(7))
    assert torch.equal(za, prior.sample(w, torch.Generator().manual_seed(7)))


def test_prior_params_dispatches_on_kind():
    prior = _prior("additive", K=4, D=3)
    w = torch.softmax(torch.randn(5, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64), 1)
    for kind in ("additive", "standard"):
        torch.testing.assert_close(prior_params(prior, kind, w), _prior(kind, K=4, D=3)(w))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    torch.testing.assert_close(prior_params(prior, "gmm_sampled", w, g1), _prior("gmm_sampled")(w, generator=g2))
    mu_p, logvar_p = prior_params(None, "standard", w, z_dim=3)
    assert mu_p.shape == logvar_p.shape == (5, 3) and not mu_p.any() and not logvar_p.any()
    with pytest.raises(ValueError):
        prior_params(None, "additive", w)
    with pytest.raises(ValueError, match="frozen"):
        prior_params(_prior("standard"), "additive", w)


def test_unknown_kind_rejected():
    with pytest.raises(ValueError, match="unknown prior"):
        AdditiveFocalPrior(_centres(4), 3, kind="mixture")


# --- Focal weights -------------------------------------------------------------------------------------------


def test_focal_weights_are_a_distribution_ordered_by_cosine():
    g = torch.Generator().manual_seed(0)
    centres, feats = torch.rand(5, 12, generator=g), torch.rand(30, 12, generator=g)
    w = focal_weights(feats, centres)
    assert w.shape == (30, 5) and torch.all(w >= 0)
    torch.testing.assert_close(w.sum(1), torch.ones(30))
    cos = F.cosine_similarity(feats[:, None], centres[None], dim=-1)  # (30, 5)
    assert torch.equal(w.argmax(1), cos.argmax(1))


def test_feature_equal_to_centre_gets_its_largest_weight():
    centres = torch.rand(6, 12, generator=torch.Generator().manual_seed(1))
    w = focal_weights(centres, centres, temperature=0.5)
    assert torch.equal(w.argmax(1), torch.arange(6))


def test_temperature_to_zero_gives_one_hot():
    g = torch.Generator().manual_seed(2)
    centres, feats = torch.rand(5, 12, generator=g), torch.rand(30, 12, generator=g)
    nearest = F.cosine_similarity(feats[:, None], centres[None], dim=-1).argmax(1)
    one_hot = F.one_hot(nearest, 5).float()
    assert torch.equal(focal_weights(feats, centres, temperature=0.0), one_hot)
    torch.testing.assert_close(focal_weights(feats, centres, temperature=1e-5), one_hot, atol=1e-3, rtol=0)
    soft = focal_weights(feats, centres, temperature=10.0)  # and T -> inf flattens towards uniform
    assert (soft.max(1).values - soft.min(1).values).max() < 0.1


def test_focal_weights_accept_maps_and_features_alike():
    c, _ = _blob_maps(n_per=2)
    centres = torch.rand(3, 2 * 4 * 4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(focal_weights(c, centres), focal_weights(boundary_features(c, 4), centres))
    assert boundary_features(c, 4).shape == (6, 32)


def test_blank_boundary_map_gets_uniform_weights():
    w = focal_weights(torch.zeros(2, 8), torch.rand(4, 8, generator=torch.Generator().manual_seed(4)))
    torch.testing.assert_close(w, torch.full((2, 4), 0.25))


# --- Focal points (k-means) ----------------------------------------------------------------------------------


def test_kmeans_recovers_well_separated_clusters():
    c, labels = _blob_maps()
    centres = fit_focal_points(c, 3, downsample=8, seed=0)
    assert centres.shape == (3, 2 * 8 * 8) and centres.dtype == torch.float32
    assigned = focal_weights(c, centres).argmax(1)
    # purity: each true cluster maps to a single focal point, and the three focal points are distinct
    per_label = [torch.unique(assigned[labels == j]) for j in range(3)]
    assert all(len(u) == 1 for u in per_label)
    assert len({int(u) for u in per_label}) == 3
    assert torch.equal(centres, fit_focal_points(c, 3, downsample=8, seed=0))


def test_fit_needs_at_least_k_maps():
    with pytest.raises(ValueError, match="at least"):
        fit_focal_points(torch.rand(3, 2, 8, 8), 8, downsample=4)


def test_state_dict_round_trip_keeps_centres():
    c, _ = _blob_maps(n_per=4)
    prior = AdditiveFocalPrior(fit_focal_points(c, 3, downsample=8), 5)
    state = prior.state_dict()
    assert set(state) == {"centres", "mu_k", "log_sigma_k"}
    fresh = AdditiveFocalPrior(torch.zeros(3, 2 * 8 * 8), 5, seed=1)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.centres, prior.centres) and torch.equal(fresh.mu_k, prior.mu_k)
    torch.testing.assert_close(fresh.weights(c), prior.weights(c))
