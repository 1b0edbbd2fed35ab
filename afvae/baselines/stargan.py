"""StarGAN baseline: source image + target domain label -> image, written from the paper's description.

Y. Choi, M. Choi, M. Kim, J.-W. Ha, S. Kim, J. Choo. "StarGAN: Unified Generative Adversarial Networks for
Multi-Domain Image-to-Image Translation." CVPR 2018.

What is kept from the paper (Sec. 3):
  * one generator G(x, l) for all domains, the target label l given as K constant input channels (one-hot);
    G is conv 7x7, two stride-2 downs, residual blocks, two stride-2 ups, conv 7x7, tanh, InstanceNorm;
  * a PatchGAN D with two heads on a shared trunk: D_src (real / fake per patch) and D_cls (K domain logits);
  * domain classification loss (cross-entropy of D_cls on real images with their label for D, on fakes with
    the target label for G), lambda_cls = 1, and cycle reconstruction ||x - G(G(x, l_t), l_s)||_1,
    lambda_rec = 10 (Eqs. 2-4, 7); target labels are the batch's own labels, shuffled.
Domains: the K focal clusters of AF-VAE (the label of c is argmax_k w_k(c)), which exist for every dataset;
the paper's RaFD expression labels are not in our folder format. Changed: hinge loss with one D step per
G step instead of WGAN-GP with five (the same images-seen budget as AF-VAE), and smaller widths.
Table 1's recipe (``afvae.baselines.RECIPE``, each a config field): an identity-mapping L1, G(x, l_s) = x
(``loss.recon``), pixel-shuffle upsampling and an EMA of the weights.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from afvae.baselines.common import (GANBaseline, EncoderDecoder, hinge_d, hinge_g, patch_trunk,
                                    to_image, trunk_width)
from afvae.config import Config

LAMBDA_CLS, LAMBDA_REC = 1.0, 10.0  # the paper's values
N_RES = 3  # paper: 6


def cycle_loss(x: Tensor, x_cycle: Tensor) -> Tensor:
    """Eq. 3: mean |x - G(G(x, l_t), l_s)|, (B, 3, H, W) twice -> scalar."""
    return (x - x_cycle).abs().mean()


class Generator(nn.Module):
    """G(x, l): (B, 3, R, R) in [-1, 1], one-hot labels (B, K) -> (B, 3, R, R) in [-1, 1]."""

    def __init__(self, k: int, width: int, upsample: str = "deconv", norm: bool = True):
        super().__init__()
        self.trunk = EncoderDecoder(3, k, width, N_RES, upsample, norm)
        self.out = to_image(width)

    def forward(self, x: Tensor, label: Tensor) -> Tensor:
        return torch.tanh(self.out(self.trunk(x, label)))


class Discriminator(nn.Module):
    """D(x) -> (patch scores (B, 1, 2, 2), domain logits (B, K)); the trunk halves R down to 2 x 2."""

    def __init__(self, k: int, width: int, resolution: int, blur: bool = False):
        super().__init__()
        n_down = resolution.bit_length() - 2  # R -> 2
        self.trunk = patch_trunk(3, width, n_down, max_width=16 * width, blur=blur)
        ch = trunk_width(self.trunk)
        self.src = nn.Conv2d(ch, 1, 3, 1, 1)
        self.cls = nn.Conv2d(ch, k, 2)  # kernel = the trunk's 2 x 2 output: one logit vector per image

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(x)
        return self.src(h), self.cls(h).flatten(1)


class StarGAN(GANBaseline):
    """StarGAN over the K focal-cluster domains."""

    def __init__(self, cfg: Config, centres: Tensor):
        super().__init__(cfg, centres)
        w, R = cfg.model.base_width, cfg.data.size
        self.G = Generator(self.n_focal, w, cfg.model.upsample, cfg.model.g_instance_norm)
        self.D = Discriminator(self.n_focal, w, R, cfg.model.d_blur)

    def one_hot(self, label: Tensor) -> Tensor:
        return F.one_hot(label, self.n_focal).float()  # (B, K)

    def generate(self, batch: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        label = self.domain(batch["c"])  # (B,) source domains
        perm = torch.randperm(label.shape[0], generator=generator, device=generator.device).to(label.device)
        target = label[perm]  # the batch's labels, shuffled
        x_fake = self.G(batch["x"], self.one_hot(target))
        x_cycle = self.G(x_fake, self.one_hot(label))
        out = {"x_fake": x_fake, "x_cycle": x_cycle, "label": label, "target": target}
        if self.cfg.loss.recon > 0:  # the recipe's identity mapping: G(x, own label) should return x
            out["x_own"] = self.G(batch["x"], self.one_hot(label))
        return out

    def d_terms(self, batch: dict[str, Tensor], out: dict[str, Tensor]) -> dict[str, Tensor]:
        src_real, cls_real = self.D(batch["x"])
        src_fake, _ = self.D(out["x_fake"])
        adv = hinge_d(src_real, src_fake)
        cls = F.cross_entropy(cls_real, out["label"])  # Eq. 2: real images with their own domain
        return {"loss": adv + LAMBDA_CLS * cls, "adv": adv, "cls": cls}

    def g_terms(self, batch: dict[str, Tensor], out: dict[str, Tensor]) -> dict[str, Tensor]:
        src_fake, cls_fake = self.D(out["x_fake"])
        adv = hinge_g(src_fake)
        cls = F.cross_entropy(cls_fake, out["target"])  # Eq. 3: fakes classified as the target domain
        rec = cycle_loss(batch["x"], out["x_cycle"])
        terms = {"loss": adv + LAMBDA_CLS * cls + LAMBDA_REC * rec, "adv": adv, "cls": cls, "rec": rec}
        if "x_own" in out:
            terms["recon"] = cycle_loss(batch["x"], out["x_own"])  # the same L1, to the own-label pass
            terms["loss"] = terms["loss"] + self.cfg.loss.recon * terms["recon"]
        return terms

    def critic(self, batch: dict[str, Tensor], x: Tensor) -> Tensor:
        return self.D(x)[0].flatten(1)  # D_src's patch scores (B, 4)

    def translate(self, x: Tensor, c_source: Tensor, c_target: Tensor) -> Tensor:
        """G(x, domain(c_target)): only the target's focal cluster reaches the generator."""
        return self.G(x, self.one_hot(self.domain(c_target)))
