"""AF-VAE networks (paper Sec. 3, Fig. 2): structure encoder, appearance encoder, decoder.

    c --E_mu--> y, skips            structure code y (B, C_y, 4, 4) + U-Net skips at R/2 ... 4
    x, y --E_app--> mu, logvar      q(z | x, y) = N(mu, diag(exp(logvar)))           z: (B, D)
    z, y, skips --D--> x_hat        upsampling by sub-pixel convolution (pixel shuffle)
    c --focal points--> w           focal weights (B, K) of the additive prior p(z | y)

Every conv / linear is weight-normalised unless ``cfg.norm`` says otherwise (the ablations).
Depth follows resolution: one stride-2 stage per factor 2 from ``resolution`` down to 4 px; the first
and last layers change resolution themselves, so nothing else runs at full resolution.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from afvae.config import ModelConfig
from afvae.prior import AdditiveFocalPrior, boundary_features


def _wrap(layer: nn.Module, norm: str, out_channels: int, act: bool) -> nn.Module:
    """Apply the normalisation switch to ``layer`` and append LeakyReLU if ``act``."""
    if norm == "weight":
        # ConvTranspose weights are (in, out, k, k): normalise per output channel (dim 1).
        layer = weight_norm(layer, dim=1 if isinstance(layer, nn.ConvTranspose2d) else 0)
    parts = [layer]
    if norm == "batch" and act:
        parts.append(nn.BatchNorm2d(out_channels))
    if act:
        parts.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*parts) if len(parts) > 1 else layer


def conv(cin: int, cout: int, norm: str, *, k: int = 3, stride: int = 1, act: bool = True) -> nn.Module:
    """k x k conv (padding (k-1)//2: same size, or exactly half at stride 2), norm switch, optional LeakyReLU."""
    return _wrap(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=norm != "batch" or not act), norm, cout, act)


def linear(fin: int, fout: int, norm: str) -> nn.Module:
    """Linear layer, weight-normalised when ``norm == 'weight'`` (BatchNorm is for convs only)."""
    return weight_norm(nn.Linear(fin, fout)) if norm == "weight" else nn.Linear(fin, fout)


@torch.no_grad()
def icnr_(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """ICNR init (Aitken et al., 2017): the scale^2 sub-pixel kernels of each output channel start equal, so
    PixelShuffle starts as nearest-neighbour upsampling instead of a checkerboard. weight: (C*s^2, C_in, k, k)."""
    base = torch.empty(weight.shape[0] // scale**2, *weight.shape[1:])
    nn.init.kaiming_uniform_(base, a=5**0.5)  # PyTorch's default conv init
    return weight.copy_(base.repeat_interleave(scale**2, dim=0))


DECONV_KERNELS = {"deconv": 4, "deconv_6x6": 6}  # transposed-conv modes: kernel size (stride 2, padding k/2 - 1)


class Upsample(nn.Module):
    """x2 upsampling: sub-pixel conv + PixelShuffle (the paper) or a stride-2 transposed conv.

    ``deconv_6x6`` is the "w/o pixel shuffle" ablation at equal capacity: its 6 x 6 x C_in x C_out weights are
    exactly the 3 x 3 x C_in x 4 C_out of the sub-pixel conv (only biases and weight-norm gains differ, by
    6 C_out). ``deconv`` (4 x 4, 4/9 of the weights) is the common transposed conv, kept for the baselines.
    """

    def __init__(self, cin: int, cout: int, mode: str, norm: str, act: bool = True):
        super().__init__()
        if mode == "pixel_shuffle":
            sub = nn.Conv2d(cin, 4 * cout, 3, 1, 1)
            icnr_(sub.weight)
            nn.init.zeros_(sub.bias)
            self.body = nn.Sequential(_wrap(sub, norm, 4 * cout, act=False), nn.PixelShuffle(2))
        elif mode in DECONV_KERNELS:
            k = DECONV_KERNELS[mode]
            deconv = nn.ConvTranspose2d(cin, cout, k, 2, k // 2 - 1)  # out = 2 (H - 1) - 2 (k/2 - 1) + k = 2H
            self.body = weight_norm(deconv, dim=1) if norm == "weight" else deconv
        else:
            raise ValueError(f"unknown upsample mode {mode!r}; expected 'pixel_shuffle', 'deconv' or 'deconv_6x6'")
        post = [nn.BatchNorm2d(cout)] if norm == "batch" and act else []
        self.post = nn.Sequential(*post, nn.LeakyReLU(0.2)) if act else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.post(self.body(h))  # (B, cin, H, W) -> (B, cout, 2H, 2W)


def stage_widths(cfg: ModelConfig) -> list[int]:
    """Channel width at each scale: index 0 is R/2 x R/2, the last is 4 x 4.

    No layer runs at full resolution except the final pixel shuffle: full-resolution convolutions would
    cost most of the FLOPs (a 64-px CPU model trains ~3x faster without them).
    """
    if cfg.resolution < 8 or cfg.resolution & (cfg.resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 8, got {cfg.resolution}")
    n_scales = int(math.log2(cfg.resolution // 4))  # R/2, R/4, ..., 4
    return [min(cfg.base_width * 2**i, cfg.max_width) for i in range(n_scales)]


class Encoder(nn.Module):
    """Conv pyramid: (B, cin, R, R) -> features at R/2, R/4, ..., 4."""

    def __init__(self, cin: int, widths: list[int], norm: str):
        super().__init__()
        self.stem = nn.Sequential(conv(cin, widths[0], norm, k=4, stride=2), conv(widths[0], widths[0], norm))
        self.down = nn.ModuleList(
            nn.Sequential(conv(a, b, norm, stride=2), conv(b, b, norm)) for a, b in zip(widths[:-1], widths[1:])
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]  # (B, widths[0], R/2, R/2)
        for block in self.down:
            feats.append(block(feats[-1]))  # (B, widths[i], R / 2^(i+1), ...)
        return feats


class AppearanceEncoder(nn.Module):
    """q(z | x, y): image pyramid, joined with the structure code y at 4 x 4, to (mu, logvar)."""

    def __init__(self, widths: list[int], z_dim: int, norm: str):
        super().__init__()
        self.pyramid = Encoder(3, widths, norm)
        self.join = conv(2 * widths[-1], widths[-1], norm)
        self.head = linear(widths[-1] * 16, 2 * z_dim, norm)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.join(torch.cat([self.pyramid(x)[-1], y], dim=1))  # (B, C, 4, 4)
        mu, logvar = self.head(h.flatten(1)).chunk(2, dim=1)  # (B, D) each
        return mu, logvar.clamp(-12.0, 8.0)


class FiLM(nn.Module):
    """Feature-wise affine modulation by z: h * (1 + gamma(z)) + beta(z), the identity at initialisation."""

    def __init__(self, z_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(z_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(z)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        return h * (1 + gamma) + beta


class FullResHead(nn.Module):
    """R/2 -> R features of width ``w``, joined with the boundary map c, then convs at R to RGB."""

    def __init__(self, cin: int, w: int, c_channels: int, upsample: str, norm: str):
        super().__init__()
        self.up = Upsample(cin, w, upsample, norm)
        self.body = nn.Sequential(conv(w + c_channels, w, norm), conv(w, 3, norm, act=False))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([self.up(h), c], dim=1))  # (B, 3, R, R)


class Decoder(nn.Module):
    """D(z, y, skips): from 4 x 4 up to R, concatenating the structure skips at every scale."""

    def __init__(self, widths: list[int], z_dim: int, upsample: str, norm: str, *, film: bool = False,
                 full_res_width: int = 0, c_channels: int = 13, z_spatial: bool = True):
        super().__init__()
        self.side = 4 if z_spatial else 1  # z -> a (C, 4, 4) map, or a (C, 1, 1) one broadcast over the 4 x 4
        self.fc = linear(z_dim, widths[-1] * self.side**2, norm)
        self.join = conv(2 * widths[-1], widths[-1], norm)
        self.up = nn.ModuleList(Upsample(a, b, upsample, norm) for a, b in zip(widths[:0:-1], widths[-2::-1]))
        self.merge = nn.ModuleList(conv(2 * b, b, norm) for b in widths[-2::-1])
        self.film = nn.ModuleList(FiLM(z_dim, b) for b in widths[-2::-1]) if film else None
        if full_res_width:
            self.out = FullResHead(widths[0], full_res_width, c_channels, upsample, norm)
        else:
            self.out = Upsample(widths[0], 3, upsample, norm, act=False)  # R/2 -> R, straight to RGB

    def forward(self, z: torch.Tensor, y: torch.Tensor, skips: list[torch.Tensor],
                c: torch.Tensor | None = None) -> torch.Tensor:
        B = z.shape[0]
        h = F.leaky_relu(self.fc(z), 0.2).view(B, -1, self.side, self.side).expand(-1, -1, 4, 4)  # (B, C, 4, 4)
        h = self.join(torch.cat([h, y], dim=1))
        for i, (up, merge, skip) in enumerate(zip(self.up, self.merge, skips[-2::-1])):
            h = merge(torch.cat([up(h), skip], dim=1))  # (B, C_i, 2H, 2W)
            if self.film is not None:
                h = self.film[i](h, z)
        h = self.out(h, c) if isinstance(self.out, FullResHead) else self.out(h)
        return torch.tanh(h)  # (B, 3, R, R) in [-1, 1]


@torch.no_grad()
def data_init_(model: "AFVAE", x: torch.Tensor, c: torch.Tensor, generator: torch.Generator | None = None) -> int:
    """Data-dependent initialisation of the weight-normalised convolutions (Salimans & Kingma, "Weight
    Normalization", 2016, Sec. 3), in place: one forward pass of x (B, 3, R, R) and c (B, C_b, R, R), in which each
    such conv, in the order the pass reaches it, gets the gain g and bias b that give its outputs zero mean and unit
    variance per channel on the batch (and passes them on so normalised). The RGB output layer (``decoder.out``)
    keeps its initialisation. Returns how many convs were set (0 without weight normalisation)."""
    def hook(conv: nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor:
        g = conv.parametrizations.weight.original0  # (C_out, 1, 1, 1), or (1, C_out, 1, 1) transposed
        shape = (1, -1, 1, 1)
        t = (out - conv.bias.view(shape)) / g.reshape(shape)  # the outputs at g = 1, b = 0
        mean, std = t.mean((0, 2, 3)), t.std((0, 2, 3)) + 1e-6  # (C_out,) each
        g.copy_((1 / std).reshape(g.shape))
        conv.bias.copy_(-mean / std)
        handles.pop(conv).remove()  # once: a conv met again in the same pass keeps its first setting
        return (t - mean.view(shape)) / std.view(shape)

    head = set(model.decoder.out.modules())
    handles = {m: m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and parametrize.is_parametrized(m, "weight")
               and m not in head}
    n = len(handles)
    try:
        model(x, c, generator=generator)
    finally:
        for h in handles.values():
            h.remove()
    return n


class AFVAE(nn.Module):
    """The additive focal VAE: ``encode / decode / forward / translate / sample``."""

    def __init__(self, cfg: ModelConfig, centres: torch.Tensor):
        """:param centres: (K, C_b * d * d) focal points, d = ``cfg.focal_downsample``."""
        super().__init__()
        self.cfg = cfg
        widths = stage_widths(cfg)
        self.structure_encoder = Encoder(cfg.boundary_channels, widths, cfg.norm)  # E_mu
        self.appearance_encoder = AppearanceEncoder(widths, cfg.z_dim, cfg.norm)
        self.decoder = Decoder(widths, cfg.z_dim, cfg.upsample, cfg.norm, film=cfg.z_film,
                               full_res_width=cfg.full_res_width, c_channels=cfg.boundary_channels,
                               z_spatial=cfg.z_spatial)
        self.prior = AdditiveFocalPrior(centres, cfg.z_dim, kind=cfg.prior, temperature=cfg.focal_temperature)
        if not cfg.kl:  # no KL term: mu_k, sigma_k get no gradient, and DDP rejects unused trainable parameters
            self.prior.requires_grad_(False)

    def structure(self, c: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """E_mu(c): boundary map (B, C_b, R, R) -> y (B, C_y, 4, 4) and skips at every scale."""
        skips = self.structure_encoder(c)
        return skips[-1], skips

    def focal_weights(self, c: torch.Tensor) -> torch.Tensor:
        """w(c): (B, C_b, R, R) -> (B, K), rows sum to 1."""
        return self.prior.weights(boundary_features(c, self.cfg.focal_downsample))

    def encode(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x, y): (B, 3, R, R), (B, C_b, R, R) -> mu, logvar (B, D)."""
        y, _ = self.structure(c)
        return self.appearance_encoder(x, y)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """D(z, E_mu(c)): (B, D), (B, C_b, R, R) -> x_hat (B, 3, R, R) in [-1, 1]."""
        y, skips = self.structure(c)
        return self.decoder(z, y, skips, c)

    def forward(self, x: torch.Tensor, c: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """One ELBO pass: reparameterised z ~ q(z | x, y), reconstruction and prior parameters."""
        y, skips = self.structure(c)
        mu, logvar = self.appearance_encoder(x, y)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)  # reparameterisation trick
        w = self.focal_weights(c)
        mu_p, logvar_p = self.prior(w, generator=generator)
        x_hat = self.decoder(z, y, skips, c)
        return {"x_hat": x_hat, "z": z, "mu": mu, "logvar": logvar, "mu_p": mu_p, "logvar_p": logvar_p, "w": w}

    @torch.no_grad()
    def sample(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ D(z, y) with z ~ p(z | y): (B, C_b, R, R) -> (B, 3, R, R)."""
        mu_p, logvar_p = self.prior(self.focal_weights(c), generator=generator)
        eps = torch.randn(mu_p.shape, generator=generator, device=mu_p.device, dtype=mu_p.dtype)
        return self.decode(mu_p + eps * torch.exp(0.5 * logvar_p), c)

    @torch.no_grad()
    def translate(self, x: torch.Tensor, c_source: torch.Tensor, c_target: torch.Tensor) -> torch.Tensor:
        """Re-render source faces with target structures: z = E[q(z | x, y_source)], decoded with y_target.

        The interface every method of Table 1 answers (``afvae.baselines``).
        x: (B, 3, R, R) in [-1, 1]; c_source, c_target: (B, C_b, R, R) boundary maps -> (B, 3, R, R).
        """
        mu, _ = self.encode(x, c_source)
        return self.decode(mu, c_target)

    @torch.no_grad()
    def translate_and_reconstruct(self, x: torch.Tensor, c_source: torch.Tensor, c_target: torch.Tensor
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """``translate(x, c_source, c_target)`` and ``translate(x, c_source, c_source)`` from one encoding of x and
        c_source (the same numbers, a third fewer encoder passes): (B, 3, R, R) twice."""
        y, skips = self.structure(c_source)
        mu, _ = self.appearance_encoder(x, y)
        return self.decode(mu, c_target), self.decoder(mu, y, skips, c_source)


@torch.no_grad()
def edit_and_reconstruction(model: nn.Module, x: torch.Tensor, c_source: torch.Tensor, c_target: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Any method's edit ``translate(x, c_source, c_target)`` and reconstruction ``translate(x, c_source,
    c_source)``; from one encoding where the method has ``translate_and_reconstruct`` (AF-VAE): (B, 3, R, R) x 2."""
    both = getattr(model, "translate_and_reconstruct", None)
    return both(x, c_source, c_target) if both else (model.translate(x, c_source, c_target),
                                                     model.translate(x, c_source, c_source))


@torch.no_grad()
def translate_all(model: nn.Module, x: torch.Tensor, c_source: torch.Tensor, c_target: torch.Tensor,
                  batch_size: int = 128) -> torch.Tensor:
    """``model.translate`` over N images in chunks of ``batch_size``, in eval mode (the mode is restored after).

    Any method with ``translate(x, c_source, c_target)`` (AF-VAE or a baseline).
    x: (N, 3, H, W) in [-1, 1]; c_source, c_target: (N, C_b, H, W) -> (N, 3, H, W).
    """
    if not x.shape[0] == c_source.shape[0] == c_target.shape[0]:
        raise ValueError(f"batch sizes differ: x {x.shape[0]}, c_source {c_source.shape[0]}, "
                         f"c_target {c_target.shape[0]}")
    was_training = model.training
    model.eval()
    out = torch.cat([model.translate(x[i:i + batch_size], c_source[i:i + batch_size], c_target[i:i + batch_size])
                     for i in range(0, x.shape[0], batch_size)])
    model.train(was_training)
    return out


@torch.no_grad()
def interpolate(model: AFVAE, x: torch.Tensor, c: torch.Tensor, c_columns: torch.Tensor, rows: int = 5) -> torch.Tensor:
    """Grid between two faces: appearance z along rows, the given structures along columns (Fig. 9).

    x: (2, 3, R, R) the two faces, c: (2, C_b, R, R) their boundary maps, c_columns: (S, C_b, R, R) the
    structures to show (e.g. maps rendered from landmarks interpolated between the two faces)
    -> (rows, S, 3, R, R).
    """
    if x.shape[0] != 2 or c.shape[0] != 2:
        raise ValueError(f"interpolate takes exactly two faces, got x {tuple(x.shape)}, c {tuple(c.shape)}")
    S = c_columns.shape[0]
    mu, _ = model.encode(x, c)  # (2, D)
    t = torch.linspace(0, 1, rows, device=x.device)
    z = torch.lerp(mu[0:1], mu[1:2], t[:, None])  # (rows, D)
    z_grid = z[:, None].expand(rows, S, -1).reshape(rows * S, -1)
    c_grid = c_columns[None].expand(rows, *c_columns.shape).reshape(rows * S, *c_columns.shape[1:])
    return model.decode(z_grid, c_grid).view(rows, S, *x.shape[1:])


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())
