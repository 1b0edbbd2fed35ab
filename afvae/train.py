"""Training loop: ``train(cfg, out_dir) -> history``. No argparse here (the CLI is ``afvae.__main__``-style
in ``python -m afvae.train``).

Determinism: the batch of step s and the noise of step s are pure functions of (seed, s, rank), so a run
resumed from a checkpoint takes exactly the same path as an uninterrupted one. Multi-GPU uses PyTorch DDP,
launched by ``torchrun``; each rank takes its slice of the same global batch.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torchvision.utils import save_image
from tqdm.auto import tqdm

from afvae import losses
from afvae.atomic import atomic_path, write_text
from afvae.checkpoint import load_checkpoint, save_checkpoint
from afvae.config import Config
from afvae.data.datasets import build_dataset, collate
from afvae.features import FeatureNet, build_feature_net
from afvae.model import AFVAE, translate
from afvae.prior import fit_focal_points

log = logging.getLogger(__name__)
FOCAL_DOWNSAMPLE = 16  # side of the pooled boundary map the focal points live on
FOCAL_FIT_MAX = 5000  # boundary maps used to fit the K-means focal points


@dataclass
class Dist:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")


def setup_distributed(device: str) -> Dist:
    """Join the torchrun process group when launched by torchrun, else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(device=torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local}") if device.startswith("cuda") else torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return Dist(rank=rank, world=world, device=dev)


def batch_indices(step: int, n: int, batch_size: int, seed: int, d: Dist) -> torch.Tensor:
    """Indices of this rank's share of global batch ``step``: epoch-wise permutations, seeded by epoch."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch size {batch_size} is larger than the training set ({n} images)")
    epoch, offset = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[offset * batch_size : (offset + 1) * batch_size][d.rank :: d.world]


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """The noise source of one step (reparameterisation, GMM component draws)."""
    return torch.Generator(device=device).manual_seed(seed * 7919 + step * 104_729 + rank)


def fit_centres(dataset: Any, k: int, seed: int) -> torch.Tensor:
    """K-means focal points over (up to FOCAL_FIT_MAX) training boundary maps -> (K, F)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[:FOCAL_FIT_MAX]
    c = torch.cat([collate(dataset, chunk)["c"] for chunk in idx.split(256)])
    return fit_focal_points(c, k=k, downsample=FOCAL_DOWNSAMPLE, seed=seed)


def loss_terms(model: torch.nn.Module, feature_net: FeatureNet | None, batch: dict, cfg: Config,
               generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Forward pass and the named ELBO terms (Sec. 3: L1 + feature matching + beta * KL)."""
    out = model(batch["x"], batch["c"], generator=generator)
    feats_x = feats_x_hat = None
    if feature_net is not None:
        feats_x, feats_x_hat = feature_net(batch["x"]), feature_net(out["x_hat"])
    terms = losses.elbo_terms(
        x=batch["x"], x_hat=out["x_hat"], mu=out["mu"], logvar=out["logvar"],
        mu_p=out["mu_p"], logvar_p=out["logvar_p"], beta=cfg.loss.beta, kl=cfg.model.kl,
        feats_x=feats_x, feats_x_hat=feats_x_hat,
        feature_weights=feature_net.weights if feature_net is not None else None,
        feature_weight=cfg.loss.feature_weight,
    )
    return terms, out


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {k: v.to(device, memory_format=fmt) if v.dim() == 4 else v.to(device) for k, v in batch.items()}


def save_samples(model: torch.nn.Module, batch: dict, path: Path) -> None:
    """Grid of rows: inputs, reconstructions, and the inputs re-posed with the next face's structure (any
    method with ``translate``: AF-VAE or a GAN baseline)."""
    x, c = batch["x"][:8], batch["c"][:8]
    rows = [x, translate(model, x, c, c), translate(model, x, c, c.roll(1, 0))]
    with atomic_path(path) as tmp:
        save_image(torch.cat(rows).float().add(1).div(2), tmp, nrow=x.shape[0], format="png")


def build(cfg: Config, dataset: Any, device: torch.device, centres: torch.Tensor | None = None,
          cache_root: str | Path = "results/cache"):
    """Model (with its focal points), feature net (cached under ``cache_root``) and optimiser for ``cfg``."""
    if centres is None:
        centres = fit_centres(dataset, cfg.model.n_focal, cfg.data.seed)
    torch.manual_seed(cfg.train.seed)  # parameter initialisation
    model = AFVAE(cfg.model, centres, focal_downsample=FOCAL_DOWNSAMPLE).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    feature_net = build_feature_net(cfg.loss.feature_net, cfg.data, device, cache_root=cache_root)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    return model, feature_net, opt


def train(cfg: Config, out_dir: str | Path, *, resume: bool = False, stop_at: int | None = None,
          progress: bool = True, cache_root: str | Path = "results/cache") -> list[dict[str, float]]:
    """Train ``cfg`` into ``out_dir`` (checkpoint.pt, metrics.jsonl, samples/); return the logged history.

    ``resume`` continues from ``out_dir/checkpoint.pt`` when it exists. ``stop_at`` ends the run early
    at that step (with a checkpoint), as an interruption would.
    """
    return fit(cfg, out_dir, resume=resume, stop_at=stop_at, progress=progress, cache_root=cache_root)[1]


def fit(cfg: Config, out_dir: str | Path, *, resume: bool = False, stop_at: int | None = None,
        progress: bool = True, cache_root: str | Path = "results/cache") -> tuple[AFVAE, list[dict[str, float]]]:
    """``train``, also returning this process's trained model (each DDP rank has its replica)."""
    out, d = Path(out_dir), setup_distributed(cfg.train.device)
    out.mkdir(parents=True, exist_ok=True)
    dataset = build_dataset(cfg.data, "train")
    ckpt_path = out / "checkpoint.pt"
    state = load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    model, feature_net, opt = build(cfg, dataset, d.device, state["centres"] if state else None, cache_root)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = state["step"]
    ddp = DistributedDataParallel(model) if d.world > 1 else model
    if d.rank == 0:
        write_text(out / "config.json", cfg.to_json())
    history = _read_history(out / "metrics.jsonl", start)
    end = cfg.train.steps if stop_at is None else min(stop_at, cfg.train.steps)
    _loop(cfg, ddp, model, feature_net, opt, dataset, d, out, start, end, history, progress)
    if d.world > 1:
        dist.barrier()
    return model, history


def _loop(cfg, ddp, model, feature_net, opt, dataset, d: Dist, out: Path, start: int, end: int,
          history: list, progress: bool) -> None:
    """Steps [start, end): forward, checks, backward, logging, samples and checkpoints."""
    tc = cfg.train
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=tc.amp and d.device.type == "cuda")
    bar = tqdm(range(start, end), initial=start, total=tc.steps, disable=not progress or d.rank > 0,
               desc=cfg.name, dynamic_ncols=True)
    t0, seen = time.perf_counter(), 0
    for step in bar:
        idx = batch_indices(step, len(dataset), tc.batch_size, tc.seed, d)
        batch = _to_device(collate(dataset, idx), d.device, tc.channels_last)
        with amp:
            terms, _ = loss_terms(ddp, feature_net, batch, cfg, step_generator(tc.seed, step, d.rank, d.device))
        if not torch.isfinite(terms["loss"]):
            raise FloatingPointError(
                f"non-finite loss at step {step} ({ {k: float(v.detach()) for k, v in terms.items()} }); the last good "
                f"checkpoint {out / 'checkpoint.pt'} is kept. Lower train.lr or loss.beta and resume.")
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        seen += len(idx) * d.world
        done = step + 1
        if done % tc.log_every == 0 or done == end:
            row = {"step": done, **{k: float(v.detach()) for k, v in terms.items()},
                   "img_per_s": seen / (time.perf_counter() - t0)}
            history.append(row)
            bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss", "l1", "kl")})
            if d.rank == 0:
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
        if d.rank == 0 and (done % tc.sample_every == 0 or done == end):
            save_samples(model, batch, out / "samples" / f"step_{done:06d}.png")
        if d.rank == 0 and (done % tc.checkpoint_every == 0 or done == end):
            save_checkpoint(out / "checkpoint.pt", model=model, optimizer=opt, step=done, cfg=cfg,
                            feature_net=feature_net.name if feature_net is not None else "none")


def _read_history(path: Path, upto: int) -> list[dict[str, float]]:
    """Logged rows up to step ``upto``; later rows (from an interrupted run) are dropped from the file."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["step"] <= upto]
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def run_dir(cfg: Config, root: str | Path = "results/runs") -> Path:
    """Where a config's run lives: cached by config hash, so a figure notebook never retrains."""
    return Path(root) / f"{cfg.name}-{cfg.hash()}"


def finished(cfg: Config, root: str | Path = "results/runs") -> bool:
    """Whether ``root`` holds a run of ``cfg`` trained to its last step."""
    ckpt = run_dir(cfg, root) / "checkpoint.pt"
    return ckpt.exists() and load_checkpoint(ckpt)["step"] >= cfg.train.steps


def train_cached(cfg: Config, root: str | Path = "results/runs", progress: bool = True,
                 train_fn: Callable[..., Any] | None = None) -> Path:
    """Train ``cfg`` unless a finished run with the same hash exists; resumes an unfinished one.

    Feature networks are cached beside the runs, in ``root/../cache``. ``train_fn`` (default ``train``) is
    the training loop, e.g. a GAN baseline's (``afvae.baselines.train.train``), with ``train``'s signature.
    """
    out = run_dir(cfg, root)
    if finished(cfg, root):
        return out
    (train_fn or train)(cfg, out, resume=True, progress=progress, cache_root=Path(root).parent / "cache")
    return out


def checkpoint_path(run: str | Path) -> Path:
    """A run folder's checkpoint file (a checkpoint file is returned as it is)."""
    path = Path(run)
    return path / "checkpoint.pt" if path.is_dir() else path


def load_model(run: str | Path, device: str = "cpu") -> tuple[AFVAE, Config]:
    """Trained model and its config from a run folder or a checkpoint file."""
    return model_from_state(load_checkpoint(checkpoint_path(run)), device)


def model_from_state(state: dict[str, Any], device: str = "cpu") -> tuple[AFVAE, Config]:
    """The model (eval mode) and config of an already-loaded checkpoint ``state``."""
    cfg = Config.from_dict(state["config"])
    model = AFVAE(cfg.model, state["centres"], focal_downsample=FOCAL_DOWNSAMPLE)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())



if __name__ == "__main__":
    from afvae.cli import train_main

    train_main()
