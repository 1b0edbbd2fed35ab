"""Evaluation harness on a smoke checkpoint: the table, the missing-Inception reason, determinism, and that the
numbers move the right way (a damaged decoder scores worse; the true target keeps the identity, others do not).

One smoke model (30 steps) and one smoke FactorNet (cached in a temporary folder) are shared by the module.
The module runs torch on one thread: on a shared 2-core machine, two intra-op threads contending with other
processes made training and evaluation 10-20x slower than one.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch

from afvae import evaluate as ev
from afvae import tables
from afvae.config import get_config
from afvae.data.datasets import build_dataset, collate, export_synthetic
from afvae.features import FactorNet, FeatureNet, factor_targets, load_factor_net
from afvae.metrics import INCEPTION_FILE
from afvae.checkpoint import load_model
from afvae.train import train

pytestmark = pytest.mark.slow
N = 160  # pairs per evaluation: enough for stable means at 32 px, a few seconds each
FINITE = ("gt_l1", "gt_changed_l1", "gt_psnr", "gt_ssim", "gt_factor_perceptual", "landmark_nme",
          "landmark_nme_floor", "landmark_nme_factor", "landmark_nme_floor_factor", "rec_l1", "rec_psnr",
          "identity_sim", "identity_sim_truth", "identity_sim_other", "identity_sim_factor",
          "identity_sim_truth_factor", "identity_sim_other_factor", "factor_fd", "factor_kid", "factor_is",
          "heldout_fd", "heldout_kid", "heldout_is")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread in this module


@pytest.fixture(scope="module")
def smoke_run(one_thread, tmp_path_factory):
    cfg = get_config("smoke").replace(loss={"feature_net": "none"}, train={"steps": 30})
    run = tmp_path_factory.mktemp("eval_run")
    train(cfg, run, progress=False)
    return run


@pytest.fixture(scope="module")
def factor_cache(one_thread, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_cache")
    load_factor_net(get_config("smoke").data, root=root, progress=False)  # trained once, then read from root
    return root


@pytest.fixture(scope="module")
def smoke(smoke_run, factor_cache):
    model, cfg = load_model(smoke_run)
    net = load_factor_net(cfg.data, root=factor_cache, progress=False)
    row = ev.evaluate(model, cfg, n=N, factor_net=net, download=False, progress=False, cache_root=factor_cache)
    return model, cfg, net, row


# ----------------------------------------------------------------------------------------------------------
# Pure parts


def test_pairs_are_deterministic_cover_sources_and_cross_identities():
    identity = torch.arange(5).repeat_interleave(4)  # 5 identities x 4 items
    src, tgt = ev.sample_pairs(identity, 50, seed=3)
    assert (identity[src] != identity[tgt]).all()
    assert sorted(src[:20].tolist()) == list(range(20))  # every item is a source before any repeats
    again = ev.sample_pairs(identity, 50, seed=3)
    assert torch.equal(src, again[0]) and torch.equal(tgt, again[1])
    assert not torch.equal(tgt, ev.sample_pairs(identity, 50, seed=4)[1])
    counts = torch.bincount(ev.sample_pairs(identity, 4000, seed=0)[1], minlength=20).float()
    assert counts.min() > 0.7 * counts.mean()  # targets spread over all other-identity items
    with pytest.raises(ValueError, match="two identities"):
        ev.sample_pairs(torch.zeros(6, dtype=torch.long), 4, seed=0)


def test_factor_columns_and_landmarks_invert_factor_targets():
    data = get_config("smoke").data
    batch = collate(build_dataset(data, "train"), torch.arange(12), ["landmarks", "appearance", "structure"])
    targets = factor_targets(batch, data.size)  # (12, 208), the FactorNet's layout
    cols = ev.factor_columns(targets.shape[1])
    assert torch.equal(targets[:, cols["appearance"]], batch["appearance"])
    assert torch.equal(targets[:, cols["expression"]], batch["structure"][:, 3:])  # the 6 expr_* weights
    mean, std = targets.mean(0), targets.std(0) + 0.5
    net = FeatureNet("factor", torch.nn.Identity(), [], {"mean": mean, "std": std})
    lm = ev.predicted_landmarks(net, (targets - mean) / std, data.size)
    torch.testing.assert_close(lm, batch["landmarks"])
    assert set(ev.factor_columns(136)) == {"landmarks"}
    with pytest.raises(ValueError, match="layout"):
        ev.factor_columns(150)


def test_markdown_table_without_tabulate():
    df = pd.DataFrame({"name": ["a|b", "c"], "fid": [None, 1.234567], "n": [3, 4]})
    lines = tables.to_markdown(df).splitlines()
    assert lines[0] == "| name | fid | n |" and lines[1] == "|---|---:|---:|"
    assert lines[2] == "| a\\|b | n/a | 3 |" and lines[3] == "| c | 1.235 | 4 |"


# ----------------------------------------------------------------------------------------------------------
# One smoke model


def test_row_has_every_field_fid_unavailable_and_values_in_range(smoke):
    _, cfg, _, row = smoke
    assert set(ev.TABLE_COLUMNS) - {"name", "step"} <= set(row)
    assert row["variant"] == cfg.name and row["config_hash"] == cfg.hash() and row["n"] == N
    assert row["proxy_net"] == "factor" and row["n_fake"] == N and row["n_real"] == len(build_dataset(cfg.data, "test"))
    assert row["fidelity_available"] is False and INCEPTION_FILE in row["fidelity_reason"]
    assert all(row[k] is None for k in ("fid", "is_mean", "kid_mean"))  # never a number from other weights
    assert all(math.isfinite(row[k]) for k in FINITE), {k: row[k] for k in FINITE}
    assert row["gt_psnr"] > 0 and row["rec_psnr"] > 0 and 0 <= row["gt_ssim"] <= 1
    assert 0 < row["gt_l1"] < 1 and 0 < row["rec_l1"] < 1 and row["landmark_nme_floor"] > 0
    assert 1 <= row["factor_is"] <= 6 and row["factor_fd"] >= 0


def test_deterministic(smoke, factor_cache):
    model, cfg, net, row = smoke
    again = ev.evaluate(model, cfg, n=N, factor_net=net, download=False, progress=False, cache_root=factor_cache)
    assert again.keys() == row.keys()
    assert all(again[k] == row[k] or (again[k] != again[k] and row[k] != row[k]) for k in row)  # NaN == NaN


def test_damaged_decoder_scores_worse_on_ground_truth(smoke, factor_cache):
    model, cfg, net, row = smoke
    damaged = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in damaged.decoder.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 3 * p.std().clamp_min(1e-3))  # 3x each tensor's spread
    bad = ev.evaluate(damaged, cfg, n=N, factor_net=net, download=False, progress=False, cache_root=factor_cache)
    # (30 smoke steps barely beat an untrained model, so the damage is large; measured: +0.018 l1, -0.6 dB)
    assert bad["gt_l1"] > row["gt_l1"] + 0.008 and bad["gt_psnr"] < row["gt_psnr"] - 0.2
    assert bad["gt_ssim"] < row["gt_ssim"] and bad["rec_l1"] > row["rec_l1"] + 0.008
    assert bad["landmark_nme_floor"] == row["landmark_nme_floor"]  # the floor does not depend on the model


def test_true_target_keeps_identity_other_identities_do_not(smoke):
    row = smoke[3]
    # The true target is the source identity re-posed: its appearance predictions match the source's;
    # another identity's do not (standardised predictions are near-orthogonal across identities). Both scorers.
    for s in ("", "_factor"):
        assert row[f"identity_sim_truth{s}"] > 0.5
        assert row[f"identity_sim_truth{s}"] > row[f"identity_sim_other{s}"] + 0.3
    assert row["landmark_nme"] != row["landmark_nme_factor"] and row["heldout_fd"] != row["factor_fd"]


@pytest.fixture(scope="module")
def referenced(smoke, factor_cache):
    model, cfg, net, _ = smoke
    rows = ev.evaluate(model, cfg, n=N, factor_net=net, download=False, progress=False, cache_root=factor_cache,
                       references=True)
    dataset = build_dataset(cfg.data, "test")
    src, tgt = ev.sample_pairs(dataset.identity, N, 0)
    return rows, ev.generate(model, dataset, src, tgt, progress=False, oracle=True), dataset, src, tgt


def test_reference_rows_frame_the_model(smoke, referenced):
    from afvae.quality import changed_region_l1

    (row, unchanged, oracle), g, _, _, _ = referenced
    model_row = smoke[3]
    assert [r["variant"] for r in (row, unchanged, oracle)] == [model_row["variant"], *ev.REFERENCES]
    assert row["kind"] == "method" and unchanged["kind"] == oracle["kind"] == "reference"
    assert all(row[k] == model_row[k] for k in FINITE)  # references change nothing in the model's own row
    # doing nothing scores exactly the changed-region L1 of source vs truth; the truth itself scores 0
    copy_l1 = changed_region_l1(g["x"], g["x"], g["x_truth"])
    assert unchanged["gt_changed_l1"] == pytest.approx(float(copy_l1.double().nanmean()), abs=1e-12)
    assert float(changed_region_l1(g["x_truth"], g["x"], g["x_truth"]).nan_to_num().abs().max()) == 0
    assert unchanged["identity_sim"] == pytest.approx(1.0) and unchanged["identity_sim_factor"] == pytest.approx(1.0)
    assert unchanged["rec_l1"] == 0 and oracle["rec_l1"] == row["rec_l1"]
    assert unchanged["landmark_nme_floor"] == oracle["landmark_nme_floor"] == row["landmark_nme_floor"]


def test_oracle_is_the_models_reconstruction_of_the_truth(smoke, referenced):
    from afvae.metrics import l1_error

    model = smoke[0]
    (_, _, oracle), g, dataset, src, tgt = referenced
    ref = dataset.render_pair(src[:16], tgt[:16])
    with torch.no_grad():
        direct = model.eval().translate(ref["x_target"], ref["c_target"], ref["c_target"])
    torch.testing.assert_close(g["x_oracle"][:16], direct, atol=1e-5, rtol=0)
    assert oracle["gt_l1"] == pytest.approx(float(l1_error(g["x_oracle"], g["x_truth"]).double().mean()), rel=1e-9)
    assert not torch.allclose(g["x_oracle"], g["x_out"])  # the oracle sees the truth; the edit does not


def test_pair_scores_are_the_rows_per_pair(smoke, factor_cache):
    model, cfg, net, _ = smoke
    pairs: list = []
    rows = ev.evaluate(model, cfg, n=N, factor_net=net, download=False, progress=False, cache_root=factor_cache,
                       references=True, pairs=pairs)
    assert [p["variant"].iloc[0] for p in pairs] == [r["variant"] for r in rows]
    assert [p["kind"].iloc[0] for p in pairs] == ["method", "reference", "reference"]
    for row, per in zip(rows, pairs):
        assert len(per) == N and (per["pair"].to_numpy() == np.arange(N)).all()
        assert (per["train_seed"] == cfg.train.seed).all()
        for m in ev.PAIR_METRICS:  # the table's numbers are the means of the per-pair ones
            assert per[m].mean() == pytest.approx(row[m], abs=1e-6), m
    assert (pairs[1]["identity_sim"] > 0.999).all() and pairs[1]["gt_l1"].std() > 0  # source unchanged


def test_pair_scores_average_to_evaluates_rows(smoke_run, referenced, factor_cache):
    rows, *_ = referenced
    pairs = ev.evaluate_pairs({"model": smoke_run}, n=N, references=["model"], cache_root=factor_cache,
                              progress=False)
    assert list(pairs["name"].unique()) == ["model", *ev.REFERENCES] and (pairs.groupby("name").size() == N).all()
    means = pairs.groupby("name")[list(ev.PAIR_METRICS)].mean()  # NaN-skipping, as gt_changed_l1's nanmean
    for name, row in zip(["model", *ev.REFERENCES], rows):
        for m in ev.PAIR_METRICS:
            assert means.loc[name, m] == pytest.approx(row[m], rel=1e-5, abs=1e-7), (name, m)
    assert means.loc["model", "gt_l1"] != means.loc["oracle", "gt_l1"]  # the rows are not one copied score
    assert pairs.loc[pairs["name"] == "source unchanged", "identity_sim"].min() > 0.999


def test_table1_rows_with_references(smoke, factor_cache, tmp_path):
    from afvae.baselines import compare

    model, cfg, net, row = smoke
    table = compare.comparison_table({"AF-VAE": (model, cfg, tmp_path)}, n=N, seed=0, factor_net=net,
                                     cache_root=factor_cache, progress=False)
    assert list(table["method"]) == ["AF-VAE", *ev.REFERENCES] and list(table.columns[:3]) == ["method",
                                                                                               "images_seen",
                                                                                               "generator_params"]
    assert table.loc[0, "gt_l1"] == row["gt_l1"] and table["gt_changed_l1"].notna().all()
    assert compare.ranks(table, {"gt_l1": "min"}) == {"gt_l1": {"AF-VAE": 1}}  # references are not ranked


# ----------------------------------------------------------------------------------------------------------
# The command line and the table files


def test_cli_writes_tables_and_says_why_fid_is_missing(smoke_run, factor_cache, tmp_path, capsys):
    paths = ev.main([str(smoke_run / "checkpoint.pt"), "--n", "40", "--out", str(tmp_path), "--name", "smoke",
                     "--no-download", "--cache", str(factor_cache)])
    assert {p.name for p in paths.values()} == {"eval_smoke.csv", "eval_smoke.md", "eval_smoke.tex"}
    df = pd.read_csv(paths["csv"])
    assert list(df.columns[:len(ev.TABLE_COLUMNS)]) == list(ev.TABLE_COLUMNS) and len(df) == 1
    assert df.loc[0, "step"] == 30 and df.loc[0, "train_feature_net"] == "none" and df.loc[0, "n"] == 40
    assert df[["fid", "is_mean", "kid_mean"]].isna().all(axis=None) and not df.loc[0, "fidelity_available"]
    md, tex = paths["md"].read_text(), paths["tex"].read_text()
    assert md.startswith("| name | variant |") and INCEPTION_FILE in md and "| n/a |" in md
    assert "\\begin{tabular}" in tex and "gt\\_l1" in tex and INCEPTION_FILE in tex
    printed = capsys.readouterr().out.splitlines()
    assert sum(INCEPTION_FILE in line for line in printed) == 1  # the reason, on one line
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_folder_data_without_factors_gives_nan_ground_truth(smoke, tmp_path):
    model, cfg, _, _ = smoke
    folder = export_synthetic(tmp_path / "faces", size=32, n_identities=20, images_per_identity=2, seed=1)
    (folder / "factors.csv").unlink()  # a real-data folder: landmarks only
    data_cfg = cfg.replace(data={"source": str(folder)})
    net = FeatureNet("factor", FactorNet(136).eval(), [1.0] * 4, {"mean": torch.zeros(136), "std": torch.ones(136)})
    row = ev.evaluate(model, data_cfg, n=20, factor_net=net, download=False, progress=False,
                      cache_root=tmp_path / "cache")
    assert all(math.isnan(row[k]) for k in ("gt_l1", "gt_ssim", "identity_sim", "identity_sim_truth", "factor_is",
                                            "identity_sim_factor", "landmark_nme", "heldout_fd"))
    assert "cannot render true targets" in row["note"] and "no appearance factors" in row["note"]
    assert "no held-out scorer" in row["note"]  # a folder cannot render another population to train one
    assert all(math.isfinite(row[k]) for k in ("rec_l1", "landmark_nme_factor", "landmark_nme_floor_factor",
                                               "factor_fd"))


class Constant(torch.nn.Module):
    """A 'model' whose every output is one flat colour: a blank output."""

    def __init__(self, value: float):
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(value), requires_grad=False)

    def translate(self, x, c_source, c_target):
        return torch.full_like(x, float(self.value))


def _photo_folder(root):
    """skimage's real photographs (the astronaut, 100 LFW faces upscaled 4x) prepared with dlib at 64 px."""
    skdata = pytest.importorskip("skimage.data")
    pytest.importorskip("dlib")
    import numpy as np
    from PIL import Image

    from afvae.data.real.prepare import prepare

    (root / "in").mkdir(parents=True)
    Image.fromarray(skdata.astronaut()).save(root / "in" / "astronaut.png")
    for i, face in enumerate(skdata.lfw_subset()[:100]):
        Image.fromarray((255 * face).astype(np.uint8)).resize((100, 100), Image.BICUBIC).save(root / "in" / f"{i}.png")
    prepare("folder", root / "in", root / "prepared", size=64, landmarks="dlib")
    return str(root / "prepared")


@pytest.mark.parametrize("data", ["photos", "synthetic"])
def test_blank_outputs_score_clearly_worse_than_the_truth(tmp_path, data, factor_cache):
    from afvae.data.datasets import for_data

    source = _photo_folder(tmp_path) if data == "photos" else "synthetic"
    cfg = for_data(get_config("smoke"), source)
    cache = factor_cache if data == "synthetic" else tmp_path / "cache"  # the smoke faces' nets: trained once
    rows = [ev.evaluate(Constant(v), cfg, n=64, download=False, progress=False, cache_root=cache)
            for v in (0.0, 0.6, -0.8)]
    for row in rows:
        for s in ("_factor",) + (("",) if data == "synthetic" else ()):  # the held-out scorer: synthetic data only
            floor, mean_shape = row[f"landmark_nme_floor{s}"], row["landmark_nme_mean_shape"]
            blank = row[f"landmark_nme{s}"]
            assert blank > 3 * floor and blank > mean_shape, (s, floor, mean_shape, blank)
            assert 0 < floor and 0 < mean_shape
    assert "landmark_nme_mean_shape" in ev.TABLE_COLUMNS
