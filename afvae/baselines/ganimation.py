"""GANimation baseline: source image + continuous target condition -> colour and attention, composited over
the source. Written from the paper's description.

A. Pumarola, A. Agudo, A. M. Martinez, A. Sanfeliu, F. Moreno-Noguer. "GANimation: Anatomically-aware Facial
Animation from a Single Image." ECCV 2018.

What is kept from the paper (Sec. 4):
  * G(x, y) regresses a colour mask C (tanh) and an attention mask A (sigmoid) from the image and the target
    condition y given as constant channels; the output is I_y = (1 - A) * C + A * x: where A = 1 the source
    pixel is kept (Eq. 1);
  * D has a PatchGAN critic head and a condition-regression head D_y (Sec. 4.2);
  * losses: adversarial; attention loss lambda_TV * TV(A) + lambda_A * mean(A) on both generator passes (it
    keeps A from saturating to 1); conditional expression loss ||D_y(.) - y||^2 on real images (for D) and on
    fakes with the target y (for G); identity (cycle) loss ||G(G(x, y_t), y_s) - x||_1, lambda_idt = 10.
Substitution: the paper's condition is a vector of Action Unit intensities from an external detector
(OpenFace), which we do not have. The condition here is AF-VAE's focal-indexed feature w(c) (B, K): how close
the boundary map is to each of the K focal points, continuous on the simplex. Target conditions are the
batch's own, shuffled (the paper samples them from the training set). Changed: hinge loss with one D step
per G step instead of WGAN-GP with five, lambda_y chosen for a K-vector on the simplex, smaller widths.
Table 1's recipe (``afvae.baselines.RECIPE``, each a config field): the colour mask of the own-condition pass
should paint the source itself, ||C(x, y_s) - x||_1 (``loss.recon``: it trains C even while A copies), lambda_A = 1
instead of 0.1 (``loss.attention``), pixel-shuffle upsampling and an EMA of the weights.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from afvae.baselines.common import (GANBaseline, EncoderDecoder, hinge_d, hinge_g, patch_trunk,
                                    to_image, trunk_width)
from afvae.config import Config

LAMBDA_IDT, LAMBDA_TV = 10.0, 1e-5  # the paper's values (TV summed over pixels); lambda_A is loss.attention
LAMBDA_Y = 100.0  # on the mean squared error of a K-vector whose entries are mostly < 0.5
N_RES = 3  # paper: 6


def composite(x: Tensor, colour: Tensor, attention: Tensor) -> Tensor:
    """Eq. 1: (1 - A) * C + A * x. x, colour (B, 3, H, W) in [-1, 1], attention (B, 1, H, W) in [0, 1]."""
    return (1 - attention) * colour + attention * x


def attention_loss(attention: Tensor, lambda_a: float) -> Tensor:
    """lambda_TV * total variation (summed per image, mean over the batch) + lambda_a * mean A: (B, 1, H, W)."""
    tv = ((attention[..., 1:, :] - attention[..., :-1, :]).square().sum(dim=(1, 2, 3))
          + (attention[..., :, 1:] - attention[..., :, :-1]).square().sum(dim=(1, 2, 3))).mean()
    return LAMBDA_TV * tv + lambda_a * attention.mean()


class Generator(nn.Module):
    """G(x, y): x (B, 3, R, R), y (B, K) -> colour (B, 3, R, R) in [-1, 1], attention (B, 1, R, R) in [0, 1]."""

    def __init__(self, k: int, width: int, upsample: str = "deconv", norm: bool = True):
        super().__init__()
        self.trunk = EncoderDecoder(3, k, width, N_RES, upsample, norm)
        self.colour = to_image(width, 3)
        self.attention = to_image(width, 1)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(x, y)  # (B, w, R, R)
        return torch.tanh(self.colour(h)), torch.sigmoid(self.attention(h))


class Discriminator(nn.Module):
    """D(x) -> (critic scores (B, 1, 2, 2), regressed condition (B, K))."""

    def __init__(self, k: int, width: int, resolution: int, blur: bool = False):
        super().__init__()
        self.trunk = patch_trunk(3, width, resolution.bit_length() - 2, max_width=16 * width, blur=blur)  # R -> 2
        ch = trunk_width(self.trunk)
        self.critic = nn.Conv2d(ch, 1, 3, 1, 1)
        self.cond = nn.Conv2d(ch, k, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(x)
        return self.critic(h), self.cond(h).flatten(1)


class GANimation(GANBaseline):
    """GANimation conditioned on the focal weights w(c)."""

    def __init__(self, cfg: Config, centres: Tensor):
        super().__init__(cfg, centres)
        w, R = cfg.model.base_width, cfg.data.size
        self.G = Generator(self.n_focal, w, cfg.model.upsample, cfg.model.g_instance_norm)
        self.D = Discriminator(self.n_focal, w, R, cfg.model.d_blur)

    def animate(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One generator pass: x (B, 3, R, R), y (B, K) -> (I_y (B, 3, R, R), A (B, 1, R, R))."""
        colour, attention = self.G(x, y)
        return composite(x, colour, attention), attention

    def generate(self, batch: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        y = self.focal_weights(batch["c"])  # (B, K)
        perm = torch.randperm(y.shape[0], generator=generator, device=generator.device).to(y.device)
        y_target = y[perm]
        x_fake, a_fake = self.animate(batch["x"], y_target)
        x_cycle, a_cycle = self.animate(x_fake, y)
        out = {"x_fake": x_fake, "a_fake": a_fake, "x_cycle": x_cycle, "a_cycle": a_cycle, "y": y,
               "y_target": y_target}
        if self.cfg.loss.recon > 0:  # the recipe: the colour mask of the own-condition pass should paint x itself
            out["colour_own"] = self.G(batch["x"], y)[0]
        return out

    def d_terms(self, batch: dict[str, Tensor], out: dict[str, Tensor]) -> dict[str, Tensor]:
        critic_real, y_real = self.D(batch["x"])
        critic_fake, _ = self.D(out["x_fake"])
        adv = hinge_d(critic_real, critic_fake)
        cond = (y_real - out["y"]).square().mean()
        return {"loss": adv + LAMBDA_Y * cond, "adv": adv, "cond": cond}

    def g_terms(self, batch: dict[str, Tensor], out: dict[str, Tensor]) -> dict[str, Tensor]:
        critic_fake, y_fake = self.D(out["x_fake"])
        adv = hinge_g(critic_fake)
        cond = (y_fake - out["y_target"]).square().mean()
        idt = (out["x_cycle"] - batch["x"]).abs().mean()
        lambda_a = self.cfg.loss.attention
        attn = attention_loss(out["a_fake"], lambda_a) + attention_loss(out["a_cycle"], lambda_a)
        loss = adv + LAMBDA_Y * cond + LAMBDA_IDT * idt + attn
        terms = {"adv": adv, "cond": cond, "idt": idt, "attn": attn, "attention_mean": out["a_fake"].detach().mean()}
        if "colour_own" in out:  # a copy through the attention would not train the colour mask: it is the target
            terms["recon"] = (out["colour_own"] - batch["x"]).abs().mean()
            loss = loss + self.cfg.loss.recon * terms["recon"]
        return {"loss": loss, **terms}

    def critic(self, batch: dict[str, Tensor], x: Tensor) -> Tensor:
        return self.D(x)[0].flatten(1)  # the critic's patch scores (B, 4)

    def translate(self, x: Tensor, c_source: Tensor, c_target: Tensor) -> Tensor:
        """I_y for y = w(c_target): only the target's focal weights reach the generator."""
        return self.animate(x, self.focal_weights(c_target))[0]
