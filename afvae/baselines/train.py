"""Training the GAN baselines with the project's conventions: ``train(cfg, out_dir) -> history``.

Same as ``afvae.train``: the batch of step s is ``batch_indices(s, ...)`` and the step's noise comes from
``step_generator(seed, s, ...)``, so a resumed run takes exactly the path of an uninterrupted one; checkpoints
are atomic and loaded with ``weights_only``; non-finite losses stop the run keeping the last checkpoint;
tqdm progress, ``metrics.jsonl`` and sample grids; runs cached under ``results/runs/NAME-HASH``.

A baseline's config is AF-VAE's preset ``Config`` with ``name`` = the method, the same data and the same
training budget in images seen (``train.steps * train.batch_size``); ``model.base_width`` is the baseline's
width, ``train.lr`` = 2e-4 (Adam betas (0.5, 0.999), as in all three papers).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from afvae import train as afvae_train
from afvae.baselines.common import BETAS, LR, GANBaseline
from afvae.baselines.ganimation import GANimation
from afvae.baselines.pix2pixhd import Pix2PixHD
from afvae.baselines.stargan import StarGAN
from afvae.checkpoint import load_checkpoint, save_checkpoint
from afvae.config import Config, get_config
from afvae.data.datasets import build_dataset, collate, for_data
from afvae.features import build_feature_net
from afvae.train import Dist, _read_history, _to_device, batch_indices, fit_centres, save_samples, step_generator

log = logging.getLogger(__name__)
METHODS: dict[str, type[GANBaseline]] = {"pix2pixHD": Pix2PixHD, "StarGAN": StarGAN, "GANimation": GANimation}
# Widths at the default scale (64 px), sized so that each trains at roughly AF-VAE's speed on a CPU; other
# scales multiply them by the preset's base_width / 32 (smoke: / 4, paper: x 2).
DEFAULT_WIDTH = {"pix2pixHD": 16, "StarGAN": 12, "GANimation": 12}


def config(scale: str, method: str, data: str = "synthetic", seed: int = 0) -> Config:
    """The baseline ``method`` at preset ``scale``: AF-VAE's data and images-seen budget, the GAN optimiser."""
    if method not in METHODS:
        raise ValueError(f"unknown baseline {method!r}; choose one of {sorted(METHODS)}")
    base = for_data(get_config(scale, "full"), data)  # a prepared folder's schema sets the boundary channels
    width = max(4, DEFAULT_WIDTH[method] * base.model.base_width // 32)
    perceptual = "auto" if method == "pix2pixHD" else "none"  # pix2pixHD's VGG loss, substituted like AF-VAE's
    return base.replace(name=method, model={"base_width": width, "max_width": 16 * width},
                        loss={"feature_net": perceptual}, train={"lr": LR, "seed": seed})


def build(cfg: Config, centres: torch.Tensor, device: torch.device | str = "cpu") -> GANBaseline:
    """The baseline ``cfg.name`` with its focal points, initialised from ``cfg.train.seed``."""
    if cfg.name not in METHODS:
        raise ValueError(f"config {cfg.name!r} is not a baseline; expected one of {sorted(METHODS)}")
    torch.manual_seed(cfg.train.seed)  # parameter initialisation
    return METHODS[cfg.name](cfg, centres).to(device)


def optimisers(model: GANBaseline, cfg: Config) -> dict[str, torch.optim.Adam]:
    """Adam for G and for D, lr ``cfg.train.lr``, betas (0.5, 0.999)."""
    return {k: torch.optim.Adam(getattr(model, k).parameters(), lr=cfg.train.lr, betas=BETAS) for k in ("G", "D")}


def train_step(model: GANBaseline, opts: dict, batch: dict, generator: torch.Generator
               ) -> dict[str, torch.Tensor]:
    """One D update then one G update on the same fakes; the named terms, prefixed d_ and g_."""
    out = model.generate(batch, generator)
    d = model.d_terms(batch, {k: v.detach() for k, v in out.items()})
    _check(d, "D")
    opts["D"].zero_grad(set_to_none=True)
    d["loss"].backward()
    opts["D"].step()
    model.D.requires_grad_(False)  # G's step: gradients through D, not into it
    g = model.g_terms(batch, out)
    model.D.requires_grad_(True)
    _check(g, "G")
    opts["G"].zero_grad(set_to_none=True)
    g["loss"].backward()
    opts["G"].step()
    return {**{f"d_{k}": v.detach() for k, v in d.items()}, **{f"g_{k}": v.detach() for k, v in g.items()}}


def _check(terms: dict[str, torch.Tensor], who: str) -> None:
    if not torch.isfinite(terms["loss"]):
        raise FloatingPointError(f"non-finite {who} loss ({ {k: float(v.detach()) for k, v in terms.items()} })")


def fit(cfg: Config, out_dir: str | Path, *, resume: bool = False, stop_at: int | None = None,
        progress: bool = True, cache_root: str | Path = "results/cache") -> tuple[GANBaseline, list[dict[str, float]]]:
    """Train baseline ``cfg`` into ``out_dir`` (checkpoint.pt, metrics.jsonl, samples/) -> (model, history).

    ``resume`` continues from ``out_dir/checkpoint.pt`` when it exists; ``stop_at`` ends the run early at that
    step (with a checkpoint), as an interruption would. A perceptual network (``cfg.loss.feature_net``, the
    factor net cached under ``cache_root`` when VGG-19 is absent) is attached as ``model.feature_net``.
    """
    out, device = Path(out_dir), torch.device(cfg.train.device)
    out.mkdir(parents=True, exist_ok=True)
    dataset = build_dataset(cfg.data, "train")
    ckpt = out / "checkpoint.pt"
    state = load_checkpoint(ckpt) if resume and ckpt.exists() else None
    centres = state["centres"] if state else fit_centres(dataset, cfg.model.n_focal, cfg.data.seed)
    model = build(cfg, centres, device)
    if cfg.train.channels_last:  # ~2x faster convolutions on CPU (oneDNN)
        model = model.to(memory_format=torch.channels_last)
    model.feature_net = build_feature_net(cfg.loss.feature_net, cfg.data, device, progress, cache_root)
    opts = optimisers(model, cfg)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        for k, o in opts.items():
            o.load_state_dict(state["optimizer"][k])
        start = state["step"]
    (out / "config.json").write_text(cfg.to_json())
    history = _read_history(out / "metrics.jsonl", start)
    end = cfg.train.steps if stop_at is None else min(stop_at, cfg.train.steps)
    _loop(cfg, model, opts, dataset, out, start, end, history, progress, device)
    return model, history


def _loop(cfg: Config, model: GANBaseline, opts: dict, dataset: Any, out: Path, start: int, end: int,
          history: list, progress: bool, device: torch.device) -> None:
    """Steps [start, end): D and G updates, logging, samples and checkpoints."""
    tc = cfg.train
    bar = tqdm(range(start, end), initial=start, total=tc.steps, disable=not progress, desc=cfg.name,
               dynamic_ncols=True)
    t0, seen = time.perf_counter(), 0
    for step in bar:
        idx = batch_indices(step, len(dataset), tc.batch_size, tc.seed, Dist(device=device))
        batch = _to_device(collate(dataset, idx, ["x", "c"]), device, tc.channels_last)
        try:
            terms = train_step(model, opts, batch, step_generator(tc.seed, step, 0, device))
        except FloatingPointError as e:
            raise FloatingPointError(f"{cfg.name} at step {step}: {e}; the last good checkpoint {out / 'checkpoint.pt'}"
                                     f" is kept. Lower train.lr and resume.") from None
        seen += len(idx)
        done = step + 1
        if done % tc.log_every == 0 or done == end:
            row = {"step": done, **{k: float(v) for k, v in terms.items()},
                   "img_per_s": seen / (time.perf_counter() - t0)}
            history.append(row)
            bar.set_postfix({k: f"{row[k]:.3g}" for k in ("d_loss", "g_loss")})
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
        if done % tc.sample_every == 0 or done == end:
            save_samples(model, batch, out / "samples" / f"step_{done:06d}.png")
        if done % tc.checkpoint_every == 0 or done == end:
            save_checkpoint(out / "checkpoint.pt", model=model, optimizer=opts, step=done, cfg=cfg,
                            centres=model.centres, feature_net=model.feature_net.name if model.feature_net else "none")


def train(cfg: Config, out_dir: str | Path, *, resume: bool = False, stop_at: int | None = None,
          progress: bool = True, cache_root: str | Path = "results/cache") -> list[dict[str, float]]:
    """``fit`` returning only the logged history (one dict per logged step)."""
    return fit(cfg, out_dir, resume=resume, stop_at=stop_at, progress=progress, cache_root=cache_root)[1]


def train_cached(cfg: Config, root: str | Path = "results/runs", progress: bool = True) -> Path:
    """Train ``cfg`` unless a finished run with the same hash exists; resumes an unfinished one (as for AF-VAE)."""
    return afvae_train.train_cached(cfg, root, progress, train_fn=train)


def load(run: str | Path, device: str = "cpu") -> tuple[GANBaseline, Config]:
    """Trained baseline and its config from a run folder or a checkpoint file (eval mode)."""
    state = load_checkpoint(afvae_train.checkpoint_path(run))
    cfg = Config.from_dict(state["config"])
    model = build(cfg, state["centres"], device)
    model.load_state_dict(state["model"])
    return model.eval(), cfg


def trained(cfg: Config, results: str | Path = "results", progress: bool = True
            ) -> tuple[GANBaseline, Config, Path]:
    """The trained baseline of ``cfg``: trained now unless ``results/runs/NAME-HASH`` already holds it."""
    run = train_cached(cfg, Path(results) / "runs", progress=progress)
    model, saved = load(run)
    return model, saved, run
