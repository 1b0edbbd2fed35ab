"""Training speed: AF-VAE vs a plain conv VAE of the same parameter count, measured in the same run.

AF-VAE at the compact preset's full widths (32 / 128 channels). One optimiser step = forward, L1 + KL, backward, Adam (the feature-matching network is timed separately,
since the plain VAE has none). Random inputs: this measures the networks, not the data pipeline.
Each configuration runs in its own process so peak memory is its own.
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import resource

import torch
import torch.nn as nn

from afvae import losses
from afvae.config import ModelConfig, get_config
from afvae.features import FactorNet
from afvae.hardware import flops, matmul_gflops, throughput
from afvae.model import AFVAE, Encoder, Upsample, conv, count_params, stage_widths
from afvae.prior import standard_normal_kl

BATCH = 32


class PlainVAE(nn.Module):
    """The baseline: conv encoder -> z -> deconv decoder, no structure branch, no skips, no weight norm."""

    def __init__(self, resolution: int, width: int, z_dim: int):
        super().__init__()
        widths = stage_widths(ModelConfig(resolution=resolution, base_width=width, max_width=8 * width))
        self.top = widths[-1]
        self.enc = Encoder(3, widths, "none")
        self.head = nn.Linear(self.top * 16, 2 * z_dim)
        self.fc = nn.Linear(z_dim, self.top * 16)
        self.up = nn.Sequential(*[nn.Sequential(Upsample(a, b, "deconv", "none"), conv(b, b, "none"))
                                  for a, b in zip(widths[:0:-1], widths[-2::-1])])
        self.out = Upsample(widths[0], 3, "deconv", "none", act=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.enc(x)[-1].flatten(1)).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        h = self.fc(z).view(x.shape[0], self.top, 4, 4)
        return torch.tanh(self.out(self.up(h))), mu, logvar


def build(kind: str, resolution: int) -> tuple[nn.Module, callable]:
    """(model, step_loss(x, c) -> loss) for 'afvae', 'plain' (matched size) or 'factor_net'."""
    cfg = dataclasses.replace(get_config("compact").model, resolution=resolution)  # full widths
    afvae = AFVAE(cfg, torch.rand(cfg.n_focal, cfg.boundary_channels * 256))
    if kind == "afvae":
        def loss(x, c):
            out = afvae(x, c)
            return losses.elbo_terms(x=x, x_hat=out["x_hat"], mu=out["mu"], logvar=out["logvar"],
                                     mu_p=out["mu_p"], logvar_p=out["logvar_p"], beta=1e-3)["loss"]
        return afvae, loss
    if kind == "plain":
        target = count_params(afvae)
        width = min(range(8, 129), key=lambda w: abs(count_params(PlainVAE(resolution, w, cfg.z_dim)) - target))
        plain = PlainVAE(resolution, width, cfg.z_dim)

        def loss(x, c):
            x_hat, mu, logvar = plain(x)
            return (x - x_hat).abs().mean() + 1e-3 * standard_normal_kl(mu, logvar).mean()
        return plain, loss
    net = FactorNet(200)
    return net, lambda x, c: sum(f.abs().mean() for f in net(x))


def measure(kind: str, resolution: int, queue: mp.Queue) -> None:
    """Child process: img/s of training steps, peak RSS, FLOPs per image."""
    torch.manual_seed(0)
    model, loss_fn = build(kind, resolution)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = (torch.rand(BATCH, 3, resolution, resolution) * 2 - 1).contiguous(memory_format=torch.channels_last)
    c = torch.rand(BATCH, 13, resolution, resolution).contiguous(memory_format=torch.channels_last)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(x, c).backward()
        opt.step()

    per_step = flops(step)  # also the warm-up
    rate = throughput(step, BATCH, min_seconds=6.0 if resolution <= 64 else 10.0, warmup=0)
    queue.put({"img_per_s": rate, "params": count_params(model), "flops_per_img": per_step / BATCH,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def in_child(kind: str, resolution: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=measure, args=(kind, resolution, q))
    p.start()
    result = q.get()
    p.join()
    return result


def run() -> dict:
    peak = matmul_gflops()
    out: dict = {"batch": BATCH, "matmul_gflops": round(peak, 1)}
    for res in (64, 128):
        for kind in ("afvae", "plain", "factor_net"):
            if kind == "factor_net" and res != 64:
                continue
            r = in_child(kind, res)
            out[f"{kind}_img_per_s_{res}"] = round(r["img_per_s"], 1)
            out[f"{kind}_params_{res}"] = r["params"]
            out[f"{kind}_peak_rss_mb_{res}"] = round(r["peak_rss_mb"])
            out[f"{kind}_gflops_per_img_{res}"] = round(r["flops_per_img"] / 1e9, 3)
            out[f"{kind}_achieved_gflops_{res}"] = round(r["img_per_s"] * r["flops_per_img"] / 1e9, 1)
        out[f"ratio_vs_plain_{res}"] = round(out[f"afvae_img_per_s_{res}"] / out[f"plain_img_per_s_{res}"], 3)
    out["target_ratio_vs_plain_64"] = 0.8
    return out
