"""``make paper`` at smoke scale: every notebook runs under papermill and writes sane artefacts."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from afvae import claims, pipeline
from afvae.checkpoint import run_dir

pytestmark = pytest.mark.notebooks

FIGURES = ["data_samples", "fig2b_focal_clusters", "train_samples", "fig8_ablation", "table3_ablation",
           "fig3_pixel_shuffle_histograms", "fig3_entropy_intervals", "wn_convergence", "fig9_interpolation", "fig1_expressions",
           "fig5_rotation", "fig6_rotation", "fig10_identity", "fig10_identity_claims", "fig9_prior_samples",
           "tutorial_kl_checks", "tutorial_mean_face", "tutorial_prior_path", "explorer_strip",
           "fig4_comparison", "table1_comparison", "fig7_hands_cats", "fig11_failures",
           "prior_beta_metrics", "prior_beta_claim", "prior_beta_samples"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    manifest = pipeline.run("smoke", out=out)
    return out, manifest


def test_every_notebook_ran(smoke_run):
    out, manifest = smoke_run
    stems = {p.stem for p in pipeline.notebooks()}
    assert pipeline.notebooks_ran(manifest) == stems
    assert manifest["wall_seconds"]["train_pool"] >= 0 and manifest["train_pool"]  # trained before 02_train
    assert manifest["wall_seconds"]["train_background"] >= 0  # the beta sweep's own runs, beside 02-13
    _, back = pipeline.pooled_runs([p.stem for p in pipeline.notebooks()], "smoke", "synthetic", 0, 1)
    assert back and {run_dir(c, "").name for c in back} <= set(manifest["train_pool"]["seconds"])
    saved = json.loads((out / "results" / "manifest.json").read_text())
    assert saved["scale"] == "smoke" and saved["packages"]["torch"] != "not installed"
    assert saved["matmul_gflops"] > 0 and saved["device"]  # what the wall times were measured on
    assert (out / "data" / "synthetic" / "smoke" / "images").is_dir()  # 00's export: beside the results, in out
    assert all(v >= 0 for v in saved["wall_seconds"].values())


@pytest.mark.parametrize("name", FIGURES)
def test_figures_are_images_not_blanks(smoke_run, name):
    out, _ = smoke_run
    img = np.asarray(Image.open(out / "figures" / f"{name}.png").convert("L"), dtype=float)
    assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 5, f"{name} looks blank"


def test_table3_is_sane(smoke_run):
    out, _ = smoke_run
    table = pd.read_csv(out / "results" / "table3_ablation.csv")
    assert len(table) == 9 and set(table["variant"]) >= {"full", "no_kl", "standard_prior", "deconv"}
    assert list(table["variant"][7:]) == ["source unchanged", "oracle"]
    for col in ("gt_l1", "gt_changed_l1", "gt_psnr", "gt_ssim", "rec_l1", "factor_fd", "heldout_fd", "landmark_nme"):
        assert table[col].map(math.isfinite).all(), col
    assert (table["factor_fd"] >= 0).all() and (table["gt_psnr"] > 0).all()
    assert "fid" not in table or table["fid"].isna().all() or (table["fid"] >= 0).all()  # FID is never made up without weights
    assert (table["n_seeds"] == 1).all() and table["gt_l1_lo"].isna().all()  # one seed: no interval, said so
    claims = pd.read_csv(out / "results" / "table3_claims.csv")
    assert len(claims) == 6 * 6 and (claims["verdict"] == "not tested (1 seed)").all()


def test_fig6_table_covers_every_yaw_method_and_convention(smoke_run):
    out, _ = smoke_run
    table = pd.read_csv(out / "results" / "fig6_rotation.csv")
    assert sorted(table["abs_yaw"].unique()) == list(range(0, 91, 15))
    assert set(table["boundaries"]) == {"none", "profile"} and {"AF-VAE", "source unchanged"} <= set(table["method"])
    assert (table["l1_lo"] <= table["l1"]).all() and (table["l1"] <= table["l1_hi"]).all()
    assert table["in_training_range"].tolist() == (table["abs_yaw"] <= 60).tolist()


def test_table1_is_sane(smoke_run):
    out, _ = smoke_run
    table = pd.read_csv(out / "results" / "table1_comparison.csv")
    assert list(table["method"]) == ["pix2pixHD", "StarGAN", "GANimation", "AF-VAE", "source unchanged", "oracle"]
    methods = table[table["kind"] == "method"]
    assert methods["images_seen"].nunique() == 1  # the same training budget for every method
    for col in ("gt_l1", "gt_changed_l1", "gt_psnr", "factor_fd", "factor_is", "heldout_fd", "paper_fid", "paper_is"):
        assert methods[col].map(math.isfinite).all(), col
    assert "fid" not in table or table["fid"].isna().all() or (table["fid"] >= 0).all()
    assert (table["n_seeds"] == 1).all()
    claims = pd.read_csv(out / "results" / "table1_claims.csv")
    assert set(claims["other"]) == {"pix2pixHD", "StarGAN", "GANimation"} and set(claims["base"]) == {"AF-VAE"}


def test_fig3_claims_are_sane(smoke_run):
    out, _ = smoke_run
    table = pd.read_csv(out / "results" / "claims_fig3.csv")
    assert list(table.columns) == list(claims.COLUMNS) and len(table) == 5
    assert (table["lo"] <= table["hi"]).all() and (table["ours_method"] >= 0).all()
    assert np.allclose(table["diff"], table["ours_baseline"] - table["ours_method"])
    assert table["verdict"].tolist() == [claims.verdict(lo, hi) for lo, hi in zip(table["lo"], table["hi"])]
    assert np.allclose(table["paper"], 0.0389)  # |7.6405 - 7.8267| - |7.6794 - 7.8267|


def test_fig10_claims_without_seeds_are_not_tested(smoke_run):
    out, _ = smoke_run
    table = pd.read_csv(out / "results" / "claims_fig10.csv")
    assert list(table.columns) == list(claims.COLUMNS) and len(table) == 3
    assert (table["n_seeds"] == 1).all() and table[["lo", "hi"]].isna().all().all()
    assert (table["verdict"] == claims.ONE_SEED).all()  # one seed: no interval, no verdict


def test_beta_sweep_tables_are_sane(smoke_run):
    out, _ = smoke_run
    table = pd.read_csv(out / "results" / "table_beta.csv")
    runs = table[table["kind"] == "method"]
    assert len(runs) == 12 and set(runs["variant"]) == {"full", "standard_prior", "gmm_sampled"}
    assert sorted(runs["beta"].unique()) == [1e-5, 1e-4, 1e-3, 1e-2]
    assert runs["kl_share"].between(0, 1).all() and (runs["posterior_diversity"] > 0).all()
    assert list(table.loc[table["kind"] == "reference", "variant"]) == ["source unchanged"] + ["oracle"] * 4
    for col in ("gt_l1", "gt_changed_l1", "gt_ssim", "identity_sim", "landmark_nme"):
        assert table[col].map(math.isfinite).all(), col
    claim = pd.read_csv(out / "results" / "table_beta_claim.csv")
    assert len(claim) == 4 * 2 * 5 and ((claim["lo"] <= claim["advantage"]) & (claim["advantage"] <= claim["hi"])).all()
    assert set(claim["verdict"]) <= {"holds", "fails", "undecided (CI overlaps)"}


def test_headline_json_has_no_nan(smoke_run):
    out, manifest = smoke_run
    assert len(manifest["headline"]) >= len(pipeline.notebooks())
    text = json.dumps(manifest["headline"])
    assert "NaN" not in text and "Infinity" not in text


def test_partial_runs_merge_into_the_manifest(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"scale": "smoke", "data": "synthetic", "seed": 0,
                                "wall_seconds": {"00_data": 5.0, "03_ablation": 7.0, "total": 12.0}}))
    new = {"scale": "smoke", "data": "synthetic", "seed": 0, "wall_seconds": {"03_ablation": 2.0, "total": 2.5}}
    merged = pipeline._merged(new, path)
    assert merged["wall_seconds"] == {"00_data": 5.0, "03_ablation": 2.0, "total": 7.0} and merged["partial_runs"] == 2
    assert pipeline._merged({**new, "scale": "default"}, path)["wall_seconds"] == new["wall_seconds"]
    assert pipeline._merged({**new, "n_seeds": 1}, path)["partial_runs"] == 2  # 1 seed: as before seeds existed
    assert pipeline._merged({**new, "n_seeds": 3}, path)["wall_seconds"] == new["wall_seconds"]  # 3 seeds: not merged


def test_a_notebook_run_shows_its_progress_bar_and_no_kernel_warning(tmp_path, capfd):
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell('RESULTS = "results"', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='steps'):\n"
                                          "    pass")]
    path = tmp_path / "00_tiny.ipynb"
    nbformat.write(nb, path)
    pipeline.execute(path, {"RESULTS": str(tmp_path / "results")})
    err = capfd.readouterr().err
    assert "steps: 100%|" in err  # the kernel's text bar, passed through live
    assert "WARNING" not in err and "ERROR" not in err and "IPKernelApp" not in err, err
    saved = nbformat.read(tmp_path / "results" / "executed" / "00_tiny.ipynb", 4).cells[-1].outputs
    assert [o["text"].count("\r") for o in saved if o.get("name") == "stderr"] == [0]  # folded in the copy
