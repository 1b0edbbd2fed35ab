"""afvae.analysis: the figure notebooks' computations, against closed forms and references."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from afvae import analysis
from afvae.config import ModelConfig, get_config
from afvae.data.datasets import build_dataset
from afvae.data.synthetic import EXPRESSIONS, Structure
from afvae.features import FactorNet
from afvae.metrics import identity_similarity
from afvae.model import AFVAE


@pytest.fixture(scope="module")
def test_set():
    return build_dataset(get_config("smoke").data, "test")


@pytest.fixture(scope="module")
def model():
    cfg = ModelConfig(resolution=32, base_width=8, max_width=32, z_dim=16)
    torch.manual_seed(0)
    return AFVAE(cfg, torch.rand(8, cfg.boundary_channels * 16 * 16)).eval()


# ---------------------------------------------------------------------------------------------------------
# Colour statistics (04)

def test_entropy_closed_forms():
    assert float(analysis.entropy_bits(torch.full((256,), 1 / 256))) == pytest.approx(8.0)
    assert float(analysis.entropy_bits(torch.eye(4)[1])) == 0.0  # 0 log 0 = 0
    p = torch.tensor([0.5, 0.25, 0.25])
    assert float(analysis.entropy_bits(p)) == pytest.approx(1.5)


def test_js_divergence_matches_scipy():
    g = torch.Generator().manual_seed(0)
    p, q = torch.rand(2, 32, generator=g).double().softmax(-1)
    expected = jensenshannon(p.numpy(), q.numpy(), base=2) ** 2  # scipy returns the distance, its square root
    assert float(analysis.js_divergence_bits(p, q)) == pytest.approx(expected, rel=1e-6)
    assert float(analysis.js_divergence_bits(p, p)) == pytest.approx(0.0, abs=1e-12)
    assert float(analysis.js_divergence_bits(torch.eye(2)[0], torch.eye(2)[1])) == pytest.approx(1.0)


def test_colour_histograms_of_known_images():
    white_red = torch.stack([torch.ones(3, 4, 4), torch.tensor([1.0, -1.0, -1.0])[:, None, None].expand(3, 4, 4)])
    h = analysis.colour_histograms(white_red)  # (4, 256): half the pixels white, half pure red
    assert h.shape == (4, 256) and torch.allclose(h.sum(1), torch.ones(4, dtype=h.dtype))
    assert h[0, 255] == 1.0  # red is 255 everywhere
    assert h[1, 0] == 0.5 and h[1, 255] == 0.5
    assert h[3, 255] == 0.5 and h[3, round(0.299 * 255)] == 0.5  # luminance of white and of red
    assert torch.allclose(analysis.colour_histograms(white_red, bins=4)[1], torch.tensor([0.5, 0, 0, 0.5]).double())
    assert analysis.joint_colour_entropy(white_red) == pytest.approx(1.0)  # two colours, equally often


def test_colour_table_reference_row_is_zero():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1
    table = analysis.colour_table({"source": x, "flat": x * 0.1}, reference="source")
    src, flat = table.set_index("images").loc["source"], table.set_index("images").loc["flat"]
    assert src["JS_R"] == pytest.approx(0.0, abs=1e-12)
    assert flat["H_luminance"] < src["H_luminance"] and flat["JS_luminance"] > 0.1


def test_image_channel_counts_sum_to_the_pooled_histograms():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, 6, 7, generator=g) * 2 - 1
    counts = analysis.image_channel_counts(x)  # (5, 4, 256)
    assert counts.shape == (5, 4, 256) and (counts.sum(-1) == 42).all()
    assert torch.equal(counts[2], analysis.image_channel_counts(x[2:3])[0])  # each row is that image alone
    pooled = analysis.colour_histograms(x)
    assert torch.allclose(counts.sum(0) / counts.sum((0, 2))[:, None], pooled)


def test_bootstrap_weights_resample_with_replacement():
    w = analysis.bootstrap_weights(7, 500, seed=3)
    assert w.shape == (500, 7) and (w.sum(1) == 7).all() and (w >= 0).all()
    assert torch.equal(w, analysis.bootstrap_weights(7, 500, seed=3))
    assert not torch.equal(w, analysis.bootstrap_weights(7, 500, seed=4))
    assert w.mean(0).sub(1).abs().max() < 0.15  # each item drawn once per resample on average
    assert (w == 0).any(1).float().mean() > 0.9  # with replacement: most resamples miss some item


def test_pooled_entropy_with_weights_matches_concatenation():
    g = torch.Generator().manual_seed(2)
    counts = torch.randint(0, 20, (4, 2, 8), generator=g).double()
    w = torch.tensor([[2.0, 0, 1, 1], [1, 1, 1, 1]])  # resample 0 draws item 0 twice and skips item 1
    h = analysis.pooled_entropy(counts, w)
    assert torch.allclose(h[0], analysis.pooled_entropy(counts[[0, 0, 2, 3]]))
    assert torch.allclose(h[1], analysis.pooled_entropy(counts))


def _colour_sets(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Per-image counts (32 bins) of n random images, of a copy with slight noise, and of one flattened to a
    quarter of the range."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    kept = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    sets = {"source": x, "kept": kept, "flat": x * 0.25}
    return {k: analysis.image_channel_counts(v, bins=32) for k, v in sets.items()}


def test_entropy_comparison_finds_the_closer_set_and_covers_the_large_sample_gap():
    """The slightly noisy copy is closer to the source in every channel, with an interval above 0, and the
    interval from 40 images covers the gap measured on 4,000 others. A percentile interval would miss it: the
    plug-in entropy of these few pixels is biased low, and every resample more so."""
    entropies, adv = analysis.entropy_comparison(_colour_sets(40, 0), "source", "kept", "flat", n_boot=500, seed=0)
    assert list(adv["channel"]) == [*analysis.CHANNELS, analysis.RGB_MEAN]
    assert (adv["lo"] > 0).all()
    large = {k: analysis.pooled_entropy(c) for k, c in _colour_sets(4000, 99).items()}
    truth = analysis.entropy_gaps(large, "source", "kept", "flat")[2].numpy()  # (5,)
    assert ((adv["lo"] < truth) & (truth < adv["hi"])).all(), (adv, truth)
    assert np.allclose(adv["diff"], adv["gap_baseline"] - adv["gap_method"])
    assert adv["gap_method"].iloc[4] == pytest.approx(adv["gap_method"].iloc[:3].mean())
    assert (entropies["lo"] < entropies["hi"]).all()
    reverse = analysis.entropy_comparison(_colour_sets(40, 0), "source", "flat", "kept", n_boot=500, seed=0)[1]
    assert (reverse["hi"] < 0).all()


def test_entropy_by_seed_pools_and_splits():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 10, 3, 4, 4, generator=g) * 2 - 1  # (seeds, N, 3, H, W)
    counts = {"source": analysis.image_channel_counts(torch.cat([x[0], x[0]])),
              "a": analysis.image_channel_counts(x.flatten(0, 1)),
              "b": analysis.image_channel_counts((x * 0.5).flatten(0, 1))}
    entropies, adv = analysis.entropy_by_seed(counts, [0, 1], "source", "a", "b", n_boot=50)
    assert set(adv["seeds"]) == {"pooled", "0", "1"} and len(adv) == 3 * 5
    one = entropies[(entropies["seeds"] == "1") & (entropies["images"] == "a")]["H"].to_numpy()
    assert np.allclose(one, analysis.pooled_entropy(analysis.image_channel_counts(x[1])).numpy())
    assert set(analysis.entropy_by_seed(counts, [0], "source", "a", "b", n_boot=50)[1]["seeds"]) == {"pooled"}
    with pytest.raises(ValueError, match="same number of items"):
        analysis.entropy_comparison({"source": counts["source"][:5], "a": counts["a"]}, "source", "a", "a")


# ---------------------------------------------------------------------------------------------------------
# Seeds (05)

def test_convergence_curves_and_summary_against_numpy():
    steps = [5, 10, 15]
    runs = {s: pd.DataFrame({"step": steps, "l1": v}) for s, v in enumerate(([0.3, 0.2, 0.1], [0.5, 0.3, 0.2]))}
    curves = analysis.convergence_curves({"a": runs, "b": {0: runs[1]}})
    assert len(curves) == 9 and np.allclose(curves[curves["label"] == "b"]["value"], [0.25, 0.15, 0.1])
    summary = analysis.convergence_summary(curves).set_index(["label", "seed"])
    assert summary.loc[("a", 0), "train_l1_mean"] == pytest.approx(0.1) and summary.loc[("a", 1), "train_l1_last"] == 0.1
    assert len(summary) == 3


# ---------------------------------------------------------------------------------------------------------
# Pairs, contours and structures (06, 08)

def test_landmark_and_contour_distances_ignore_position_and_size(test_set):
    lm = test_set.landmarks[:4]
    moved = lm * 1.7 + torch.tensor([3.0, -2.0])
    assert torch.allclose(analysis.landmark_distance(lm, moved), torch.zeros(4), atol=1e-5)
    assert torch.allclose(analysis.contour_distance(lm, moved), torch.zeros(4), atol=1e-5)
    assert float(analysis.contour_distance(lm[0], lm[1:]).min()) > 0


def test_pick_contrasting_pair(test_set):
    a, b = analysis.pick_contrasting_pair(test_set.identity, test_set.landmarks, seed=3)
    assert (a, b) == analysis.pick_contrasting_pair(test_set.identity, test_set.landmarks, seed=3)
    assert test_set.identity[a] != test_set.identity[b]
    d = analysis.landmark_distance(test_set.landmarks[a], test_set.landmarks)
    other = test_set.identity != test_set.identity[a]
    assert float(d[b]) == pytest.approx(float(d[other].max()))


def test_contour_donors(test_set):
    similar, different, d = analysis.contour_donors(test_set.identity, test_set.landmarks, 0)
    other = test_set.identity != test_set.identity[0]
    assert other[similar] and other[different]
    assert float(d[similar]) == float(d[other].min()) and float(d[different]) == float(d[other].max())


def test_lerp_landmarks_and_boundary_maps(test_set):
    a, b = test_set.landmarks[0], test_set.landmarks[1]
    lm = analysis.lerp_landmarks(a, b, torch.linspace(0, 1, 5))
    assert torch.equal(lm[0], a) and torch.allclose(lm[-1], b) and torch.allclose(lm[2], (a + b) / 2)
    c = test_set.boundaries(lm[[0, -1]])
    assert torch.allclose(c, test_set.get_batch([0, 1])["c"], atol=1e-5)


def test_items_per_identity(test_set):
    items = analysis.items_per_identity(test_set.identity, 10, seed=0)
    assert len(items) == test_set.identity.unique().numel()  # capped at the identities there are
    assert test_set.identity[items].unique().numel() == len(items)
    assert torch.equal(items, analysis.items_per_identity(test_set.identity, 10, seed=0))


def test_structures():
    src = Structure.create(yaw=20.0, pitch=-5.0, roll=3.0, expression="smile", intensity=0.6)
    expr = analysis.expression_structures(src)
    assert len(expr) == len(EXPRESSIONS) and torch.equal(expr.yaw, torch.full((6,), 20.0))
    assert torch.equal(expr.expression, torch.eye(6))
    rot = analysis.yaw_structures(src, [-60, 0, 60])
    assert rot.yaw.tolist() == [-60, 0, 60] and torch.equal(rot.expression, src.expression.expand(3, -1))
    assert torch.equal(rot.pitch, torch.full((3,), -5.0))
    surprised = Structure.create(expression="surprise")
    assert analysis.edited_expression(surprised).expression[0].argmax() == EXPRESSIONS.index("smile")
    assert analysis.edited_expression(src).expression[0].argmax() == EXPRESSIONS.index("surprise")


# ---------------------------------------------------------------------------------------------------------
# Sweeps and identity settings (07, 08)

def test_edit_sweep_truth_and_outputs(model, test_set):
    items = torch.tensor([0, 9])
    sweep = analysis.edit_sweep(model, test_set, items, analysis.expression_structures)
    assert sweep["output"].shape == (2, 6, 3, 32, 32) and sweep["truth"].shape == (2, 6, 3, 32, 32)
    truth = test_set.true_target(9, analysis.expression_structures(test_set.structure.index(9)))
    assert torch.equal(sweep["truth"][1], truth["x"])
    x = test_set.get_batch([9])
    expected = model.translate(x["x"].expand(6, -1, -1, -1), x["c"].expand(6, -1, -1, -1), truth["c"])
    assert torch.allclose(sweep["output"][1], expected, atol=1e-5)


def test_sweep_errors_perfect_model(test_set):
    items = torch.tensor([0, 1])
    truth = test_set.get_batch(torch.arange(6))["x"].view(2, 3, 3, 32, 32)
    sweep = {"x": truth[:, 0], "output": truth, "truth": truth}
    err = analysis.sweep_errors(sweep, ["a", "b", "c"], items)
    model_rows = err[err["method"] == "AF-VAE"]
    assert len(err) == 12 and (model_rows["l1"] == 0).all() and (model_rows["psnr"] == analysis.PSNR_CAP_DB).all()
    baseline = err[err["method"] == "source unchanged"].set_index(["item", "target"])
    assert baseline.loc[(0, "a"), "l1"] == 0 and baseline.loc[(0, "b"), "l1"] > 0
    summary = analysis.summarise_errors(err.assign(edit="e"))
    assert len(summary) == 6 and (summary["n"] == 2).all()


def test_frontal_items_are_each_identitys_most_frontal(test_set):
    items = analysis.frontal_items(test_set, 2)
    yaw, ids = test_set.structure.yaw.abs(), test_set.identity
    assert len(items) == 2 * ids.unique().numel()
    for i in ids.unique():
        mine = items[ids[items] == i]
        others = (ids == i).nonzero()[:, 0]
        assert len(mine) == 2 and yaw[mine].max() <= yaw[others[~torch.isin(others, mine)]].min()


def test_rotation_summary_means_and_identity_bootstrap():
    rng = np.random.default_rng(0)
    errors = pd.DataFrame({"abs_yaw": np.repeat([0.0, 75.0], 40), "method": "m", "identity": np.tile(np.repeat(
        np.arange(4), 10), 2), "l1": rng.random(80), "ssim": rng.random(80), "changed_l1": np.r_[[np.nan] * 40,
                                                                                              rng.random(40)]})
    out = analysis.rotation_summary(errors, trained_yaw=60).set_index("abs_yaw")
    assert out.loc[0, "l1"] == pytest.approx(errors["l1"][:40].mean()) and out.loc[75, "n"] == 40
    assert out.loc[0, "in_training_range"] and not out.loc[75, "in_training_range"]
    assert np.isnan(out.loc[0, "changed_l1"]) and not np.isnan(out.loc[75, "changed_l1"])
    # resampling whole identities: the interval lies within the range of the identities' own means
    means = errors[:40].groupby("identity")["l1"].mean()
    assert means.min() <= out.loc[0, "l1_lo"] < out.loc[0, "l1"] < out.loc[0, "l1_hi"] <= means.max()


def test_identity_settings(model, test_set):
    r = analysis.identity_settings(model, test_set, 3)
    assert r["output"].shape == (3, 3, 32, 32) and int(r["donor"][0]) == 3
    assert (test_set.identity[r["donor"][1:]] != test_set.identity[3]).all()
    assert r["contour"][1] <= r["contour"][2]  # (b) the most similar contour, (c) the most different
    truth = test_set.true_target(3, test_set.structure.index(r["donor"][1:]))
    assert torch.equal(r["truth"][1:], truth["x"])  # the source's identity in the donors' structures
    assert torch.allclose(r["c_target"][1:], test_set.get_batch(r["donor"][1:])["c"])  # the donors' boundaries


def test_describe_structure():
    text = analysis.describe_structure(Structure.create(yaw=-12.4, expression="anger", intensity=0.7))
    assert "yaw -12°" in text and "anger 0.70" in text and "neutral 0.30" in text


def test_identity_scores(model, test_set):
    torch.manual_seed(0)
    net = FactorNet(analysis.N_LANDMARK_TARGETS + analysis.N_APPEARANCE_TARGETS + 9).eval()
    results = [analysis.identity_settings(model, test_set, i) for i in (0, 9)]
    scores = analysis.identity_scores(results, net, model, test_set)
    assert len(scores) == 6 and list(scores["setting"][:3]) == list(analysis.SETTINGS)
    assert scores["sim_donor"][::3].isna().all() and not scores["sim_donor"][1::3].isna().any()
    e_src = analysis.appearance_embedding(net, results[1]["x"][None])
    expected = identity_similarity(e_src.expand(3, -1), analysis.appearance_embedding(net, results[1]["truth"]))
    assert np.allclose(scores["sim_truth"][3:], expected.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="landmarks only"):
        analysis.appearance_embedding(FactorNet(analysis.N_LANDMARK_TARGETS), results[0]["x"][None])


def _identity_rows(seed: int, out_b: list[float], out_c: list[float], truth_c: float) -> pd.DataFrame:
    """identity_scores-like rows of two sources: truth 0.9 in (a) and (b), donors at 0.1."""
    rows = []
    for src, (ob, oc) in enumerate(zip(out_b, out_c)):
        rows += [{"source": src, "setting": analysis.SETTINGS[0], "sim_output": 0.8, "sim_truth": 0.9, "sim_donor": np.nan},
                 {"source": src, "setting": analysis.SETTINGS[1], "sim_output": ob, "sim_truth": 0.9, "sim_donor": 0.1},
                 {"source": src, "setting": analysis.SETTINGS[2], "sim_output": oc, "sim_truth": truth_c,
                  "sim_donor": 0.1}]
    return pd.DataFrame(rows).assign(train_seed=seed)


def test_identity_claims_over_seeds_and_with_one_seed():
    # output 0.8 in (b); in (c) it loses 0.3 while the truth loses 0.1: contour costs identity (claim 3 holds)
    scores = pd.concat([_identity_rows(s, [0.8 + d, 0.8 - d], [0.5 + d, 0.5], 0.8) for s, d in enumerate((0, .01, .02))])
    table = analysis.identity_claims(scores, "scorer")
    assert table["verdict"].tolist() == ["holds"] * 3
    assert table["diff"].tolist() == pytest.approx([0.7, 0.4 + 0.005, 0.2 - 0.005])
    assert (table["n_seeds"] == 3).all() and table["metric"].str.endswith("(scorer)").all()
    # the output's drop equal to the truth's: claim 3 undecided at best; one seed: not tested
    flat = pd.concat([_identity_rows(s, [0.8, 0.8], [0.7 + d, 0.7 + d], 0.8) for s, d in enumerate((-.01, 0, .01))])
    assert analysis.identity_claims(flat, "scorer")["verdict"].iloc[2] == "undecided (CI overlaps)"
    one = analysis.identity_claims(scores[scores["train_seed"] == 0], "scorer")
    assert (one["verdict"] == "not tested (1 seed)").all() and one[["lo", "hi"]].isna().all().all()
