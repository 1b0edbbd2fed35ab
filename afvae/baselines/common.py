"""What the three GAN baselines of Table 1 share: their interface, conditions, layers and adversarial losses.

Every baseline is a ``GANBaseline``: a generator ``G``, a discriminator ``D`` and the K focal points
(``centres``, fitted on the training boundary maps exactly as AF-VAE's, so the conditions match the prior's
clusters). A training step is ``out = generate(batch, g)``, ``d_terms(batch, out)`` for D and
``g_terms(batch, out)`` for G (``GANBaseline.train_step``, run by ``afvae.train``). Evaluation only needs
``translate(x, c_source, c_target) -> x_out``, the same call AF-VAE answers (``AFVAE.translate``).

Conditions built from a boundary map c (B, C_b, H, W):
  * the map itself (pix2pixHD),
  * a domain label = the nearest focal point, argmax_k w_k(c) (StarGAN),
  * the continuous focal weights w(c) (B, K) (GANimation, in place of Action Units).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from afvae.config import Config
from afvae.features import FeatureNet
from afvae.hardware import autocast
from afvae.losses import check_finite
from afvae.model import icnr_
from afvae.prior import at_least_f32, focal_weights

LR, BETAS = 2e-4, (0.5, 0.999)  # Adam settings of all three papers
R1_EVERY = 4  # loss.r1 > 0: the R1 penalty on every 4th D step, its weight times 4 (StyleGAN2's lazy regularisation)


class GANBaseline(nn.Module):
    """G, D and the focal points; subclasses add the paper's conditioning and losses."""

    G: nn.Module
    D: nn.Module

    def __init__(self, cfg: Config, centres: Tensor):
        """:param centres: (K, F) focal points from ``afvae.train.fit_centres``."""
        super().__init__()
        self.cfg = cfg
        self.register_buffer("centres", centres.detach().float().clone())
        self.feature_net: FeatureNet | None = None  # a frozen perceptual network, attached by training only

    @property
    def n_focal(self) -> int:
        return self.centres.shape[0]

    def focal_weights(self, c: Tensor) -> Tensor:
        """w(c): (B, C_b, H, W) -> (B, K), rows sum to 1 (AF-VAE's focal weights)."""
        return focal_weights(c, self.centres, temperature=self.cfg.model.focal_temperature)  # as AF-VAE's prior

    def domain(self, c: Tensor) -> Tensor:
        """The domain label of each map: its nearest focal point, (B, C_b, H, W) -> (B,) int64 in [0, K)."""
        return self.focal_weights(c).argmax(dim=1)

    def generate(self, batch: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        """G's outputs for one training batch (x, c); the noise of the step comes from ``generator``."""
        raise NotImplementedError

    def d_terms(self, batch: dict[str, Tensor], out: dict[str, Tensor]) -> dict[str, Tensor]:
        """The discriminator's named loss terms, ``loss`` their weighted sum (``out`` is detached)."""
        raise NotImplementedError

    def g_terms(self, batch: dict[str, Tensor], out: dict[str, Tensor]) -> dict[str, Tensor]:
        """The generator's named loss terms, ``loss`` their weighted sum."""
        raise NotImplementedError

    def translate(self, x: Tensor, c_source: Tensor, c_target: Tensor) -> Tensor:
        """Source faces x (B, 3, H, W) in [-1, 1] with maps c_source re-rendered with c_target -> (B, 3, H, W)."""
        raise NotImplementedError

    def critic(self, batch: dict[str, Tensor], x: Tensor) -> Tensor:
        """D's realness scores of images x (B, 3, H, W) under the batch's conditions -> (B, N): what R1 penalises."""
        raise NotImplementedError

    def r1(self, batch: dict[str, Tensor]) -> Tensor:
        """R1 (Mescheder et al. 2018): mean over the real images of |grad_x D(x)|^2 -> scalar, differentiable."""
        x = batch["x"].detach().requires_grad_(True)
        grad, = torch.autograd.grad(self.critic(batch, x).sum(), x, create_graph=True)
        return grad.square().sum(dim=(1, 2, 3)).mean()

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The parameters of each optimiser: G's and D's."""
        return {"G": list(self.G.parameters()), "D": list(self.D.parameters())}

    def _outputs_in_fp32(self) -> None:
        """Upcast G's and D's outputs (forward hooks, once): under autocast they run in bf16, the losses in fp32."""
        if not getattr(self, "_fp32_hooks", None):
            self._fp32_hooks = [net.register_forward_hook(lambda module, args, out: _in_fp32(out))
                                for net in (self.G, self.D)]

    def train_step(self, opts: dict[str, torch.optim.Optimizer], batch: dict[str, Tensor],
                   generator: torch.Generator) -> dict[str, Tensor]:
        """One D update then one G update on the same fakes; the named terms (detached), prefixed d_ and g_.

        Raises ``NonFiniteLoss`` before the update whose loss is NaN or infinite.
        """
        amp, device = self.cfg.train.amp, batch["x"].device  # bf16 forward passes (hardware.autocast)
        if amp:
            self._outputs_in_fp32()
        with autocast(amp, device):
            out = self.generate(batch, generator)
            d = self.d_terms(batch, {k: v.detach() for k, v in out.items()})
            if self.cfg.loss.r1 > 0 and d_steps(opts["D"]) % R1_EVERY == 0:  # lazy: the count survives a resume
                d["r1"] = self.r1(batch)
                d["loss"] = d["loss"] + 0.5 * self.cfg.loss.r1 * R1_EVERY * d["r1"]
        check_finite(d, "D ")
        opts["D"].zero_grad(set_to_none=True)
        d["loss"].backward()
        opts["D"].step()
        self.D.requires_grad_(False)  # G's step: gradients through D, not into it
        with autocast(amp, device):
            g = self.g_terms(batch, out)
        self.D.requires_grad_(True)
        check_finite(g, "G ")
        opts["G"].zero_grad(set_to_none=True)
        g["loss"].backward()
        opts["G"].step()
        return {**{f"d_{k}": v.detach() for k, v in d.items()}, **{f"g_{k}": v.detach() for k, v in g.items()}}


def _in_fp32(out: Tensor | list | tuple) -> Tensor | list | tuple:
    """A network's output (a tensor, or nested lists / tuples of them) with bf16 / fp16 upcast to fp32."""
    return at_least_f32(out) if isinstance(out, Tensor) else type(out)(_in_fp32(o) for o in out)


def d_steps(opt: torch.optim.Optimizer) -> int:
    """How many steps the optimiser ``opt`` has taken (its state's own count: restored by an exact resume)."""
    state = next(iter(opt.state.values()), None)
    return int(state["step"]) if state else 0


# ----------------------------------------------------------------------------------------------------------
# Layers: conv + InstanceNorm + ReLU generators, LeakyReLU PatchGAN discriminators (as in all three papers)


def instance_norm(ch: int, norm: bool = True) -> nn.Module:
    """The generators' affine InstanceNorm, or nothing (``model.g_instance_norm`` off): (B, ch, H, W) -> same.

    Every layer below takes ``norm``; off, the norm's slot holds an ``nn.Identity``, so a generator with the
    norm keeps its parameter names."""
    return nn.InstanceNorm2d(ch, affine=True) if norm else nn.Identity()


def conv_in(cin: int, cout: int, k: int = 3, stride: int = 1, norm: bool = True) -> nn.Sequential:
    """k x k conv (reflect padding at stride 1), InstanceNorm, ReLU: same size, or half at stride 2."""
    pad_mode = "reflect" if stride == 1 else "zeros"
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=False, padding_mode=pad_mode),
                         instance_norm(cout, norm), nn.ReLU(inplace=True))


def down_in(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    """4 x 4 stride-2 conv, InstanceNorm, ReLU: (B, cin, H, W) -> (B, cout, H/2, W/2)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), instance_norm(cout, norm), nn.ReLU(inplace=True))


def up_in(cin: int, cout: int, mode: str = "deconv", norm: bool = True) -> nn.Sequential:
    """x2 upsampling, InstanceNorm, ReLU: (B, cin, H, W) -> (B, cout, 2H, 2W). ``mode`` "deconv": the papers'
    4 x 4 stride-2 transposed conv; "pixel_shuffle": a 3 x 3 sub-pixel conv (ICNR-initialised) + PixelShuffle,
    AF-VAE's upsampling, which starts without the transposed conv's checkerboard (``model.upsample``)."""
    if mode == "deconv":
        up: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)]
    elif mode == "pixel_shuffle":
        sub = nn.Conv2d(cin, 4 * cout, 3, 1, 1, bias=False, padding_mode="reflect")
        icnr_(sub.weight)
        up = [sub, nn.PixelShuffle(2)]
    else:
        raise ValueError(f"unknown upsample mode {mode!r}; expected 'pixel_shuffle' or 'deconv'")
    return nn.Sequential(*up, instance_norm(cout, norm), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))): the residual block of all three generators."""

    def __init__(self, ch: int, norm: bool = True):
        super().__init__()
        self.body = nn.Sequential(conv_in(ch, ch, norm=norm),
                                  nn.Conv2d(ch, ch, 3, 1, 1, bias=False, padding_mode="reflect"),
                                  instance_norm(ch, norm))

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


def to_image(cin: int, cout: int = 3) -> nn.Conv2d:
    """The 7 x 7 output conv of the generators (activation applied by the caller)."""
    return nn.Conv2d(cin, cout, 7, 1, 3, padding_mode="reflect")


class Stem(nn.Module):
    """A generator's first layer with its condition: 7x7 conv, InstanceNorm, + the condition (B, K) as a per-channel
    bias, ReLU: (B, cin, R, R), (B, K) -> (B, width, R, R).

    The papers give the condition as K constant input channels. Through a reflect-padded conv a constant channel
    becomes a constant map, which the InstanceNorm right after subtracts exactly: the generator would never see its
    condition. Added after the norm and before the ReLU, the condition survives every later norm.
    """

    def __init__(self, cin: int, k: int, width: int, norm: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, width, 7, 1, 3, bias=False, padding_mode="reflect")
        self.norm = instance_norm(width, norm)
        self.cond = nn.Linear(k, width)

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(h)) + self.cond(cond)[:, :, None, None])


class EncoderDecoder(nn.Module):
    """The generator trunk of all three baselines: a ``Stem`` taking the condition, two stride-2 downs, residual
    blocks, two ups.

    (B, cin, R, R), condition (B, K) -> (B, width, R, R) features (the heads are the caller's).
    """

    def __init__(self, cin: int, k: int, width: int, n_res: int, upsample: str = "deconv", norm: bool = True):
        super().__init__()
        w = width
        self.stem = Stem(cin, k, w, norm)
        self.body = nn.Sequential(down_in(w, 2 * w, norm), down_in(2 * w, 4 * w, norm),
                                  *[ResBlock(4 * w, norm) for _ in range(n_res)],
                                  up_in(4 * w, 2 * w, upsample, norm), up_in(2 * w, w, upsample, norm))

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        return self.body(self.stem(h, cond))


class Blur(nn.Module):
    """A fixed binomial low-pass, [1, 2, 1] x [1, 2, 1] / 16 per channel, reflect-padded: (B, C, H, W) -> same.

    Put before a stride-2 conv (``model.d_blur``), it removes what the stride would alias (Zhang, "Making
    convolutional networks shift-invariant again", ICML 2019): a one-pixel checkerboard becomes 0. In a
    discriminator it does so both ways: D cannot read aliased patterns, and its gradient to G, which passes
    back through the same filter, carries none of them.
    """

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 16).expand(channels, 1, 3, 3).clone(),
                             persistent=False)  # fixed: not a weight, not in the state dict

    def forward(self, h: Tensor) -> Tensor:
        return F.conv2d(F.pad(h, (1, 1, 1, 1), mode="reflect"), self.kernel, groups=self.kernel.shape[0])


def strided(conv: nn.Conv2d, blur: bool) -> nn.Module:
    """A discriminator's stride-2 ``conv``, after a ``Blur`` of its input when ``blur`` (``model.d_blur``)."""
    return nn.Sequential(Blur(conv.in_channels), conv) if blur else conv


def patch_trunk(cin: int, width: int, n_down: int, max_width: int, blur: bool = False) -> nn.Sequential:
    """PatchGAN trunk: ``n_down`` 4x4 stride-2 convs with LeakyReLU(0.01) (StarGAN / GANimation's D), each after
    a ``Blur`` when ``blur``."""
    layers, c = [], cin
    for i in range(n_down):
        out = min(width * 2**i, max_width)
        layers += [strided(nn.Conv2d(c, out, 4, 2, 1), blur), nn.LeakyReLU(0.01)]
        c = out
    return nn.Sequential(*layers)


def trunk_width(trunk: nn.Sequential) -> int:
    """Channels out of a ``patch_trunk``."""
    return [m for m in trunk.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


# ----------------------------------------------------------------------------------------------------------
# Adversarial losses. LSGAN (Mao et al., 2017; pix2pixHD) and hinge (Lim & Ye, 2017; our stand-in for the
# WGAN-GP of StarGAN and GANimation, see their modules).


def lsgan_d(real: Tensor, fake: Tensor) -> Tensor:
    """LSGAN discriminator loss: mean (D(real) - 1)^2 + mean D(fake)^2, halved (pix2pixHD's weighting)."""
    return 0.5 * ((real - 1).square().mean() + fake.square().mean())


def lsgan_g(fake: Tensor) -> Tensor:
    """LSGAN generator loss: mean (D(G(.)) - 1)^2."""
    return (fake - 1).square().mean()


def hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    """Hinge discriminator loss: mean relu(1 - D(real)) + mean relu(1 + D(fake))."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_g(fake: Tensor) -> Tensor:
    """Hinge generator loss: -mean D(G(.))."""
    return -fake.mean()
