"""The GAN baselines of the paper's Table 1, re-implemented from their papers' descriptions, one file each.

* ``pix2pixhd``: boundary map -> image (Wang et al., CVPR 2018)
* ``stargan``: image + target domain label -> image (Choi et al., CVPR 2018)
* ``ganimation``: image + continuous target condition -> colour and attention masks (Pumarola et al., ECCV 2018)
* ``common``: their shared interface (``GANBaseline``: ``translate`` and the training step), layers and
  adversarial losses
* ``compare``: Fig. 4 and Table 1 (all four methods side by side)

This module holds their configs. They train in AF-VAE's loop (``afvae.train``) and are cached and loaded like
AF-VAE (``afvae.runs``, ``afvae.checkpoint``). Every method, AF-VAE included, answers
``model.translate(x, c_source, c_target) -> x_out``, so the evaluation (``afvae.evaluate``) scores all of them
the same way.

A baseline's config is AF-VAE's preset ``Config`` with ``name`` = the method, the same data and the same
training budget: in FLOPs at the default scale (``BUDGET_STEPS``), in images seen (``train.steps *
train.batch_size``) at the others; ``model.base_width`` is the baseline's
width, ``train.lr`` = 2e-4 and Adam betas (0.5, 0.999), as in all three papers, and Table 1's ``RECIPE``: the
generators' upsampling (``model.upsample``), an EMA of the weights (``train.ema``), a self-reconstruction L1
(``loss.recon``), pix2pixHD's instance features (``model.instance_features``), and per method D's low-pass
(``model.d_blur``), G's InstanceNorm (``model.g_instance_norm``) and D's R1 penalty on real images
(``loss.r1``), these three left at the papers' values;
``PAPER`` has the papers' settings.
"""
from __future__ import annotations

from afvae.baselines.common import BETAS, LR, GANBaseline
from afvae.baselines.ganimation import GANimation
from afvae.baselines.pix2pixhd import Pix2PixHD
from afvae.baselines.stargan import StarGAN
from afvae.config import Config, get_config
from afvae.data.datasets import for_data

METHODS: dict[str, type[GANBaseline]] = {"pix2pixHD": Pix2PixHD, "StarGAN": StarGAN, "GANimation": GANimation}
# Widths at 64 px, sized so that each trains at roughly the compact AF-VAE's speed on a CPU; other scales multiply
# them by the preset's base_width / 32 (smoke: / 4, paper: x 2), read from WIDTH_SCALE's preset where it names one:
# the default preset's half widths would halve the GANs' too, so at the default scale they keep the compact
# preset's, the widths their recipe was tuned at.
DEFAULT_WIDTH = {"pix2pixHD": 16, "StarGAN": 12, "GANimation": 12}
WIDTH_SCALE = {"default": "compact"}
# The compute rule at the default scale: each GAN trains for the steps of its batch (16) that the recipe ladder's
# budget buys (the compact preset's 38.8 TFLOP, ``afvae.bench.quality.default_tflop``; AF-VAE's default spends all
# but 0.07 % of it) at its own counted FLOPs per training image (``afvae.bench.quality.flops_per_image``: pix2pixHD
# 0.90, StarGAN 1.44, GANimation 1.47 GFLOP, against AF-VAE's 0.53); tests/test_baselines.py recounts them. At
# the other scales a GAN sees as many images as AF-VAE.
BUDGET_STEPS = {"default": {"pix2pixHD": 2703, "StarGAN": 1683, "GANimation": 1645}}
# The default preset's last changes are AF-VAE's own (``afvae.bench.quality.INIT_CHANGES``, ``BROADCAST_CHANGES``):
# a data-dependent initialisation of weight-normalised convs, which the GANs do not have, a 10 % warm-up, and loss
# and model fields they do not read. At the default scale the GANs keep the values of the preset they were tuned
# and keyed at (``bench.quality.ssim_recipe``), as they keep the compact preset's widths: their 3 % warm-up. Written
# out, not read from ``ssim_recipe`` (which counts FLOPs with the feature net), and held equal to it by a test.
KEPT = {"default": {"train": {"warmup": 0.03, "data_init": 0}, "loss": {"ssim": 0.3, "beta": 1e-5},
                    "model": {"z_spatial": True}}}
# The papers' settings that the recipe changes: transposed-convolution upsampling, no weight average, no
# self-reconstruction term, pix2pixHD's 3 instance features.
PAPER = {"upsample": "deconv", "ema": 0.0, "recon": dict.fromkeys(METHODS, 0.0), "instance_features": 3,
         "attention": 0.1, "d_blur": dict.fromkeys(METHODS, False), "g_instance_norm": dict.fromkeys(METHODS, True),
         "r1": dict.fromkeys(METHODS, 0.0)}
# Table 1's recipe (README "Table 1": each change with what it measured on the quality benchmark's 400 edits):
# AF-VAE's ICNR pixel-shuffle upsampling (the transposed convolution's checkerboard was most of the "noise"), an EMA
# of the weights for evaluation, a self-reconstruction L1 (pix2pix's L1 for pix2pixHD; G(x, own condition) = x for
# StarGAN and GANimation), 16 instance features for pix2pixHD, whose one-instance 3-vector cannot carry a face's
# colours, and GANimation's attention penalty lambda_A at 1 (0.1 let A saturate into a copy of the source).
# D's low-pass (``d_blur``) and G without InstanceNorm (``g_instance_norm`` off) are per-method switches kept at the
# papers' values: each cut the colour noise but turned edits into a near-copy of the source (StarGAN at the full
# default budget; GANimation with the low-pass), repainted every pixel and lost identity (GANimation, both), or
# raised the landmark error 0.081 -> 0.119 (pix2pixHD); README "Where the noise comes from" has the screen.
# D's R1 penalty (``r1``, gamma) is kept at the papers' 0 too, though gamma = 10 improved pix2pixHD's and StarGAN's
# scores at the full default budget (a quarter to a third less noise, landmarks followed as well or better): adopting
# it changes their config hashes, so their shipped long models and Table 1's seeds would be retrained with it. So
# would AF-VAE's optimiser (train.lr 1.5e-3, betas (0.9, 0.99)), which cut pix2pixHD's noise by 43 % there.
# Every one is a config field, so ``paper=True`` gives the papers' settings.
RECIPE = {"upsample": "pixel_shuffle", "ema": 0.99, "recon": {"pix2pixHD": 100.0, "StarGAN": 10.0, "GANimation": 10.0},
          "instance_features": 16, "attention": 1.0,
          "d_blur": dict(PAPER["d_blur"]), "g_instance_norm": dict(PAPER["g_instance_norm"]), "r1": dict(PAPER["r1"])}


def config(scale: str, method: str, data: str = "synthetic", seed: int = 0, paper: bool = False) -> Config:
    """The baseline ``method`` at preset ``scale``: AF-VAE's data and training budget (``BUDGET_STEPS``), the GAN
    optimiser, and Table 1's ``RECIPE`` (``paper=True``: the papers' settings, ``PAPER``)."""
    if method not in METHODS:
        raise ValueError(f"unknown baseline {method!r}; choose one of {sorted(METHODS)}")
    # a prepared folder's schema sets the boundary channels
    base = for_data(get_config(scale, "full"), data).replace(**KEPT.get(scale, {}))
    width = max(4, DEFAULT_WIDTH[method] * get_config(WIDTH_SCALE.get(scale, scale)).model.base_width // 32)
    steps = BUDGET_STEPS.get(scale, {}).get(method, base.train.steps)
    perceptual = "auto" if method == "pix2pixHD" else "none"  # pix2pixHD's VGG loss, substituted like AF-VAE's
    r = PAPER if paper else RECIPE
    features = r["instance_features"] if method == "pix2pixHD" else PAPER["instance_features"]
    return base.replace(name=method,
                        model={"base_width": width, "max_width": 16 * width, "upsample": r["upsample"],
                               "instance_features": features, "d_blur": r["d_blur"][method],
                               "g_instance_norm": r["g_instance_norm"][method]},
                        loss={"feature_net": perceptual, "recon": r["recon"][method], "r1": r["r1"][method],
                              "attention": r["attention"] if method == "GANimation" else PAPER["attention"]},
                        train={"lr": LR, "betas": BETAS, "seed": seed, "ema": r["ema"], "steps": steps})
