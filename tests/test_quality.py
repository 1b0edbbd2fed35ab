"""Edit quality against the truth (afvae.quality): the edits, the changed region, and scores that separate an
oracle, doing nothing and a blank image."""
import json
from typing import Any

import pytest
import torch

from afvae.config import Config, get_config
from afvae.data.datasets import build_dataset
from afvae.features import load_factor_net
from afvae.plotting import QUALITY_PANELS
from afvae.quality import CHANGED, EditSet, changed_region_l1, edit_quality, edit_set, score_table, swap_set

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def edits() -> EditSet:
    return edit_set(build_dataset(get_config("smoke").data, "test"), n_yaw=24, n_expression=24, seed=3)


@pytest.fixture(scope="module")
def scorer(one_thread, tmp_path_factory):
    return load_factor_net(get_config("smoke").data, root=tmp_path_factory.mktemp("quality_cache"), progress=False)


class Lookup(torch.nn.Module):
    """A stand-in method: answers each target map with a fixed image per pair (found by its map)."""

    def __init__(self, edits: EditSet, images: torch.Tensor, reconstruction: torch.Tensor,
                 oracle: torch.Tensor | None = None):
        super().__init__()
        self.sources, self.targets = edits.c.flatten(1), edits.c_target.flatten(1)
        self.images, self.rec, self.oracle = images, reconstruction, oracle
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    @staticmethod
    def find(c, keys):
        return (c.flatten(1)[:, None] == keys[None]).all(-1).float().argmax(1)

    def translate(self, x, c_source, c_target):
        if torch.equal(c_source, c_target):  # a reconstruction: of a source, or of a truth (the oracle's)
            of_truth = (c_source.flatten(1)[:, None] == self.targets[None]).all(-1).any(1).all()
            if self.oracle is not None and of_truth:
                return self.oracle[self.find(c_source, self.targets)]
            return self.rec[self.find(c_source, self.sources)]
        return self.images[self.find(c_target, self.targets)]


def test_edits_are_seeded_and_change_what_they_say(edits):
    again = edit_set(build_dataset(get_config("smoke").data, "test"), n_yaw=24, n_expression=24, seed=3)
    assert torch.equal(edits.x_truth, again.x_truth) and torch.equal(edits.items, again.items)
    yaw, expr = edits.mask("yaw"), edits.mask("expression")
    assert yaw.sum() == expr.sum() == 24
    # yaw edits move the face; expression edits keep most pixels (a small changed region)
    region = lambda m: ((edits.x[m] - edits.x_truth[m]).abs().amax(1) > 0.1).float().mean()  # noqa: E731
    assert region(yaw) > 2 * region(expr) > 0


def test_yaw_targets_are_far_enough_and_in_range():
    from afvae.data.synthetic import Structure
    from afvae.quality import MAX_YAW, _yaw_targets

    src = Structure.create(yaw=torch.linspace(-60, 60, 500))
    new = _yaw_targets(src, 20.0, torch.Generator().manual_seed(0))
    assert ((new.yaw - src.yaw).abs() >= 20 - 1e-4).all() and (new.yaw.abs() <= MAX_YAW + 1e-4).all()
    assert new.yaw.min() < -50 and new.yaw.max() > 50  # both directions are drawn


def test_changed_region_l1_scores_truth_zero_and_source_the_whole_change(edits):
    x, t = edits.x, edits.x_truth
    assert torch.allclose(changed_region_l1(t, x, t), torch.zeros(len(x)))
    copy = changed_region_l1(x, x, t)
    assert (copy > 0.05 / 3).all()  # in the region one channel of three differs by more than the threshold
    blank = changed_region_l1(torch.zeros_like(t), x, t)
    assert blank.mean() > 0.1


def test_oracle_copy_and_blank_are_told_apart(edits, scorer):
    oracle = edit_quality(Lookup(edits, edits.x_truth, edits.x), edits, scorer)
    assert oracle["yaw_ssim"] == pytest.approx(1.0) and oracle["expr_changed_l1"] == pytest.approx(0.0, abs=1e-6)
    assert oracle["identity_sim"] == pytest.approx(oracle["identity_sim_truth"], abs=1e-6)
    assert oracle["landmark_nme"] == pytest.approx(oracle["landmark_nme_floor"], abs=1e-6)
    assert oracle["rec_ssim"] == pytest.approx(1.0)
    copy = edit_quality(Lookup(edits, edits.x, edits.x), edits, scorer)
    assert copy["yaw_ssim"] == pytest.approx(copy["yaw_ssim_copy"], abs=1e-6) and copy["yaw_ssim"] < 0.99
    assert copy["expr_changed_l1"] == pytest.approx(copy["expr_changed_l1_copy"], abs=1e-6)
    blank = torch.zeros_like(edits.x)
    bad = edit_quality(Lookup(edits, blank, blank), edits, scorer)
    assert bad["yaw_ssim"] < copy["yaw_ssim"] and bad["expr_changed_l1"] > 2 * oracle["expr_changed_l1"] + 0.05
    assert bad["identity_sim"] < oracle["identity_sim"] - 0.3 and bad["rec_ssim"] < 0.5


def test_the_oracle_scores_the_truth_through_the_model(edits, scorer):
    exact = edit_quality(Lookup(edits, edits.x, edits.x, oracle=edits.x_truth), edits, scorer, oracle=True)
    assert exact["yaw_ssim_oracle"] == pytest.approx(1.0)
    assert exact["expr_changed_l1_oracle"] == pytest.approx(0.0, abs=1e-6)
    assert exact["identity_sim_oracle"] == pytest.approx(exact["identity_sim_truth"], abs=1e-6)
    assert exact["landmark_nme_oracle"] == pytest.approx(exact["landmark_nme_floor"], abs=1e-6)
    assert exact["yaw_ssim"] == pytest.approx(exact["yaw_ssim_copy"], abs=1e-6)  # its edits are copies
    blurred = torch.nn.functional.avg_pool2d(edits.x_truth, 5, stride=1, padding=2, count_include_pad=False)
    soft = edit_quality(Lookup(edits, edits.x, edits.x, oracle=blurred), edits, scorer, oracle=True)
    assert soft["yaw_ssim_oracle"] < exact["yaw_ssim_oracle"] - 0.1
    assert soft["expr_changed_l1_oracle"] > exact["expr_changed_l1_oracle"] + 0.01
    plain = edit_quality(Lookup(edits, edits.x, edits.x), edits, scorer)  # oracle=False: as before, no oracle keys
    assert plain == {k: v for k, v in exact.items() if "_oracle" not in k}


def test_flops_are_counted_per_image_and_follow_the_model():
    from afvae.bench.quality import flops_per_image

    cfg = get_config("smoke").replace(loss={"feature_net": "none"})
    plain = flops_per_image(cfg)
    assert flops_per_image(cfg.replace(train={"batch_size": 4})) == pytest.approx(plain, rel=1e-6)
    assert flops_per_image(cfg.replace(model={"full_res_width": 8})) > 1.05 * plain
    assert plain < flops_per_image(cfg.replace(model={"z_film": True})) < 1.01 * plain


def test_flops_of_a_lazy_r1_penalty_are_averaged_over_its_interval(monkeypatch):
    from afvae import baselines
    from afvae.baselines import common
    from afvae.bench.quality import flops_per_image

    cfg = baselines.config("smoke", "StarGAN").replace(loss={"feature_net": "none"})
    plain, lazy, n = flops_per_image(cfg), flops_per_image(cfg.replace(loss={"r1": 10.0})), common.R1_EVERY
    monkeypatch.setattr(common, "R1_EVERY", 1)  # the penalty on every step: its full cost
    every = flops_per_image(cfg.replace(loss={"r1": 10.0}))
    assert plain < lazy < every
    assert lazy == pytest.approx(plain + (every - plain) / n, rel=1e-6)  # one step in n pays for it


def test_recipe_ladder_ends_at_the_default_preset_within_the_budget():
    from afvae.bench.quality import before_recipe, default_recipe, narrow_recipe, ssim_recipe
    from afvae.bench.recipe import ladder

    steps = ladder()
    assert steps["film (compact preset)"] == get_config("compact") and steps["before"] == before_recipe()
    images = {k: c.train.steps * c.train.batch_size for k, c in steps.items()}
    equal_flops = {k for k in steps if "equal FLOPs" in k}  # narrower models: more images for the same FLOPs
    same = {k: v for k, v in images.items() if k not in equal_flops | {"before"}}
    assert list(steps)[-1].endswith("(default preset)") and steps[list(steps)[-1]] == get_config("default")
    assert images["before"] == 28_800 and set(same.values()) == {27_200}
    assert 1.42e9 * images["film (compact preset)"] / 1e12 <= 40  # 1.43 GFLOP per image (bench quality)
    assert len(equal_flops) == 9 and all(images[k] > 40_000 for k in equal_flops)
    assert steps["half widths, equal FLOPs, fresh identities (not kept)"] == narrow_recipe()
    assert narrow_recipe().model.base_width == 16 and narrow_recipe().data.train_images == 76_752
    ssim = ssim_recipe()  # its SSIM term's FLOPs are counted: fewer images than narrow_recipe's
    assert (ssim.loss.ssim, ssim.loss.feature_weight, ssim.train.lr) == (0.3, 0.3, 3e-3)
    assert ssim.model == narrow_recipe().model and ssim.data.train_images == 73_216
    # the default preset is the ladder's last step written out: the same hash, and every field the hash leaves out
    default = default_recipe()
    assert default.replace(name="full") == get_config("default") and default.hash() == get_config("default").hash()


def undone(cfg: Config, changes: dict[str, dict[str, Any]], base: Config) -> Config:
    """``cfg`` with the fields that ``changes`` names set back to ``base``'s."""
    return cfg.replace(**{section: {k: getattr(getattr(base, section), k) for k in fields}
                          for section, fields in changes.items()})


def test_each_recipe_after_the_ssim_recipe_changes_only_its_fields_over_the_same_images():
    from afvae.bench.quality import (BROADCAST_CHANGES, INIT_CHANGES, SMALL_BATCH, broadcast_recipe, default_recipe,
                                     init_recipe, ssim_recipe)

    ssim, init, default, small = ssim_recipe(), init_recipe(), default_recipe(), broadcast_recipe()
    assert init.train.data_init > 0 and not default.model.z_spatial and small.train.batch_size == 8
    assert len({c.hash() for c in (ssim, init, default, small)}) == 4
    assert init.model == ssim.model and init.data == ssim.data  # same model, images and FLOPs: same budget
    assert undone(init, INIT_CHANGES, ssim) == ssim and undone(default, BROADCAST_CHANGES, init) == init
    assert small.train.steps == 9152 and small.train.steps * 8 == default.train.steps * default.train.batch_size
    assert undone(small, {"train": {*SMALL_BATCH, "steps"}}, default) == default
    assert ssim.hash() == "d3c434078c3b"  # the default preset's runs before the data init keep their key


@pytest.fixture(scope="module", params=["synthetic-hands", "synthetic-cats"])
def swaps(request, one_thread) -> EditSet:
    from afvae.experiment import config

    return swap_set(build_dataset(config("smoke", data=request.param).data, "test"), n=24, seed=3)


def test_swaps_are_seeded_and_give_each_source_another_identity_s_structure(swaps, request):
    from afvae.experiment import config

    test_set = build_dataset(config("smoke", data=request.node.callspec.params["swaps"]).data, "test")
    again = swap_set(test_set, n=24, seed=3)
    assert torch.equal(swaps.x_truth, again.x_truth) and torch.equal(swaps.items, again.items)
    assert len(swaps.kind) == 24 and set(swaps.kind) == {"swap"} and swaps.items.unique().numel() > 1
    # the truth is each source's identity (its own appearance) under a structure that is not its own
    assert not torch.equal(swaps.c_target, swaps.c)
    own = test_set.true_target(swaps.items, test_set.structure.index(swaps.items))
    assert torch.equal(own["x"], swaps.x) and (swaps.x_truth - swaps.x).abs().flatten(1).amax(1).min() > 0.1


def test_truth_scores_exactly_and_unchanged_scores_the_whole_change(swaps):
    x, t = swaps.x, swaps.x_truth
    table = score_table({"truth": t, "halfway": (x + t) / 2}, swaps).set_index("method")
    assert list(table.index) == ["truth", "halfway", "source unchanged"] and (table["n"] == 24).all()
    truth, copy = table.loc["truth"], table.loc["source unchanged"]
    assert truth["changed_l1"] == 0 and truth["l1"] == 0 and truth["ssim"] == pytest.approx(1.0)
    assert truth["changed_l1_lo"] == truth["changed_l1_hi"] == 0
    # source unchanged: its changed-region L1 is the mean over the region of |source - truth|, by hand
    region = ((x - t).abs() / 2).amax(1) > CHANGED  # (N, H, W), [0, 1] units
    by_hand = torch.stack([((x[i] - t[i]).abs() / 2).mean(0)[region[i]].mean() for i in range(len(x))])
    assert copy["changed_l1"] == pytest.approx(float(by_hand.mean()), rel=1e-5)
    assert copy["l1"] == pytest.approx(float(((x - t).abs() / 2).mean()), rel=1e-5) and copy["ssim"] < 0.99
    assert copy["changed_l1_lo"] < copy["changed_l1"] < copy["changed_l1_hi"] and copy["n_changed"] == 24
    assert copy["changed_l1"] > CHANGED / 3  # in the region one channel of three differs by more than the threshold
    # halfway between source and truth: the region is the source's and the truth's, so exactly half the error
    assert table.loc["halfway", "changed_l1"] == pytest.approx(copy["changed_l1"] / 2, rel=1e-5)
    assert copy["ssim"] < table.loc["halfway", "ssim"] < 1


def test_a_bar_is_out_of_reach_when_the_oracle_misses_it():
    from afvae.bench.ceiling import bar_reachable

    q = {"yaw_ssim": 0.70, "yaw_ssim_oracle": 0.80, "yaw_ssim_copy": 0.62, "identity_sim": 0.8,
         "identity_sim_oracle": 0.86, "landmark_nme": 0.09, "landmark_nme_oracle": 0.09, "expr_changed_l1": 0.05,
         "expr_changed_l1_oracle": 0.07, "expr_changed_l1_copy": 0.12}
    assert bar_reachable(q) == {"yaw_ssim >= 0.85": False, "yaw_ssim >= yaw_ssim_copy + 0.15": True,
                                "identity_sim >= 0.85": True, "landmark_nme <= 0.095": True,
                                "expr_changed_l1 <= 0.5 * expr_changed_l1_copy": False}


def test_the_ceiling_figure_marks_the_training_identities_of_the_models_that_have_them():
    from afvae.plotting import plot_ceiling

    keys = {k for panel in QUALITY_PANELS for k in (panel[0], f"{panel[0]}_oracle", panel[1])}
    models = {"full": dict.fromkeys(keys, 0.5) | {"seen": {p[0]: 0.9 for p in QUALITY_PANELS}},
              "no_kl": dict.fromkeys(keys, 0.5)}  # scored before the training identities were
    curve = [{"images_seen": 1000 * i, "yaw_ssim": 0.5, "rec_ssim": 0.6} for i in (1, 2)]
    fig = plot_ceiling(models, curve)
    for ax in fig.axes[1:len(QUALITY_PANELS) + 1]:
        squares = [line for line in ax.get_lines() if line.get_marker() == "s"]
        assert len(squares) == 1 and list(squares[0].get_xdata()) == [0] and list(squares[0].get_ydata()) == [0.9]


def test_the_benchmark_records_its_data_and_scores_training_identities_at_its_end(monkeypatch, edits, scorer):
    import afvae.bench.quality as bench

    cfg = get_config("smoke").replace(data={"train_images": 60}, loss={"feature_net": "none"},
                                      train={"steps": 4, "batch_size": 4})
    monkeypatch.setattr(bench, "scoring", lambda c: (edits, scorer, None))  # the smoke edits, no held-out scorer
    result = bench.run(cfg, eval_points=2)
    assert result["recipe"]["data"]["train_images"] == 60 and result["images_seen"] == 16
    assert "seen" not in result["curve"][0] and set(result["seen"]) == set(bench.SEEN_KEYS)
    assert -1 <= result["seen"]["yaw_ssim"] <= 1 and result["seen"]["landmark_nme"] > 0
    seen, train = bench.benchmark_edits(cfg, "train"), build_dataset(cfg.data, "train")
    ids = set(train.identity[seen.items].tolist())
    assert len(seen.kind) == 400 and len(ids) == 60 and not ids & set(build_dataset(cfg.data, "test").identity.tolist())


def test_fresh_long_scores_the_experiment_beside_the_reference_pair_by_pair(monkeypatch, tmp_path, edits, scorer):
    import afvae.bench.quality as bench
    from afvae import shipped, zoo
    from afvae.bench import fresh_long
    from afvae.checkpoint import load_model, run_dir

    monkeypatch.setenv("AFVAE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(bench, "scoring", lambda c: (edits, scorer, None))  # the smoke edits, no held-out scorer
    cfg = zoo.zoo_config(fresh_long.EXPERIMENT, "smoke")
    # the reference is the experiment itself: every pair's difference is exactly 0
    monkeypatch.setattr(shipped, "load", lambda name: load_model(run_dir(cfg, tmp_path / "runs")))
    result = fresh_long.run("smoke", tmp_path / "cache")
    assert result["people"] == cfg.data.train_images == 120 and result["images_seen"] == 30 * 16
    assert [r["step"] for r in result["curve"]] == [15, 30] and result["n_edits"] == len(edits.kind)
    a, b = result["models"][fresh_long.EXPERIMENT], result["models"][fresh_long.REFERENCE]
    assert a == b and set(a["ci95"]) == set(zoo.SCORED) and set(a["seen"]) == set(bench.SEEN_KEYS)
    for k in zoo.SCORED:
        assert a["ci95"][k][0] <= a[k] <= a["ci95"][k][1]
        assert result["difference"][k] == {"mean": 0.0, "ci95": [0.0, 0.0]}
    assert 0 < a["yaw_ssim_oracle"] <= 1 and set(a["bar_reachable"]) >= {"yaw_ssim >= 0.85"}
    # the figure: of the reference's identity curve (read by another factor net) only the rescored end is drawn
    (tmp_path / "fresh_long.json").write_text(json.dumps(result))
    import matplotlib.pyplot as plt

    drawn = {}
    monkeypatch.setattr("afvae.plotting.save_figure", lambda fig, name, folder: drawn.setdefault(name, fig))
    fig = fresh_long.figure(tmp_path, tmp_path)
    identity = fig.axes[[p[0] for p in QUALITY_PANELS].index("identity_sim")].get_lines()[0].get_ydata()
    assert list(drawn) == ["fresh_long"] and [y for y in identity if y == y] == [b["identity_sim"]]
    plt.close(fig)


def test_at_budget_spends_the_compact_presets_flops_and_a_cheaper_model_sees_more_images():
    from afvae.bench.quality import at_budget, flops_per_image

    compact = get_config("compact")
    assert at_budget(compact) == compact  # its own budget: the same steps, checkpoints and samples
    cheap = get_config("smoke").replace(loss={"feature_net": "none"})
    per_step = flops_per_image(cheap) * cheap.train.batch_size
    got = at_budget(cheap, tflop=1.0).train
    assert got.steps * per_step <= 1e12 < (got.steps + 1) * per_step and got.steps > 1000
    assert got.checkpoint_every == round(got.steps / 10) and got.sample_every == round(got.steps / 4)


def test_the_edits_figure_scores_each_shown_edit_beside_the_unchanged_source(edits, tmp_path, monkeypatch):
    import afvae.plotting
    from afvae.bench.quality import edits_figure

    seen = {}
    real = afvae.plotting.plot_swaps
    monkeypatch.setattr(afvae.plotting, "plot_swaps", lambda panels, notes, *a, **k: seen.update(
        panels=panels, notes=notes) or real(panels, notes, *a, **k))
    path = edits_figure(Lookup(edits, edits.x_truth, edits.x), edits, "edits", tmp_path, n_show=3)
    assert path == tmp_path / "edits.png" and path.stat().st_size > 0
    assert set(seen["panels"]) == {"yaw edits", "expression edits"}
    yaw = seen["panels"]["yaw edits"]
    assert torch.equal(yaw["x_out"], yaw["x_truth"]) and yaw["x"].shape[0] == 3  # the truth scores itself
    assert all(n.startswith("SSIM 1.000") for n in seen["notes"]["yaw edits"])
    expression = seen["notes"]["expression edits"]
    assert all(n.startswith("changed L1 0.000") for n in expression)
    assert all(float(n.split("(unchanged ")[1].rstrip(")")) > 0.01 for n in expression)  # doing nothing: the change
