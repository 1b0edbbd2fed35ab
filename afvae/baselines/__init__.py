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
training budget in images seen (``train.steps * train.batch_size``); ``model.base_width`` is the baseline's
width, ``train.lr`` = 2e-4 and Adam betas (0.5, 0.999), as in all three papers, and ``model.upsample`` the
generators' upsampling (``UPSAMPLE``: transposed convolutions, as in the papers).
"""
from __future__ import annotations

from afvae.baselines.common import BETAS, LR, GANBaseline
from afvae.baselines.ganimation import GANimation
from afvae.baselines.pix2pixhd import Pix2PixHD
from afvae.baselines.stargan import StarGAN
from afvae.config import Config, get_config
from afvae.data.datasets import for_data

METHODS: dict[str, type[GANBaseline]] = {"pix2pixHD": Pix2PixHD, "StarGAN": StarGAN, "GANimation": GANimation}
# Widths at the default scale (64 px), sized so that each trains at roughly AF-VAE's speed on a CPU; other
# scales multiply them by the preset's base_width / 32 (smoke: / 4, paper: x 2).
DEFAULT_WIDTH = {"pix2pixHD": 16, "StarGAN": 12, "GANimation": 12}
# The generators' x2 upsampling: the papers' transposed convolution. "pixel_shuffle" (AF-VAE's) is a switch; with
# it and an EMA of the weights, pix2pixHD still painted colour noise at the default budget (README, Table 1).
UPSAMPLE = "deconv"


def config(scale: str, method: str, data: str = "synthetic", seed: int = 0) -> Config:
    """The baseline ``method`` at preset ``scale``: AF-VAE's data and images-seen budget, the GAN optimiser."""
    if method not in METHODS:
        raise ValueError(f"unknown baseline {method!r}; choose one of {sorted(METHODS)}")
    base = for_data(get_config(scale, "full"), data)  # a prepared folder's schema sets the boundary channels
    width = max(4, DEFAULT_WIDTH[method] * base.model.base_width // 32)
    perceptual = "auto" if method == "pix2pixHD" else "none"  # pix2pixHD's VGG loss, substituted like AF-VAE's
    return base.replace(name=method, model={"base_width": width, "max_width": 16 * width, "upsample": UPSAMPLE},
                        loss={"feature_net": perceptual}, train={"lr": LR, "betas": BETAS, "seed": seed})
