"""Loss terms against hand computations; the gradient paths they must (and must not) open."""
from __future__ import annotations

import pytest
import torch

from afvae.losses import elbo_terms, feature_matching, l1


def _inputs(B: int = 2, D: int = 3) -> dict[str, torch.Tensor]:
    return {
        "x": torch.zeros(B, 3, 4, 4),
        "x_hat": torch.full((B, 3, 4, 4), 0.5),
        "mu": torch.ones(B, D),  # q = N(1, 1) per dimension
        "logvar": torch.zeros(B, D),
        "mu_p": torch.zeros(B, D),  # p = N(0, 1)
        "logvar_p": torch.zeros(B, D),
    }


def test_l1_by_hand():
    x = torch.tensor([[1.0, -1.0], [0.0, 0.5]])
    x_hat = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    torch.testing.assert_close(l1(x=x, x_hat=x_hat), torch.tensor((1 + 0 + 1 + 0.5) / 4))


def test_feature_matching_by_hand():
    feats_x = [torch.zeros(2, 4, 3, 3), torch.ones(2, 8, 1, 1)]
    feats_x_hat = [torch.full((2, 4, 3, 3), 2.0), torch.full((2, 8, 1, 1), 0.25)]
    out = feature_matching(feats_x=feats_x, feats_x_hat=feats_x_hat, weights=[0.5, 4.0])
    torch.testing.assert_close(out, torch.tensor(0.5 * 2.0 + 4.0 * 0.75))


def test_feature_matching_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        feature_matching(feats_x=[torch.zeros(1)], feats_x_hat=[torch.zeros(1)], weights=[1.0, 1.0])


def test_feature_targets_are_detached():
    feats_x = [torch.randn(2, 4, 3, 3, requires_grad=True)]
    feats_x_hat = [torch.randn(2, 4, 3, 3, requires_grad=True)]
    feature_matching(feats_x=feats_x, feats_x_hat=feats_x_hat, weights=[1.0]).backward()
    assert feats_x[0].grad is None
    assert feats_x_hat[0].grad is not None and feats_x_hat[0].grad.abs().sum() > 0


def test_elbo_terms_by_hand_and_loss_is_the_stated_sum():
    feats = {"feats_x": [torch.zeros(2, 4, 2, 2)], "feats_x_hat": [torch.full((2, 4, 2, 2), 3.0)]}
    terms = elbo_terms(**_inputs(), **feats, feature_weights=[2.0], feature_weight=0.1, beta=0.01)
    assert set(terms) == {"l1", "feature", "kl", "loss"}
    torch.testing.assert_close(terms["l1"], torch.tensor(0.5))
    torch.testing.assert_close(terms["feature"], torch.tensor(6.0))  # 2.0 * |3 - 0|
    torch.testing.assert_close(terms["kl"], torch.tensor(1.5))  # 0.5 * sum_d mu^2 = 0.5 * 3, same per example
    torch.testing.assert_close(terms["loss"], torch.tensor(0.5 + 0.1 * 6.0 + 0.01 * 1.5))


def test_kl_is_batch_mean_of_per_example_sum():
    inp = _inputs(B=2, D=3)
    inp["mu"] = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]])  # per-example KL 1.5 and 2.0
    torch.testing.assert_close(elbo_terms(**inp, beta=1.0)["kl"], torch.tensor(1.75))


def test_no_features_means_zero_feature_term():
    terms = elbo_terms(**_inputs(), beta=1.0)
    assert terms["feature"].item() == 0.0
    torch.testing.assert_close(terms["loss"], terms["l1"] + terms["kl"])


def test_kl_false_removes_kl_and_its_gradient():
    inp = _inputs()
    for k in ("mu", "logvar", "mu_p", "logvar_p", "x_hat"):
        inp[k].requires_grad_(True)
    terms = elbo_terms(**inp, beta=1.0, kl=False)
    assert terms["kl"].item() == 0.0
    torch.testing.assert_close(terms["loss"], terms["l1"])
    terms["loss"].backward()
    assert all(inp[k].grad is None for k in ("mu", "logvar", "mu_p", "logvar_p"))
    assert inp["x_hat"].grad is not None
    with_kl = _inputs()
    with_kl["logvar"].requires_grad_(True)
    elbo_terms(**with_kl, beta=1.0)["loss"].backward()
    assert with_kl["logvar"].grad is not None  # the same call with kl=True does reach the posterior


def test_zero_when_reconstruction_and_posterior_are_perfect():
    g = torch.Generator().manual_seed(0)
    x, mu, logvar = torch.rand(2, 3, 4, 4, generator=g), torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    feats = [torch.randn(2, 4, 2, 2, generator=g)]
    terms = elbo_terms(
        x=x, x_hat=x.clone(), mu=mu, logvar=logvar, mu_p=mu.clone(), logvar_p=logvar.clone(), beta=1.0,
        feats_x=feats, feats_x_hat=[f.clone() for f in feats],
    )
    for name in ("l1", "feature", "kl", "loss"):
        assert terms[name].abs().item() < 1e-6, name


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        l1(torch.zeros(1), torch.zeros(1))  # type: ignore[misc]


def test_losses_of_bf16_activations_are_fp32():
    """Under autocast the networks run in bf16; the losses are taken in fp32 (so is the KL, ``prior``)."""
    g = torch.Generator().manual_seed(0)
    x, x_hat = (torch.rand(2, 3, 8, 8, generator=g) for _ in range(2))
    f, f_hat = (torch.rand(2, 4, 4, 4, generator=g) for _ in range(2))
    bx, bf = x_hat.bfloat16(), f_hat.bfloat16()
    assert l1(x=x, x_hat=bx).dtype == torch.float32
    assert torch.equal(l1(x=x, x_hat=bx), l1(x=x, x_hat=bx.float()))
    fm = feature_matching(feats_x=[f.bfloat16()], feats_x_hat=[bf], weights=[1.0])
    assert fm.dtype == torch.float32 and torch.equal(fm, feature_matching(feats_x=[f.bfloat16().float()],
                                                                          feats_x_hat=[bf.float()], weights=[1.0]))


def test_ssim_term_is_one_minus_the_metric_and_opt_in():
    from afvae.losses import ssim_loss
    from afvae.metrics import ssim

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    x_hat = (x + 0.3 * torch.randn(2, 3, 16, 16, generator=g)).clamp(-1, 1).requires_grad_()
    inp = {**_inputs(), "x": x, "x_hat": x_hat}
    assert "ssim" not in elbo_terms(**inp, beta=0.0)  # off by default: the paper's loss
    terms = elbo_terms(**inp, beta=0.0, ssim_weight=2.0)
    torch.testing.assert_close(terms["ssim"], 1 - ssim(x_hat.detach(), x).mean(), atol=1e-6, rtol=0)
    torch.testing.assert_close(terms["loss"], terms["l1"] + 2.0 * terms["ssim"])
    terms["loss"].backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert float(ssim_loss(x=x, x_hat=x)) == pytest.approx(0.0, abs=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # computed in float32 even under autocast
        torch.testing.assert_close(ssim_loss(x=x, x_hat=x_hat.detach()), terms["ssim"].detach())
