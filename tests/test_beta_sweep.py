"""afvae.beta_sweep: the KL's share of the loss, paired advantages and their verdicts, the active β."""
import numpy as np
import pandas as pd
import pytest
import torch

from afvae import beta_sweep as bs
from afvae.model import AFVAE


def test_configs_change_only_beta():
    cfgs = bs.configs("smoke", betas=[1e-5, 1e-3])
    assert set(cfgs) == {(v, b) for v in bs.PRIORS for b in (1e-5, 1e-3)}
    low, high = cfgs[("full", 1e-5)], cfgs[("full", 1e-3)]
    assert (low.loss.beta, high.loss.beta) == (1e-5, 1e-3) and low.hash() != high.hash()
    assert high.replace(loss={"beta": 1e-5}).hash() == low.hash()


def test_kl_share_is_beta_kl_over_loss_at_the_end():
    h = pd.DataFrame({"step": range(10, 210, 10), "kl": [1000.0] * 15 + [200.0] * 5,
                      "loss": [1.0] * 15 + [0.1] * 5})
    out = bs.kl_share(h, beta=1e-4, tail=5)
    assert out == {"kl": 200.0, "loss": pytest.approx(0.1), "kl_share": pytest.approx(0.2), "step": 200}
    with pytest.raises(ValueError, match="kl and loss"):
        bs.kl_share(h.drop(columns="kl"), 1e-4)


def test_advantage_is_signed_for_the_paper_and_paired():
    rng = np.random.default_rng(0)
    hard = rng.uniform(0, 1, 400)  # pairs differ a lot; the paper's method is better by 0.01 on each
    paper, other = hard, hard + 0.01
    out = bs.advantage(paper, other, "min")
    assert out["advantage"] == pytest.approx(0.01) and out["lo"] > 0 and out["verdict"] == "holds"
    assert bs.advantage(paper, other, "max")["verdict"] == "fails"  # higher is better: the other wins
    shuffled = bs.advantage(paper, rng.permutation(other), "min")  # unpaired: the spread hides the gap
    assert shuffled["verdict"] == "undecided (CI overlaps)"


def test_advantage_drops_nan_pairs_and_needs_the_same_pairs():
    out = bs.advantage(np.array([0.1, np.nan, 0.2]), np.array([0.3, 0.4, np.nan]), "min")
    assert out["n"] == 1 and out["advantage"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="same pairs"):
        bs.advantage(np.zeros(3), np.zeros(4), "min")


def _pairs(shift: dict[str, float], n: int = 50) -> pd.DataFrame:
    base = np.linspace(0.1, 0.3, n)
    rows = [pd.DataFrame({"variant": v, "beta": b, "pair": np.arange(n), **{m: base + s for m in bs.BETTER}})
            for b in (1e-5, 1e-3) for v, s in shift.items()]
    return pd.concat(rows, ignore_index=True)


def test_advantages_compare_the_paper_with_each_baseline_per_beta_and_metric():
    out = bs.advantages(_pairs({"full": 0.0, "standard_prior": 0.02, "gmm_sampled": -0.01}))
    assert len(out) == 2 * 2 * len(bs.BETTER)
    std = out[(out.baseline == "standard_prior") & (out.metric == "gt_l1")]
    assert np.allclose(std["advantage"], 0.02) and set(std["verdict"]) == {"holds"}
    ssim = out[(out.baseline == "standard_prior") & (out.metric == "gt_ssim")]  # higher is better: reversed
    assert np.allclose(ssim["advantage"], -0.02) and set(ssim["verdict"]) == {"fails"}
    gmm = out[(out.baseline == "gmm_sampled") & (out.metric == "landmark_nme")]
    assert set(gmm["verdict"]) == {"fails"}


def test_advantages_refuse_different_pairs():
    pairs = _pairs({"full": 0.0, "standard_prior": 0.02})
    pairs.loc[pairs["variant"] == "standard_prior", "pair"] += 1
    with pytest.raises(ValueError, match="different pairs"):
        bs.advantages(pairs, baselines=["standard_prior"])


def test_active_needs_both_kl_share_and_varied_samples_for_every_variant():
    assert bs.is_active(0.2, 0.8) and not bs.is_active(0.05, 0.8) and not bs.is_active(0.2, 0.1)
    table = pd.DataFrame({"beta": [1e-5, 1e-5, 1e-3, 1e-3, 1e-2, 1e-2], "active": [False, False, True, False,
                                                                                   True, True]})
    assert bs.first_beta(table) == 1e-2
    assert bs.first_beta(table.assign(active=False)) is None
    assert bs.first_beta(table.rename(columns={"active": "varied"}), "varied") == 1e-2


def test_sample_diversity_compares_prior_samples_with_posterior_swaps(tiny_cfg, batch):
    torch.manual_seed(0)
    cfg = tiny_cfg.model
    model = AFVAE(cfg, torch.rand(cfg.n_focal, cfg.boundary_channels * cfg.focal_downsample ** 2)).eval()
    faces = {"x": batch["x"], "c": batch["c"]}
    out = bs.sample_diversity(model, faces, batch["c"][:2], batch["x"].mean(0), n=4, seed=0)
    assert out == bs.sample_diversity(model, faces, batch["c"][:2], batch["x"].mean(0), n=4, seed=0)  # seeded
    assert out["prior_diversity"] > 0 and out["posterior_diversity"] > 0
    assert out["diversity_ratio"] == pytest.approx(out["prior_diversity"] / out["posterior_diversity"])
    with torch.no_grad():  # a prior with (almost) no spread: every sample is the prior mean, one face per map
        model.prior.log_sigma_k.fill_(-30.0)
    still = bs.sample_diversity(model, faces, batch["c"][:2], batch["x"].mean(0), n=4, seed=0)
    assert still["prior_diversity"] < 1e-4 * out["prior_diversity"] and still["diversity_ratio"] < 1e-3
