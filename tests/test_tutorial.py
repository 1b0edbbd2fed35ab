"""The tutorial's estimators and metrics (notebook 11) against closed forms."""
from __future__ import annotations

import math

import pytest
import torch

from afvae import tutorial
from afvae.model import AFVAE
from afvae.prior import additive_prior, gaussian_kl


def _sin_grads(mu: torch.Tensor, log_sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Analytic gradients of E[sin z] = sin(mu) exp(-sigma^2 / 2) w.r.t. mu and log sigma."""
    s2 = torch.exp(2 * log_sigma)
    return torch.cos(mu) * torch.exp(-s2 / 2), -s2 * torch.sin(mu) * torch.exp(-s2 / 2)


@pytest.mark.parametrize("estimator", [tutorial.reparam_grad, tutorial.score_function_grad])
def test_gradient_estimators_are_unbiased(estimator):
    mu = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    log_sigma = torch.tensor([-0.5, 0.0, 0.3], dtype=torch.float64)
    g = estimator(torch.sin, mu, log_sigma, 20_000, torch.Generator().manual_seed(0))
    d_mu, d_ls = _sin_grads(mu, log_sigma)
    assert ((g["mu"] - d_mu).abs() < 5 * g["mu_se"]).all()
    assert ((g["log_sigma"] - d_ls).abs() < 5 * g["log_sigma_se"]).all()
    assert (g["mu_se"] < 0.05).all()  # 20k draws: the test has power


def test_reparameterisation_has_lower_variance_here():
    mu, log_sigma = torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    rep = tutorial.reparam_grad(torch.sin, mu, log_sigma, 5000, gen)
    sf = tutorial.score_function_grad(torch.sin, mu, log_sigma, 5000, gen)
    assert (rep["mu_se"] < sf["mu_se"]).all()


def test_mc_kl_agrees_with_closed_form_and_detects_a_wrong_one():
    g = torch.Generator().manual_seed(0)
    mu_q, mu_p, logvar_q, logvar_p = torch.randn(4, 6, 5, generator=g, dtype=torch.float64)
    mc, se = tutorial.mc_kl(mu_q, logvar_q, mu_p, logvar_p, 50_000, g)
    closed = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
    assert ((mc - closed).abs() < 5 * se).all()
    reverse = gaussian_kl(mu_p, logvar_p, mu_q, logvar_q)  # KL is not symmetric: the wrong direction must fail
    assert ((mc - reverse).abs() > 5 * se).any()


def test_additive_samples_have_the_moments_of_eq4():
    g = torch.Generator().manual_seed(0)
    mu_k, log_sigma_k = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    w = torch.softmax(torch.randn(5, 3, generator=g, dtype=torch.float64), dim=1)
    z = tutorial.additive_samples(w, mu_k, log_sigma_k, 40_000, g)  # (n, B, D)
    mu_p, logvar_p = additive_prior(w, mu_k, log_sigma_k)
    sd = torch.exp(0.5 * logvar_p)
    assert ((z.mean(0) - mu_p).abs() < 5 * sd / 200).all()  # 5 SE of the mean
    assert torch.allclose(z.var(0), sd**2, rtol=0.05)


def test_prior_path_ends_and_midpoint():
    mu_k = torch.tensor([[-2.0, 0.0], [2.0, 1.0]])
    log_sigma_k = torch.log(torch.tensor([[0.5, 0.5], [0.8, 0.8]]))
    t = torch.tensor([0.0, 0.5, 1.0])
    q_mu, q_logvar = torch.tensor([0.5, 0.5]), torch.log(torch.tensor([0.09, 0.09]))
    path = tutorial.prior_path(mu_k, log_sigma_k, t, 2000, q_mu, q_logvar, torch.Generator().manual_seed(0))
    assert torch.allclose(path["additive_mean"][1], mu_k.mean(0))
    assert (path["components"][0] == 0).all() and (path["components"][2] == 1).all()
    assert 0.4 < path["components"][1].float().mean() < 0.6
    kl_k = gaussian_kl(q_mu[None], q_logvar[None], mu_k, 2 * log_sigma_k)  # (2,)
    assert torch.allclose(path["kl_additive"][[0, 2]], kl_k)  # one-hot w: the additive prior is the component
    assert set(path["kl_gmm"][1].unique().tolist()) == set(kl_k.tolist())  # a GMM draw sees one of two values


def test_collapse_metrics():
    x = torch.rand(2, 5, 3, 8, 8) * 2 - 1
    same = x[:, :1].expand(-1, 5, -1, -1, -1)
    assert tutorial.collapse_metrics(same, x[0, 0])["diversity"] == 0
    assert tutorial.collapse_metrics(x, x[0, 0])["diversity"] > 0.3
    assert tutorial.collapse_metrics(same, x[:, 0])["to_mean_face"] == pytest.approx(0)  # one mean face per map
    with pytest.raises(ValueError, match="n >= 2"):
        tutorial.collapse_metrics(x[:, :1], x[0, 0])


def test_tiny_config():
    a = tutorial.tiny_config("default", "standard", 1e-5)
    b = tutorial.tiny_config("default", "additive", 1e-5)
    c = tutorial.tiny_config("default", "additive", 1e-3)
    assert a.model.prior == "standard" and b.model.prior == "additive" and a.loss.feature_net == "none"
    assert a.data.size == a.model.resolution == 32 and c.loss.beta == 1e-3
    assert len({a.hash(), b.hash(), c.hash()}) == 3
    assert tutorial.tiny_config("smoke", "additive", 1e-5).train.steps < a.train.steps
    with pytest.raises(ValueError, match="unknown scale"):
        tutorial.tiny_config("huge", "additive", 1e-5)


def _model(prior: str, seed: int = 0) -> AFVAE:
    cfg = tutorial.tiny_config("smoke", prior, 1e-3).model
    torch.manual_seed(seed)
    centres = torch.rand(cfg.n_focal, cfg.boundary_channels * 16 * 16)
    return AFVAE(cfg, centres).eval()


def test_refit_prior_lowers_the_kl_and_leaves_the_model(batch):
    model = _model("additive")
    before = {k: v.clone() for k, v in model.prior.state_dict().items()}
    refit = tutorial.refit_prior(model, batch["x"], batch["c"], steps=200)
    kl_old, kl_new = (tutorial.latent_fit(m, batch["x"], batch["c"])["kl"] for m in (model, refit))
    assert kl_new < 0.8 * kl_old
    assert all(torch.equal(v, model.prior.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="additive prior"):
        tutorial.refit_prior(_model("standard"), batch["x"], batch["c"])


def test_prior_samples_and_swaps(batch):
    model = _model("additive")
    s1, s2 = (tutorial.prior_samples(model, batch["c"][:2], 3, seed=5) for _ in range(2))
    assert s1.shape == (2, 3, 3, 32, 32) and torch.equal(s1, s2)
    swaps = tutorial.posterior_swaps(model, batch["x"], batch["c"], batch["c"][:2], 4, seed=0)
    assert swaps.shape == (2, 4, 3, 32, 32) and math.isfinite(float(swaps.sum()))
    with pytest.raises(ValueError, match="at least n"):
        tutorial.posterior_swaps(model, batch["x"][:2], batch["c"][:2], batch["c"][:2], 4, seed=0)
