"""GAN baselines of Table 1: shapes, the papers' formulas, determinism, exact resume, one interface for all."""
from __future__ import annotations

import json

import pytest
import torch

from afvae import baselines as bt
from afvae import experiment
from afvae.methods import build_network, optimisers
from afvae.model import translate_all
from afvae.baselines.ganimation import attention_loss, composite
from afvae.baselines.pix2pixhd import feature_matching
from afvae.baselines.stargan import cycle_loss
from afvae.checkpoint import load_checkpoint
from afvae.config import get_config
from afvae.data.datasets import build_dataset
from afvae.model import AFVAE
from afvae.train import fit_centres, train

METHODS = list(bt.METHODS)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread in this module


def tiny(method: str, steps: int = 4):
    """Smoke config, batch 8, no perceptual network (pix2pixHD's would train the factor net first)."""
    return bt.config("smoke", method).replace(train={"steps": steps, "batch_size": 8, "checkpoint_every": 2,
                                                     "sample_every": steps, "log_every": 1},
                                              loss={"feature_net": "none"})


@pytest.fixture(scope="module")
def centres():
    return torch.rand(8, 13 * 16 * 16, generator=torch.Generator().manual_seed(0))


def test_gans_keep_the_ssim_recipes_values_of_the_default_presets_afvae_only_changes(monkeypatch):
    from afvae import config
    from afvae.bench.quality import ssim_recipe

    ssim, default = ssim_recipe(), get_config("default")
    for section, kept in bt.KEPT["default"].items():
        assert kept == {k: getattr(getattr(ssim, section), k) for k in kept}  # the values the GANs were tuned at
        assert any(getattr(getattr(default, section), k) != v for k, v in kept.items())  # which the default changed
    now = {m: bt.config("default", m) for m in METHODS}
    monkeypatch.setitem(config.PRESETS, "default", ssim)  # the default preset the GANs were tuned and keyed at
    assert all(bt.config("default", m) == cfg and bt.config("default", m).hash() == cfg.hash() for m, cfg in now.items())


@pytest.mark.parametrize("method", METHODS)
def test_config_keeps_afvae_budget_and_data(method):
    from afvae.bench.quality import default_tflop, flops_per_image

    for scale in ("smoke", "compact", "default"):
        cfg, af = bt.config(scale, method), get_config(scale, "full")
        if scale in bt.BUDGET_STEPS:  # equal training FLOPs: the most steps of its batch the ladder's budget buys
            per_step = flops_per_image(cfg) * cfg.train.batch_size
            budget, spent = default_tflop() * 1e12, flops_per_image(af) * af.train.steps * af.train.batch_size
            assert cfg.train.steps == budget // per_step and cfg.train.batch_size == af.train.batch_size
            assert 0.999 * budget <= spent <= budget  # AF-VAE spends it too (z's broadcast saves 0.07 %)
        else:
            assert cfg.train.steps * cfg.train.batch_size == af.train.steps * af.train.batch_size
        assert cfg.data == af.data and cfg.model.n_focal == af.model.n_focal
        assert cfg.train.lr == 2e-4 and cfg.name == method and cfg.hash() != af.hash()
    with pytest.raises(ValueError, match="unknown baseline"):
        bt.config("smoke", "CycleGAN")
    # the default scale keeps the compact preset's GAN widths (baselines.WIDTH_SCALE): its AF-VAE is half as wide
    assert bt.config("default", method).model == bt.config("compact", method).model


def test_same_budget_reads_flops_at_the_default_scale_and_images_elsewhere():
    from afvae.baselines.compare import same_budget

    for scale in ("smoke", "compact", "default"):
        cfgs = {"AF-VAE": get_config(scale, "full"), **{m: bt.config(scale, m) for m in METHODS}}
        assert same_budget(cfgs, scale)
        longer = {**cfgs, "StarGAN": cfgs["StarGAN"].replace(train={"steps": cfgs["StarGAN"].train.steps + 1})}
        other_data = {**cfgs, "pix2pixHD": cfgs["pix2pixHD"].replace(data={"seed": 1})}
        assert not same_budget(longer, scale) and not same_budget(other_data, scale)
    # the compact preset's equal images at the default scale break its equal-FLOPs rule
    equal_images = {"AF-VAE": get_config("default"), **{m: bt.config("default", m).replace(
        train={"steps": get_config("default").train.steps}) for m in METHODS}}
    assert not same_budget(equal_images, "default")


@pytest.mark.parametrize("method", METHODS)
def test_shapes_and_range(method, batch, centres):
    model = build_network(tiny(method), centres)
    x, c = batch["x"], batch["c"]
    out = translate_all(model, x, c, c.roll(1, 0), batch_size=3)  # chunked
    assert out.shape == x.shape and out.abs().max() <= 1 and torch.isfinite(out).all()
    terms = model.train_step(optimisers(model.cfg, model), {"x": x, "c": c}, torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in terms.values()) and {"d_loss", "g_loss"} <= set(terms)


def test_translate_rejects_mismatched_batches(batch, centres):
    model = build_network(tiny("StarGAN"), centres)
    with pytest.raises(ValueError, match="batch sizes differ"):
        translate_all(model, batch["x"], batch["c"], batch["c"][:3])


def test_ganimation_composite_keeps_source_where_attention_is_one():
    g = torch.Generator().manual_seed(0)
    x, colour = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    a = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    out = composite(x, colour, a)
    keep = a.expand_as(x).bool()
    assert torch.equal(out[keep], x[keep]) and torch.equal(out[~keep], colour[~keep])
    half = composite(x, colour, torch.full_like(a, 0.25))
    assert torch.allclose(half, 0.75 * colour + 0.25 * x)


def test_ganimation_attention_loss_penalises_mean_and_edges():
    flat0, flat1 = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    edge = flat0.clone()
    edge[..., :, 4:] = 1
    assert attention_loss(flat0, 0.1) == 0
    assert attention_loss(flat1, 0.1) == pytest.approx(0.1)  # lambda_A * mean(A), no variation
    assert attention_loss(edge, 0.1) == pytest.approx(0.1 * 0.5 + 1e-5 * 8)  # 8 unit jumps across the edge


def test_ganimation_attention_one_returns_source(batch, centres):
    model = build_network(tiny("GANimation"), centres)
    with torch.no_grad():
        model.G.attention.weight.zero_()
        model.G.attention.bias.fill_(50.0)  # sigmoid -> 1
    x, c = batch["x"], batch["c"]
    assert torch.allclose(translate_all(model, x, c, c.roll(1, 0)), x, atol=1e-6)


def test_stargan_cycle_loss_zero_for_identity_generator(batch, centres):
    model = build_network(tiny("StarGAN"), centres)
    assert cycle_loss(batch["x"], batch["x"]) == 0
    model.G.forward = lambda x, label: x  # an identity generator: the cycle returns the input exactly
    out = model.generate(batch, torch.Generator().manual_seed(0))
    assert model.g_terms(batch, out)["rec"] == 0
    assert cycle_loss(batch["x"], batch["x"].flip(0)) > 0


def test_stargan_domains_are_nearest_focal_points(batch):
    feats = torch.nn.functional.adaptive_avg_pool2d(batch["c"], 16).flatten(1)  # (8, 13*16*16)
    model = build_network(tiny("StarGAN"), feats[:4])
    assert torch.equal(model.domain(batch["c"][:4]), torch.arange(4))  # each map is its own nearest centre


def test_feature_matching_zero_iff_equal():
    g = torch.Generator().manual_seed(0)
    feats = [[torch.rand(2, 4, 8, 8, generator=g), torch.rand(2, 1, 4, 4, generator=g)] for _ in range(2)]
    assert feature_matching(feats, feats) == 0
    moved = [[f + 1, s] for f, s in feats]
    assert feature_matching(moved, feats) == pytest.approx(1.0)  # |1| per element, 2 scales summed, / 2 scales
    scores_only = [[f, s + 5] for f, s in feats]
    assert feature_matching(scores_only, feats) == 0  # the final scores are not matched


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_weights_and_exact_resume(method, tmp_path):
    cfg = tiny(method)
    a = train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", progress=False)
    train(cfg, tmp_path / "cut", stop_at=2, progress=False)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 2
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    ws = {k: load_checkpoint(tmp_path / k / "checkpoint.pt")["model"] for k in ("a", "b", "cut")}
    for other in ("b", "cut"):
        assert all(torch.equal(ws["a"][k], ws[other][k]) for k in ws["a"]), other
    init = build_network(cfg, load_checkpoint(tmp_path / "a" / "checkpoint.pt")["centres"]).state_dict()
    assert any(not torch.equal(init[k], ws["a"][k]) for k in init)  # training changed the weights
    logged = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4] and len(a) == 4
    assert (tmp_path / "a" / "samples" / "step_000004.png").exists()
    centres = load_checkpoint(tmp_path / "a" / "checkpoint.pt")["centres"]  # AF-VAE's focal points, same fit
    assert torch.equal(centres, fit_centres(build_dataset(cfg.data, "train"), cfg.model, cfg.data.seed))


@pytest.mark.slow
def test_pix2pixhd_training_lowers_generator_objective(tmp_path):
    cfg = tiny("pix2pixHD", steps=40).replace(train={"checkpoint_every": 40, "sample_every": 40, "log_every": 1})
    hist = train(cfg, tmp_path, progress=False)
    first, last = sum(r["g_l1"] for r in hist[:5]) / 5, sum(r["g_l1"] for r in hist[-5:]) / 5
    assert last < first, (first, last)  # the paired render gets closer to its target


@pytest.mark.slow
def test_nan_stops_and_keeps_checkpoint(tmp_path, monkeypatch):
    cfg = tiny("StarGAN", steps=6)
    real, calls = bt.METHODS["StarGAN"].g_terms, {"n": 0}

    def poisoned(self, batch, out):
        calls["n"] += 1
        terms = real(self, batch, out)
        if calls["n"] == 4:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(bt.METHODS["StarGAN"], "g_terms", poisoned)
    with pytest.raises(FloatingPointError, match="StarGAN at step 3"):
        train(cfg, tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2


@pytest.mark.slow
def test_cached_load_and_translate_for_all_four_methods(tmp_path, batch, tiny_cfg):
    from afvae.checkpoint import load_model

    models = {m: experiment.trained(tiny(m), tmp_path, progress=False)[0] for m in METHODS}
    mtime = {m: (tmp_path / "runs" / f"{m}-{tiny(m).hash()}" / "checkpoint.pt").stat().st_mtime for m in METHODS}
    again = experiment.trained(tiny("StarGAN"), tmp_path, progress=False)[2] / "checkpoint.pt"
    assert again.stat().st_mtime == mtime["StarGAN"]  # cached: not retrained
    models["AF-VAE"] = load_model(experiment.train_cached(tiny_cfg, tmp_path / "runs", progress=False))[0]
    x, c = batch["x"], batch["c"]
    for name, model in models.items():
        out = translate_all(model, x, c, c.roll(1, 0))
        assert out.shape == x.shape and torch.isfinite(out).all() and not model.training, name
    assert isinstance(models["AF-VAE"], AFVAE)
    assert not torch.equal(translate_all(models["StarGAN"], x, c, c), translate_all(models["pix2pixHD"], x, c, c))



class _NoTruth:
    """A test split without a renderer: what a prepared folder of real photos looks like to Fig. 4."""

    def __init__(self, dataset):
        self.identity, self.get_batch = dataset.identity, dataset.get_batch


@pytest.mark.parametrize("truth", [True, False])
def test_fig4_targets_with_and_without_ground_truth(truth, centres):
    from afvae.baselines import compare

    test_set = build_dataset(get_config("smoke").data, "test")
    dataset = test_set if truth else _NoTruth(test_set)
    items = torch.tensor([0, 9])
    t = compare.expression_targets(dataset, items, ("smile", "surprise"), seed=0)
    assert t["x"].shape[0] == t["c_target"].shape[0] == len(t["labels"]) == 4
    assert torch.equal(t["x"][0], t["x"][1]) and not torch.equal(t["c_target"][0], t["c_target"][1])
    models = {m: build_network(tiny(m), centres) for m in METHODS}
    rows, cols, outputs = compare.comparison_rows(models, t)
    assert cols == ["input", "target c"] + (["truth"] if truth else []) + METHODS
    assert len(rows) == 4 and all(len(r) == len(cols) for r in rows)
    if truth:  # the truth is the source identity under the target structure: same c as the render's
        again = test_set.true_target(0, test_set.structure.index(0))
        assert t["truth"].shape == t["x"].shape and not torch.equal(t["truth"][0], again["x"][0])
    else:
        assert t["truth"] is None
        assert "as item" in t["labels"][0]


def test_ranks_follow_direction():
    import pandas as pd
    from afvae.baselines import compare

    table = pd.DataFrame({"method": ["a", "b", "c"], "gt_l1": [0.3, 0.1, 0.2], "gt_ssim": [0.3, 0.1, 0.2],
                          "fid": [float("nan")] * 3})
    r = compare.ranks(table, {"gt_l1": "min", "gt_ssim": "max", "fid": "min"})
    assert r == {"gt_l1": {"a": 3, "b": 1, "c": 2}, "gt_ssim": {"a": 1, "b": 3, "c": 2}}


def test_pix2pixhd_perceptual_term_uses_attached_feature_net(batch, centres):
    from afvae.features import FactorNet, FeatureNet

    assert bt.config("smoke", "pix2pixHD").loss.feature_net == "auto"  # like AF-VAE's feature matching
    assert bt.config("smoke", "StarGAN").loss.feature_net == "none"
    cfg = tiny("pix2pixHD")
    model = build_network(cfg, centres)
    out = model.generate(batch, torch.Generator().manual_seed(0))
    assert "perceptual" not in model.g_terms(batch, out)
    torch.manual_seed(0)
    model.feature_net = FeatureNet("factor", FactorNet(10).eval(), [1.0, 1.0, 1.0, 1.0])
    with_p = {k: v.detach() for k, v in model.g_terms(batch, out).items()}
    assert with_p["perceptual"] > 0
    assert cfg.loss.recon == bt.RECIPE["recon"]["pix2pixHD"] > 0  # the recipe's pix2pix L1
    assert float(with_p["loss"]) == pytest.approx(float(with_p["adv"] + 10 * with_p["fm"] + 10 * with_p["perceptual"]
                                                         + cfg.loss.recon * with_p["l1"]))
    assert model.g_terms(batch, {"x_fake": batch["x"]})["perceptual"] == 0  # the real image itself: no loss


@pytest.mark.parametrize("method", METHODS)
def test_generators_upsample_as_the_config_says(method, centres):
    kinds = {}
    for mode in ("deconv", "pixel_shuffle"):
        model = build_network(tiny(method).replace(model={"upsample": mode}), centres)
        kinds[mode] = {type(m).__name__ for m in model.G.modules()}
    assert "ConvTranspose2d" in kinds["deconv"] and "PixelShuffle" not in kinds["deconv"]
    assert "PixelShuffle" in kinds["pixel_shuffle"] and "ConvTranspose2d" not in kinds["pixel_shuffle"]


def test_generators_see_their_condition():
    """Each generator's output depends on its condition (StarGAN's domain, GANimation's target weights,
    pix2pixHD's instance features). Given as constant input channels, the condition was erased by the
    InstanceNorm after the first conv: the outputs for two conditions agreed to 3e-6."""
    from afvae.baselines.ganimation import Generator as GANimationG
    from afvae.baselines.pix2pixhd import Generator as Pix2PixHDG
    from afvae.baselines.stargan import Generator as StarGANG

    torch.manual_seed(0)
    x, c = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 13, 32, 32)
    a, b = torch.eye(8)[[0, 0]], torch.eye(8)[[5, 5]]
    with torch.no_grad():
        for g in (StarGANG(8, 8), GANimationG(8, 8)):
            out_a, out_b = g.eval()(x, a), g(x, b)
            out_a, out_b = (o[0] if isinstance(o, tuple) else o for o in (out_a, out_b))
            assert (out_a - out_b).abs().mean() > 1e-3, type(g)
        g = Pix2PixHDG(13, 8).eval()
        assert (g(c, torch.tensor([[1.0, -1, 0.5]] * 2)) - g(c, torch.tensor([[-2.0, 3, 0]] * 2))).abs().mean() > 1e-3


@pytest.mark.parametrize("method", list(bt.METHODS))
def test_recipe_and_paper_settings(method, batch, centres):
    recipe, paper = bt.config("smoke", method), bt.config("smoke", method, paper=True)
    assert (recipe.loss.recon, recipe.train.ema, recipe.model.upsample) == (
        bt.RECIPE["recon"][method], bt.RECIPE["ema"], bt.RECIPE["upsample"])
    assert (paper.loss.recon, paper.train.ema, paper.model.upsample, paper.model.instance_features) == (
        0.0, 0.0, "deconv", 3)
    assert recipe.hash() != paper.hash() and paper.loss.attention == 0.1
    assert recipe.loss.attention == (bt.RECIPE["attention"] if method == "GANimation" else 0.1)
    assert (recipe.model.d_blur, recipe.model.g_instance_norm) == (
        bt.RECIPE["d_blur"][method], bt.RECIPE["g_instance_norm"][method])
    assert (paper.model.d_blur, paper.model.g_instance_norm) == (False, True)  # the papers' D and G
    for cfg in (tiny(method), tiny(method).replace(loss={"recon": 0.0})):
        model = build_network(cfg, centres)
        terms = model.g_terms(batch, model.generate(batch, torch.Generator().manual_seed(0)))
        if method != "pix2pixHD":  # pix2pixHD's L1 is its output's, always logged; the others' needs a pass
            assert ("recon" in terms) == (cfg.loss.recon > 0)
            assert "recon" not in terms or float(terms["recon"]) > 0


def test_blur_removes_a_checkerboard_and_keeps_a_constant():
    from afvae.baselines.common import Blur

    i = torch.arange(8)
    board = ((i[:, None] + i[None, :]) % 2 * 2 - 1).float().expand(1, 2, 8, 8)  # one-pixel +-1 checkerboard
    blur = Blur(2)
    assert blur(board).abs().max() < 1e-6
    assert torch.allclose(blur(torch.full((1, 2, 8, 8), 0.3)), torch.full((1, 2, 8, 8), 0.3))
    ramp = torch.linspace(-1, 1, 8).expand(1, 2, 8, 8)
    assert torch.allclose(blur(ramp)[..., 1:-1], ramp[..., 1:-1], atol=1e-6)  # linear inside: unchanged
    assert not list(blur.state_dict())  # a fixed filter: nothing to save or load


def trains_and_translates(model, batch) -> None:
    """One training step of ``model`` gives finite terms, and it translates a batch to the batch's shape."""
    x, c = batch["x"], batch["c"]
    terms = model.train_step(optimisers(model.cfg, model), {"x": x, "c": c}, torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in terms.values())
    assert translate_all(model, x, c, c.roll(1, 0)).shape == x.shape


@pytest.mark.parametrize("method", METHODS)
def test_d_blur_filters_every_strided_conv_of_d_only(method, batch, centres):
    from afvae.baselines.common import Blur
    from afvae.config import config_hash

    plain = tiny(method).replace(model={"d_blur": False})  # the papers' D, whatever Table 1's recipe sets
    blurred = plain.replace(model={"d_blur": True})
    d = plain.to_dict()
    before = {**d, "model": {k: v for k, v in d["model"].items() if k != "d_blur"}}  # a config from before the field
    assert plain.hash() == config_hash(before) and blurred.hash() != plain.hash()
    m0, m1 = build_network(plain, centres), build_network(blurred, centres)
    assert not any(isinstance(m, Blur) for m in m0.modules())
    assert not any(isinstance(m, Blur) for m in m1.G.modules())
    strided = [m for m in m1.D.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    filtered = [s[1] for s in m1.D.modules() if isinstance(s, torch.nn.Sequential) and len(s) == 2
                and isinstance(s[0], Blur)]
    assert strided and len(filtered) == len(strided) and all(any(f is s for f in filtered) for s in strided)
    trains_and_translates(m1, batch)


@pytest.mark.parametrize("method", METHODS)
def test_g_instance_norm_off_removes_every_norm_of_g_only(method, batch, centres):
    plain = tiny(method).replace(model={"g_instance_norm": True})  # the papers' G, whatever the recipe sets
    bare = plain.replace(model={"g_instance_norm": False})
    assert bare.hash() != plain.hash()
    m0, m1 = build_network(plain, centres), build_network(bare, centres)
    norms = lambda mod: [m for m in mod.modules() if isinstance(m, torch.nn.InstanceNorm2d)]  # noqa: E731
    assert norms(m0.G) and not norms(m1.G)
    assert len(norms(m1.D)) == len(norms(m0.D))  # pix2pixHD's D keeps its own norms
    in_names = {n for n, m in m0.G.named_modules() if isinstance(m, torch.nn.InstanceNorm2d)}
    dropped = set(m0.G.state_dict()) - set(m1.G.state_dict())
    assert set(m1.G.state_dict()) <= set(m0.G.state_dict())  # the same names, less the norms' affine parameters
    assert dropped and {k.rsplit(".", 1)[0] for k in dropped} == in_names
    trains_and_translates(m1, batch)


@pytest.mark.parametrize("method", METHODS)
def test_r1_penalises_d_on_real_images_every_r1_every_th_step(method, batch, centres):
    from afvae.baselines.common import R1_EVERY

    plain = tiny(method)
    assert plain.loss.r1 == bt.RECIPE["r1"][method] and bt.PAPER["r1"][method] == 0
    cfg = plain.replace(loss={"r1": 1.0})
    assert cfg.hash() != plain.replace(loss={"r1": 0.0}).hash()
    model = build_network(cfg, centres)
    b = {"x": batch["x"], "c": batch["c"]}
    r1 = model.r1(b)
    assert r1 > 0 and r1.requires_grad
    opts = optimisers(cfg, model)
    due = [("d_r1" in model.train_step(opts, b, torch.Generator().manual_seed(s))) for s in range(R1_EVERY + 1)]
    assert due == [True] + [False] * (R1_EVERY - 1) + [True]  # counted by D's optimiser, so a resume keeps it
    off = build_network(plain.replace(loss={"r1": 0.0}), centres)
    assert "d_r1" not in off.train_step(optimisers(off.cfg, off), b, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", METHODS)
def test_bf16_forward_passes_where_the_cpu_has_bf16(method, batch, centres):
    from afvae.hardware import native_bf16

    if not native_bf16("cpu"):
        pytest.skip("this CPU has no bf16 in hardware: train.amp runs in float32 here")
    terms = {}
    for amp in (False, True):
        model = build_network(tiny(method).replace(train={"amp": amp}), centres)
        terms[amp] = model.train_step(optimisers(model.cfg, model), {"x": batch["x"], "c": batch["c"]},
                                      torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in terms[True].values())
    assert terms[True]["g_loss"] != terms[False]["g_loss"]  # it ran in bf16
    assert torch.isclose(terms[True]["g_loss"], terms[False]["g_loss"], rtol=0.05)


def test_r1_is_the_squared_input_gradient_of_the_critic(batch, centres):
    model = build_network(tiny("StarGAN").replace(loss={"r1": 1.0}), centres)
    x = batch["x"][:2]
    b = {"x": x, "c": batch["c"][:2]}
    xs = x.detach().requires_grad_(True)
    g, = torch.autograd.grad(model.critic(b, xs).sum(), xs)
    assert torch.allclose(model.r1(b), g.square().sum((1, 2, 3)).mean())
    with torch.no_grad():  # a critic twice as steep: four times the penalty
        model.D.src.weight.mul_(2)
        model.D.src.bias.mul_(2)
    assert torch.allclose(model.r1(b), 4 * g.square().sum((1, 2, 3)).mean(), rtol=1e-4)


@pytest.mark.slow
def test_lazy_r1_resumes_exactly(tmp_path):
    cfg = tiny("StarGAN", steps=6).replace(loss={"r1": 1.0})
    train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "cut", stop_at=3, progress=False)  # between two penalised D steps (0 and 4)
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    a, cut = (load_checkpoint(tmp_path / k / "checkpoint.pt")["model"] for k in ("a", "cut"))
    assert all(torch.equal(a[k], cut[k]) for k in a)
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "d_r1" in r] == [1, 5]  # D steps 0 and 4 (the logged step is done = 1 + D's count)
