"""Training speed of the Table 1 GAN baselines next to AF-VAE's, at the compact preset (64 px, batch 16; the
GANs' widths at the default scale too, ``baselines.WIDTH_SCALE``; AF-VAE at full widths).

One baseline step = one D update and one G update (``GANBaseline.train_step``); one AF-VAE step =
forward, L1 + KL, backward, Adam (no feature net), each in the precision of ``train.amp`` (bf16 where the CPU
has it). Random inputs: this times the networks, not the data. The methods are timed in turn, twice, and the
better round is kept: on a shared machine the load changes within seconds, and the ratio to AF-VAE measured in
the same round is the number to read.
"""
from __future__ import annotations

import torch

from afvae import baselines as bt
from afvae.baselines.compare import generator_params
from afvae.bench.train import build as build_afvae
from afvae.config import get_config
from afvae.features import FactorNet, FeatureNet
from afvae.hardware import autocast, flops, throughput
from afvae.methods import build_network, optimisers

SECONDS = 4.0  # timed per method and round
ROUNDS = 2


def _stepper(method: str) -> tuple[torch.nn.Module, callable]:
    """(model, one training step on a fixed random batch) for a baseline or ``AF-VAE``."""
    cfg = bt.config("compact", method) if method != "AF-VAE" else get_config("compact")
    B, R, C = cfg.train.batch_size, cfg.data.size, cfg.model.boundary_channels
    fmt = torch.channels_last
    x = (torch.rand(B, 3, R, R) * 2 - 1).contiguous(memory_format=fmt)
    c = torch.rand(B, C, R, R).contiguous(memory_format=fmt)
    torch.manual_seed(0)
    if method == "AF-VAE":
        model, loss = build_afvae("afvae", R)
        model = model.to(memory_format=fmt)
        opt = torch.optim.Adam(model.parameters())

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with autocast(cfg.train.amp, "cpu"):  # the precision the GANs' steps run in (train.amp)
                value = loss(x, c)
            value.backward()
            opt.step()
        return model, step
    model = build_network(cfg, torch.rand(cfg.model.n_focal, C * 256)).to(memory_format=fmt)
    if cfg.loss.feature_net != "none":  # time the perceptual term too (a factor net of the real size)
        model.feature_net = FeatureNet("factor", FactorNet(200).eval(), [1.0] * 4)
    opts, g = optimisers(cfg, model), torch.Generator().manual_seed(0)
    return model, lambda: model.train_step(opts, {"x": x, "c": c}, g)


def run() -> dict:
    methods = ["AF-VAE", *bt.METHODS]
    cfg = get_config("compact")
    B, budget = cfg.train.batch_size, cfg.train.steps * cfg.train.batch_size
    steppers = {m: _stepper(m) for m in methods}
    best: dict[str, float] = dict.fromkeys(methods, 0.0)
    ratios: dict[str, float] = dict.fromkeys(methods, 0.0)
    for _ in range(ROUNDS):
        rates = {m: throughput(steppers[m][1], B, SECONDS) for m in methods}
        for m in methods:
            best[m] = max(best[m], rates[m])
            ratios[m] = max(ratios[m], rates[m] / rates["AF-VAE"])
    out: dict = {"batch": B, "images_seen_budget": budget, "threads": torch.get_num_threads()}
    for m, (model, step) in steppers.items():
        key = m.replace("-", "").lower()
        out[f"{key}_img_per_s"] = round(best[m], 1)
        out[f"{key}_ratio_to_afvae"] = round(ratios[m], 2)
        out[f"{key}_generator_params"] = generator_params(model)
        out[f"{key}_gflops_per_img"] = round(flops(step) / B / 1e9, 3)
        out[f"{key}_default_minutes"] = round(budget / best[m] / 60, 1)
    out["baselines_default_minutes_total"] = round(sum(out[f"{m.lower()}_default_minutes"] for m in bt.METHODS), 1)
    return out
