"""pix2pixHD-style baseline: boundary map c -> face image, written from the paper's description.

T.-C. Wang, M.-Y. Liu, J.-Y. Zhu, A. Tao, J. Kautz, B. Catanzaro. "High-Resolution Image Synthesis and
Semantic Manipulation with Conditional GANs." CVPR 2018.

What is kept from the paper (Sec. 3):
  * coarse-to-fine generator: a global generator G1 on the map downsampled x2, and a local enhancer G2 at full
    resolution whose front-end features are *added* to G1's last feature map before G2's residual blocks and
    back-end (two levels, as the issue allows at our scale);
  * multi-scale PatchGAN discriminators: two identical conditional discriminators D1, D2 on (c, x) at full and
    half resolution;
  * LSGAN adversarial loss plus the discriminator feature-matching loss, lambda_FM = 10 (Eq. 4);
  * the instance-level feature encoder E: image -> 3 feature channels, averaged over each instance and
    concatenated to the label map, which lets one choose the output's appearance. We have no instance maps,
    so the whole face is one instance: E(x) is averaged over the image. Translating a face = G(c_target, E(x)).
Changed: widths and depths are cut to train in CPU minutes; the VGG perceptual loss (the paper's optional
term) is the same feature network as AF-VAE's feature matching (VGG-19 when its weights are on disk, else
the factor net), lambda = 10; one D and one G update per batch, like the other baselines.
Table 1's recipe (``afvae.baselines.RECIPE``, each a config field): pix2pix's L1 to the real image
(``loss.recon``), ``model.instance_features`` channels instead of 3 (one instance must carry the whole face's
colours), pixel-shuffle upsampling and an EMA of the weights.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from afvae import losses
from afvae.baselines.common import (GANBaseline, EncoderDecoder, ResBlock, Stem, conv_in, down_in, lsgan_d,
                                   lsgan_g, strided, to_image, up_in)
from afvae.config import Config

LAMBDA_FM = 10.0  # feature-matching weight (the paper's value)
LAMBDA_PERCEPTUAL = 10.0  # the paper's VGG loss weight, for the perceptual network training attaches
N_SCALES = 2  # discriminators at R and R/2
N_RES_GLOBAL, N_RES_LOCAL = 3, 1  # paper: 9 and 3


def downsample(h: Tensor) -> Tensor:
    """x2 average pooling as in the paper's image pyramid (3x3, stride 2, padding not counted)."""
    return F.avg_pool2d(h, 3, 2, 1, count_include_pad=False)


class FeatureEncoder(nn.Module):
    """E: x (B, 3, R, R) -> instance features (B, F), the mean over the face (one instance)."""

    def __init__(self, width: int, features: int, norm: bool = True):
        super().__init__()
        self.body = nn.Sequential(conv_in(3, width, k=7, norm=norm), down_in(width, 2 * width, norm),
                                  down_in(2 * width, 4 * width, norm), nn.Conv2d(4 * width, features, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).mean(dim=(2, 3))  # (B, F): instance-wise average pooling


class Generator(nn.Module):
    """G = (G1 global at R/2, G2 local enhancer at R) and E: (c, x_appearance) -> x_hat (B, 3, R, R).

    As in the paper, G1 has twice G2's width, so G1's last features (w channels at R/2) and G2's front end
    (w/2 at R, then w at R/2) can be summed.
    """

    def __init__(self, c_channels: int, width: int, upsample: str = "deconv", features: int = 3, norm: bool = True):
        super().__init__()
        w, h = width, width // 2
        self.encoder = FeatureEncoder(h, features, norm)
        self.global_g = EncoderDecoder(c_channels, features, w, N_RES_GLOBAL, upsample, norm)  # G1 without its output
        self.local_stem = Stem(c_channels, features, h, norm)  # G2's front end: R -> R/2 after local_down
        self.local_down = down_in(h, w, norm)
        self.local_back = nn.Sequential(*[ResBlock(w, norm) for _ in range(N_RES_LOCAL)], up_in(w, h, upsample, norm),
                                        to_image(h), nn.Tanh())

    def forward(self, c: Tensor, features: Tensor) -> Tensor:
        """c (B, C_b, R, R) in [0, 1], features (B, F) -> (B, 3, R, R) in [-1, 1]."""
        front = self.local_down(self.local_stem(c, features))  # (B, w, R/2, R/2)
        return self.local_back(front + self.global_g(downsample(c), features))  # G2 front + G1 at R/2


class PatchD(nn.Module):
    """One 70x70-style PatchGAN on (c, x), returning every layer's output (for feature matching)."""

    def __init__(self, cin: int, width: int, blur: bool = False):
        super().__init__()
        w = width
        self.layers = nn.ModuleList([
            nn.Sequential(strided(nn.Conv2d(cin, w, 4, 2, 1), blur), nn.LeakyReLU(0.2)),
            nn.Sequential(strided(nn.Conv2d(w, 2 * w, 4, 2, 1), blur), nn.InstanceNorm2d(2 * w), nn.LeakyReLU(0.2)),
            nn.Sequential(strided(nn.Conv2d(2 * w, 4 * w, 4, 2, 1), blur), nn.InstanceNorm2d(4 * w),
                          nn.LeakyReLU(0.2)),
            nn.Sequential(nn.Conv2d(4 * w, 8 * w, 3, 1, 1), nn.InstanceNorm2d(8 * w), nn.LeakyReLU(0.2)),
            nn.Conv2d(8 * w, 1, 3, 1, 1),  # patch scores
        ])

    def forward(self, h: Tensor) -> list[Tensor]:
        feats = []
        for layer in self.layers:
            h = layer(h)
            feats.append(h)
        return feats


class MultiScaleD(nn.Module):
    """D1 ... D_N on (c, x) at R, R/2, ...: a list (per scale) of lists of features, scores last."""

    def __init__(self, cin: int, width: int, blur: bool = False):
        super().__init__()
        self.scales = nn.ModuleList(PatchD(cin, width, blur) for _ in range(N_SCALES))

    def forward(self, c: Tensor, x: Tensor) -> list[list[Tensor]]:
        h, out = torch.cat([c, x], dim=1), []
        for i, d in enumerate(self.scales):
            out.append(d(h))
            if i + 1 < len(self.scales):
                h = downsample(h)
        return out


def feature_matching(fake: list[list[Tensor]], real: list[list[Tensor]]) -> Tensor:
    """Eq. 4: sum over scales and D layers (not the scores) of L1(D_k^(i)(fake), D_k^(i)(real)), averaged."""
    terms = [F.l1_loss(f, r.detach()) for fs, rs in zip(fake, real) for f, r in zip(fs[:-1], rs[:-1])]
    return torch.stack(terms).sum() / len(fake)


class Pix2PixHD(GANBaseline):
    """pix2pixHD: trained on (c, x) pairs to render x from its own map c and its instance features E(x)."""

    def __init__(self, cfg: Config, centres: Tensor):
        super().__init__(cfg, centres)
        C, w = cfg.model.boundary_channels, cfg.model.base_width
        self.G = Generator(C, w, cfg.model.upsample, cfg.model.instance_features, cfg.model.g_instance_norm)
        self.D = MultiScaleD(C + 3, w, cfg.model.d_blur)

    def generate(self, batch: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        return {"x_fake": self.G(batch["c"], self.G.encoder(batch["x"]))}  # deterministic: no noise needed

    def d_terms(self, batch: dict[str, Tensor], out: dict[str, Tensor]) -> dict[str, Tensor]:
        real, fake = self.D(batch["c"], batch["x"]), self.D(batch["c"], out["x_fake"])
        adv = sum(lsgan_d(r[-1], f[-1]) for r, f in zip(real, fake)) / len(real)
        return {"loss": adv, "adv": adv}

    def g_terms(self, batch: dict[str, Tensor], out: dict[str, Tensor]) -> dict[str, Tensor]:
        fake = self.D(batch["c"], out["x_fake"])
        with torch.no_grad():
            real = self.D(batch["c"], batch["x"])
        adv = sum(lsgan_g(f[-1]) for f in fake) / len(fake)
        fm = feature_matching(fake, real)
        l1 = F.l1_loss(out["x_fake"], batch["x"])  # the reconstruction's L1: in the loss with loss.recon > 0
        terms = {"adv": adv, "fm": fm, "l1": l1.detach()}
        loss = adv + LAMBDA_FM * fm + self.cfg.loss.recon * l1
        if self.feature_net is not None:  # the paper's perceptual loss on the frozen feature net
            fn = self.feature_net
            terms["perceptual"] = losses.feature_matching(feats_x=fn(batch["x"]), feats_x_hat=fn(out["x_fake"]),
                                                          weights=fn.weights)
            loss = loss + LAMBDA_PERCEPTUAL * terms["perceptual"]
        return {"loss": loss, **terms}

    def critic(self, batch: dict[str, Tensor], x: Tensor) -> Tensor:
        return torch.cat([scale[-1].flatten(1) for scale in self.D(batch["c"], x)], dim=1)  # every scale's patches

    def translate(self, x: Tensor, c_source: Tensor, c_target: Tensor) -> Tensor:
        """G(c_target, E(x)): the target's map with the source's instance features (c_source is unused)."""
        return self.G(c_target, self.G.encoder(x))
