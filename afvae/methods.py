"""The four methods of Table 1 as the training loop sees them: AF-VAE or a GAN baseline, by ``cfg.name``.

A method is its network (checkpointed, evaluated through ``translate``), its optimisers (``optimisers``: the
one place the recipe's optimiser is chosen) and its step: losses, backward and the optimisers' updates for
one batch. ``afvae.train`` runs any of them in the same loop; ``afvae.checkpoint`` rebuilds their networks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import math

import torch
import torch.nn as nn
from torch import Tensor
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.nn.parallel import DistributedDataParallel

from afvae import hardware, losses
from afvae.baselines import METHODS
from afvae.config import Config, TrainConfig
from afvae.features import FeatureNet, build_feature_net
from afvae.model import AFVAE, data_init_

Step = Callable[[dict[str, Tensor], torch.Generator], dict[str, Tensor]]


@dataclass
class Method:
    """What one method brings to the training loop."""

    model: nn.Module  # the network that is checkpointed and sampled; answers translate(x, c_source, c_target)
    optimisers: dict[str, torch.optim.Optimizer]  # by name: {"model"} for AF-VAE, {"G", "D"} for a GAN
    step: Step  # (batch, noise generator) -> the step's named terms (detached), after the updates
    centres: Tensor  # (K, F) focal points, saved with the checkpoint
    feature_net: FeatureNet | None  # the frozen feature-matching / perceptual network, if any
    shown: tuple[str, ...]  # terms on the progress bar
    schedulers: dict[str, LambdaLR]  # one per optimiser, stepped after every step
    ema: AveragedModel | None  # the moving average of the weights that evaluation uses, if the recipe has one

    @property
    def evaluated(self) -> nn.Module:
        """The network that evaluation and checkpoints' readers use: the EMA when the recipe keeps one."""
        return self.ema.module if self.ema is not None else self.model

    def after_step(self) -> None:
        """The recipe's per-step updates: learning-rate schedules, then the EMA of the weights."""
        for scheduler in self.schedulers.values():
            scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def states(self) -> dict[str, object]:
        """Everything an exact resume restores besides the weights, by name."""
        states: dict[str, object] = dict(self.optimisers)
        states |= {f"lr_{k}": s for k, s in self.schedulers.items()}
        return states | ({"ema": self.ema} if self.ema is not None else {})


def is_baseline(cfg: Config) -> bool:
    """Whether ``cfg`` names a GAN baseline (``afvae.baselines.config``) rather than an AF-VAE variant."""
    return cfg.name in METHODS


def build_network(cfg: Config, centres: Tensor, device: torch.device | str = "cpu") -> nn.Module:
    """AF-VAE or the baseline ``cfg.name`` with its focal points (K, F), initialised from ``cfg.train.seed``.

    Seeds the global RNG (the parameter initialisation), as training always has.
    """
    torch.manual_seed(cfg.train.seed)
    model = METHODS[cfg.name](cfg, centres) if is_baseline(cfg) else AFVAE(cfg.model, centres)
    return model.to(device)


def optimisers(cfg: Config, model: nn.Module) -> dict[str, torch.optim.Optimizer]:
    """The recipe's optimisers from ``cfg.train``: Adam(lr, betas) per parameter group of ``model``."""
    groups = model.param_groups() if hasattr(model, "param_groups") else {"model": list(model.parameters())}
    return {k: torch.optim.Adam(p, lr=cfg.train.lr, betas=cfg.train.betas) for k, p in groups.items()}


def lr_factor(step: int, tc: TrainConfig) -> float:
    """The multiple of ``tc.lr`` used at ``step`` (0-based): a linear warm-up over the first ``tc.warmup``
    fraction of the steps, then constant, or a linear or cosine decay that reaches 0 after the last step."""
    warm = round(tc.warmup * tc.steps)
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, tc.steps - warm)  # in [0, 1)
    return {"constant": 1.0, "linear": 1.0 - t, "cosine": 0.5 * (1.0 + math.cos(math.pi * t))}[tc.decay]


def schedulers(cfg: Config, opts: dict[str, torch.optim.Optimizer]) -> dict[str, LambdaLR]:
    """One ``lr_factor`` schedule per optimiser."""
    return {k: LambdaLR(o, lambda step: lr_factor(step, cfg.train)) for k, o in opts.items()}


def ema_of(cfg: Config, model: nn.Module) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and buffers (decay ``cfg.train.ema``), or None."""
    if not cfg.train.ema:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema), use_buffers=True)


def loss_terms(model: nn.Module, feature_net: FeatureNet | None, batch: dict[str, Tensor], cfg: Config,
               generator: torch.Generator) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """AF-VAE's forward pass and named ELBO terms (Sec. 3: L1 + feature matching + beta * KL)."""
    out = model(batch["x"], batch["c"], generator=generator)
    feats_x = feats_x_hat = None
    if feature_net is not None:
        feats_x, feats_x_hat = feature_net(batch["x"]), feature_net(out["x_hat"])
    terms = losses.elbo_terms(
        x=batch["x"], x_hat=out["x_hat"], mu=out["mu"], logvar=out["logvar"],
        mu_p=out["mu_p"], logvar_p=out["logvar_p"], beta=cfg.loss.beta, kl=cfg.model.kl,
        feats_x=feats_x, feats_x_hat=feats_x_hat,
        feature_weights=feature_net.weights if feature_net is not None else None,
        feature_weight=cfg.loss.feature_weight, ssim_weight=cfg.loss.ssim,
    )
    return terms, out


def afvae_step(cfg: Config, net: nn.Module, feature_net: FeatureNet | None,
               opt: torch.optim.Optimizer, device: torch.device) -> Step:
    """AF-VAE's step: the ELBO terms (in bf16 when ``cfg.train.amp``, ``hardware.autocast``), backward, one update.

    ``net``: the model, or its DDP wrapper (gradients averaged over ranks).
    """

    def step(batch: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        with hardware.autocast(cfg.train.amp, device):
            terms, _ = loss_terms(net, feature_net, batch, cfg, generator)
        losses.check_finite(terms)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        return {k: v.detach() for k, v in terms.items()}

    return step


def build_method(cfg: Config, centres: Tensor, device: torch.device, world: int = 1, progress: bool = True,
                 cache_root: str | Path = "results/cache", init_batch: dict[str, Tensor] | None = None) -> Method:
    """The network, feature net (cached under ``cache_root``), optimisers and step of ``cfg``'s method.

    ``world`` > 1: AF-VAE's forward runs through DDP; the GAN baselines train on one process only.
    ``init_batch``: AF-VAE's weight-normalised convs are initialised from its "x" and "c" (``model.data_init_``,
    ``train.data_init``) before the optimisers and the EMA take their copies.
    """
    model = build_network(cfg, centres, device)
    if init_batch is not None and not is_baseline(cfg):
        data_init_(model, init_batch["x"].to(device), init_batch["c"].to(device),
                   torch.Generator(device).manual_seed(cfg.train.seed))
    if cfg.train.channels_last:  # ~2x faster convolutions on CPU (oneDNN)
        model = model.to(memory_format=torch.channels_last)
    feature_net = build_feature_net(cfg.loss.feature_net, cfg.data, device, progress, cache_root)
    opts = optimisers(cfg, model)
    recipe = {"schedulers": schedulers(cfg, opts), "ema": ema_of(cfg, model)}
    if is_baseline(cfg):
        if world > 1:
            raise ValueError(f"{cfg.name} trains on one process: launch it without torchrun")
        model.feature_net = feature_net  # its perceptual term (pix2pixHD)
        return Method(model, opts, lambda batch, g: model.train_step(opts, batch, g), model.centres, feature_net,
                      ("d_loss", "g_loss"), **recipe)
    net = DistributedDataParallel(model) if world > 1 else model
    return Method(model, opts, afvae_step(cfg, net, feature_net, opts["model"], device), model.prior.centres,
                  feature_net, ("loss", "l1", "kl"), **recipe)
