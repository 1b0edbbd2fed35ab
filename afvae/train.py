"""The training loop of every method (AF-VAE and the GAN baselines): ``train(cfg, out_dir) -> history``.

A method (``afvae.methods``) brings its network, optimisers and step; the loop owns the rest: data order,
checkpoints, exact resume, the NaN stop, logging, tqdm, DDP and sample grids.

Determinism: the batch of step s and the noise of step s are pure functions of (seed, s, rank), so a run
resumed from a checkpoint takes exactly the same path as an uninterrupted one. Multi-GPU uses PyTorch DDP,
launched by ``torchrun``; each rank takes its slice of the same global batch.

Command line: ``python -m afvae.train CONFIG [--variant V] [--out DIR] [--resume] ...`` (``--help``).
"""
from __future__ import annotations

import argparse

from afvae.cli import add_debug, fail
from afvae.config import PRESETS, VARIANTS


def parser() -> argparse.ArgumentParser:
    """``python -m afvae.train``'s arguments."""
    p = argparse.ArgumentParser(prog="python -m afvae.train",
                                description="Train one AF-VAE variant or GAN baseline (a config JSON).")
    p.add_argument("config", help=f"preset ({' | '.join(PRESETS)}) or a config JSON (e.g. a run's config.json)")
    p.add_argument("--variant", default="full", choices=sorted(VARIANTS))
    p.add_argument("--out", help="run folder (default results/runs/NAME-HASH)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    again.add_argument("--overwrite", action="store_true", help="delete the run OUT holds and start over")
    p.add_argument("--device", help="cpu | cuda | cuda:N (overrides the config)")
    p.add_argument("--steps", type=int, help="total steps (overrides the config)")
    p.add_argument("--lr", type=float, help="learning rate (overrides the config; a --resume may lower it)")
    p.add_argument("--data", help="'synthetic' or a prepared data folder (overrides the config)")
    return add_debug(p)


if __name__ == "__main__":  # parse before torch is imported: --help and bad arguments answer at once
    ARGS = parser().parse_args()

# The heavy imports, once the command line (if any) has been parsed.
import json
import logging
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from afvae.atomic import durable_replace, write_text
from afvae.checkpoint import (CHECKPOINT, METRICS, PENDING, check_resumable, load_checkpoint, lock_run, read_history,
                              restore, run_dir, save_checkpoint, start_over)
from afvae.config import Config, ModelConfig, TrainConfig, load_config
from afvae.data.datasets import build_dataset, collate
from afvae.images import save_grid
from afvae.losses import NonFiniteLoss
from afvae.methods import Method, build_method, is_baseline
from afvae.model import translate_all
from afvae.prior import fit_focal_points

log = logging.getLogger(__name__)
FOCAL_FIT_MAX = 5000  # boundary maps used to fit the K-means focal points
FIELDS = ("x", "c")  # what a training batch holds: images and boundary maps


@dataclass
class Dist:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")


def setup_distributed(device: str) -> Dist:
    """Join the torchrun process group when launched by torchrun, else a single process."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device is {device!r}, but torch sees no CUDA device here; train with --device cpu")
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
    check_batch(n, batch_size)
    per_epoch = n // batch_size
    epoch, offset = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[offset * batch_size : (offset + 1) * batch_size][d.rank :: d.world]


def check_batch(n: int, batch_size: int) -> None:
    """Refuse a batch larger than the training set (``n`` images)."""
    if batch_size > n:
        raise ValueError(f"train.batch_size {batch_size} is larger than the training set ({n} images): lower it, "
                         f"or train on more images")


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """The noise source of one step (reparameterisation, GMM component draws, a GAN's noise)."""
    return torch.Generator(device=device).manual_seed(seed * 7919 + step * 104_729 + rank)


def seeded_draw(n: int, k: int, seed: int) -> torch.Tensor:
    """Up to ``k`` of the indices 0 .. n - 1, drawn without replacement from ``seed``: (min(k, n),)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]


def fit_centres(dataset: Any, cfg: ModelConfig, seed: int) -> torch.Tensor:
    """K-means focal points over (up to FOCAL_FIT_MAX) training boundary maps -> (K, C_b * d * d).

    K = ``cfg.n_focal``, d = ``cfg.focal_downsample``.
    """
    idx = seeded_draw(len(dataset), FOCAL_FIT_MAX, seed)
    c = torch.cat([collate(dataset, chunk)["c"] for chunk in idx.split(256)])
    return fit_focal_points(c, k=cfg.n_focal, downsample=cfg.focal_downsample, seed=seed)


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {k: v.to(device, memory_format=fmt) if v.dim() == 4 else v.to(device) for k, v in batch.items()}


def save_samples(model: torch.nn.Module, batch: dict, path: Path) -> None:
    """Grid of rows: inputs, reconstructions, and the inputs re-posed with the next face's structure (any
    method with ``translate``: AF-VAE or a GAN baseline)."""
    x, c = batch["x"][:8], batch["c"][:8]
    rows = [x, translate_all(model, x, c, c), translate_all(model, x, c, c.roll(1, 0))]
    save_grid(torch.cat(rows), path, nrow=x.shape[0])


def train(cfg: Config, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          stop_at: int | None = None, progress: bool = True, cache_root: str | Path = "results/cache"
          ) -> list[dict[str, float]]:
    """Train ``cfg`` (AF-VAE or a baseline) into ``out_dir`` (checkpoint.pt, metrics.jsonl, samples/); return
    the logged history.

    ``resume`` continues from ``out_dir/checkpoint.pt`` when it exists; a folder that holds a run is
    otherwise refused, unless ``overwrite`` (delete that run, start over). ``stop_at`` ends the run early
    at that step (with a checkpoint), as an interruption would.
    """
    return fit(cfg, out_dir, resume=resume, overwrite=overwrite, stop_at=stop_at, progress=progress,
               cache_root=cache_root)[1]


def fit(cfg: Config, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
        stop_at: int | None = None, progress: bool = True, cache_root: str | Path = "results/cache",
        callback: Callable[[int, Method], None] | None = None) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """``train``, also returning this process's trained network (each DDP rank has its replica).

    Rank 0 holds the run folder's lock (``lock_run``) throughout: a second training there is refused.
    ``callback(done, method)`` runs after every step (e.g. to evaluate ``method.evaluated`` along the way).
    """
    out, d = Path(out_dir), setup_distributed(cfg.train.device)
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    with lock_run(out) if d.rank == 0 else nullcontext(out):
        if not resume:
            start_over(out, overwrite)
        return _fit(cfg, out, d, resume, stop_at, progress, cache_root, callback)


def data_init_batch(dataset: Any, tc: TrainConfig) -> dict[str, torch.Tensor]:
    """The ``tc.data_init`` training images (and their boundary maps) the data-dependent initialisation reads,
    drawn without replacement from ``tc.seed``."""
    return collate(dataset, seeded_draw(len(dataset), tc.data_init, tc.seed), FIELDS)


def _fit(cfg: Config, out: Path, d: Dist, resume: bool, stop_at: int | None, progress: bool,
         cache_root: str | Path, callback: Callable[[int, Method], None] | None = None) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """``fit`` in a run folder this process may write."""
    out.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(out / CHECKPOINT) if resume and (out / CHECKPOINT).exists() else None
    if state:
        check_resumable(state, cfg, out / CHECKPOINT)
    dataset = build_dataset(cfg.data, "train")
    check_batch(len(dataset), cfg.train.batch_size)  # before the focal points and a feature net are fitted
    centres = state["centres"] if state else fit_centres(dataset, cfg.model, cfg.data.seed)
    init = data_init_batch(dataset, cfg.train) if cfg.train.data_init and not state else None
    method = build_method(cfg, centres, d.device, d.world, progress, cache_root, init_batch=init)
    states = method.states()  # optimisers, schedules, EMA: what an exact resume restores besides the weights
    start = restore(state, method.model, states) if state else 0
    if state and state["config"]["train"]["lr"] != cfg.train.lr:
        log.warning("%s: resuming at step %d with train.lr %g (the checkpoint trained with %g)", out, start,
                    cfg.train.lr, state["config"]["train"]["lr"])
        rescale_lr(states, state["config"]["train"]["lr"], cfg.train.lr)
    history = read_history(out, start)
    if d.rank == 0:
        write_text(out / "config.json", cfg.to_json())
        if (out / METRICS).exists():  # drop the rows an interrupted run logged after its last checkpoint
            write_text(out / METRICS, "".join(json.dumps(r) + "\n" for r in history))
    end = cfg.train.steps if stop_at is None else min(stop_at, cfg.train.steps)
    _loop(cfg, method, states, dataset, d, out, start, end, history, progress, callback)
    if d.world > 1:
        dist.barrier()
    return method.model, history


def _loop(cfg: Config, method: Method, states: dict[str, Any], dataset: Any, d: Dist, out: Path, start: int,
          end: int, history: list, progress: bool, callback: Callable[[int, Method], None] | None = None) -> None:
    """Steps [start, end): the method's step, then logging, samples and checkpoints.

    A checkpoint is written aside (``PENDING``) and becomes ``checkpoint.pt`` once the next step has found the
    loss of its parameters finite; the run's last one, which has no next step, once its parameters are finite.
    So the NaN stop keeps only a checkpoint that trains on.
    """
    tc = cfg.train
    bar = tqdm(range(start, end), initial=start, total=tc.steps, disable=not progress or d.rank > 0,
               desc=cfg.name, dynamic_ncols=True)
    t0, seen = time.perf_counter(), 0
    kept, pending = start or None, None  # the steps of checkpoint.pt and of the checkpoint on trial
    watch = None if is_baseline(cfg) else CollapseWatch()
    for step in bar:
        idx = batch_indices(step, len(dataset), tc.batch_size, tc.seed, d)
        batch = _to_device(collate(dataset, idx, FIELDS), d.device, tc.channels_last)
        try:
            terms = method.step(batch, step_generator(tc.seed, step, d.rank, d.device))
        except NonFiniteLoss as e:
            raise diverged(cfg, out, step, f"non-finite {e.who}loss ({e.values})", kept) from None
        if watch is not None and watch.collapsed(step, float(terms["l1"]), float(batch["x"].abs().mean())):
            raise diverged(cfg, out, step, watch.what, kept, since=watch.since)
        if pending is not None:  # its parameters just gave a finite loss
            durable_replace(out / PENDING, out / CHECKPOINT)
            kept, pending = pending, None
        method.after_step()
        seen += len(idx) * d.world
        done = step + 1
        if done % tc.log_every == 0 or done == end:
            row = {"step": done, **{k: float(v) for k, v in terms.items()}, "lr": current_lr(method),
                   "img_per_s": seen / (time.perf_counter() - t0)}
            history.append(row)
            bar.set_postfix({k: f"{row[k]:.3g}" for k in method.shown})
            if d.rank == 0:
                with open(out / METRICS, "a") as f:
                    f.write(json.dumps(row) + "\n")
        if (done % tc.checkpoint_every == 0 or done == end) and not finite(method.model):  # on every rank
            raise diverged(cfg, out, done, "non-finite parameters", kept)
        if d.rank == 0:
            pending = _save(cfg, method, states, batch, out, done, end)
        if callback is not None:
            callback(done, method)


class CollapseWatch:
    """AF-VAE's collapse stop: a run whose reconstruction L1 stays above a grey image's (x_hat = 0: mean |x|, the
    "do nothing" of a decoder) for ``STEPS`` steps in a row has collapsed: a saturated output with a finite loss,
    seen after too short a warm-up at peak 3e-3 (L1 ~1.0 against a grey 0.33 and a KL in the thousands, for hundreds
    of steps). Healthy runs stay below it from step 25 on (the default preset), from step 63 at batch 8."""

    STEPS = 100

    def __init__(self) -> None:
        self.since: int | None = None  # the first step of the run of steps above grey
        self.last = (0.0, 0.0)  # the latest step's L1 and grey

    def collapsed(self, step: int, l1: float, grey: float) -> bool:
        """Whether step ``step``'s L1 ``l1``, against ``grey`` (its batch's mean |x|), ends ``STEPS`` in a row."""
        self.last = (l1, grey)
        if l1 <= grey:
            self.since = None
            return False
        self.since = step if self.since is None else self.since
        return step - self.since + 1 >= self.STEPS

    @property
    def what(self) -> str:
        """The stop's reason, for ``diverged``."""
        return (f"collapsed: its L1 ({self.last[0]:.3g}) has stayed above a grey image's ({self.last[1]:.3g}) for "
                f"{self.STEPS} steps, since step {self.since}")


def _save(cfg: Config, method: Method, states: dict[str, Any], batch: dict, out: Path, done: int, end: int
          ) -> int | None:
    """After step ``done``: the sample grid and the checkpoint when they are due (and at the run's last step)
    -> ``done`` when its checkpoint waits, as ``PENDING``, for the next step's loss."""
    tc = cfg.train
    if done % tc.sample_every == 0 or done == end:
        save_samples(method.model, batch, out / "samples" / f"step_{done:06d}.png")
    if done % tc.checkpoint_every and done != end:
        return None
    save_checkpoint(out / (CHECKPOINT if done == end else PENDING), model=method.model, states=states, step=done,
                    cfg=cfg, centres=method.centres,
                    feature_net=method.feature_net.name if method.feature_net is not None else "none")
    return None if done == end else done


def diverged(cfg: Config, out: Path, step: int, what: str, kept: int | None, since: int | None = None
             ) -> FloatingPointError:
    """The NaN stop's error, and the collapse stop's (``since``: the step the collapse began): ``what`` went wrong
    with the parameters of step ``step``, which checkpoint is kept (``kept``: its step, or None) and how to go on.
    Deletes the checkpoint on trial, which holds them."""
    (out / PENDING).unlink(missing_ok=True)
    lower, gan = f"--lr {cfg.train.lr / 10:g}", is_baseline(cfg)
    more = "" if gan else ", a longer train.warmup or a lower loss.beta"
    again = f"Start over (--overwrite) with a lower learning rate ({lower}){more}."
    if kept is None:
        return FloatingPointError(f"{cfg.name} at step {step}: {what}; no checkpoint was kept (none had trained on "
                                  f"to a finite loss). {again}")
    if since is not None and kept >= since:
        return FloatingPointError(f"{cfg.name} at step {step}: {what}; {out / CHECKPOINT} is from step {kept}, "
                                  f"within it. {again}")
    if kept == step:
        return FloatingPointError(f"{cfg.name} at step {step}: {what}, from {out / CHECKPOINT} itself, which no "
                                  f"learning rate can resume. {again}")
    beta = "" if gan else " (or start over with --overwrite and a lower loss.beta)"
    last = "the last whose loss was finite" if since is None else f"from before step {since}"
    return FloatingPointError(f"{cfg.name} at step {step}: {what}; kept {out / CHECKPOINT} from step {kept}, {last}. "
                              f"Resume it at a lower learning rate: python -m afvae.train "
                              f"{out / 'config.json'} --out {out} --resume {lower}{beta}.")


def rescale_lr(states: dict[str, Any], old: float, new: float) -> None:
    """Every learning rate in ``states`` (optimiser groups, a scheduler's base rates) times ``new / old``: a
    resume at a changed train.lr keeps the schedule's shape (a constant rate ``old`` becomes exactly ``new``)."""
    for obj in states.values():
        for group in getattr(obj, "param_groups", []):
            for key in ("lr", "initial_lr"):
                if key in group:
                    group[key] = new * (group[key] / old)
        if hasattr(obj, "base_lrs"):
            obj.base_lrs = [new * (lr / old) for lr in obj.base_lrs]


def finite(model: torch.nn.Module) -> bool:
    """Whether every parameter and floating-point buffer of ``model`` is finite."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def current_lr(method: Method) -> float:
    """The learning rate the method's (first) optimiser runs at."""
    return float(next(iter(method.optimisers.values())).param_groups[0]["lr"])


def run(a: argparse.Namespace) -> None:
    """Train what the parsed arguments ``a`` name; errors as one line on stderr, exit code 2."""
    from afvae.data.datasets import for_data

    try:
        cfg = load_config(a.config, a.variant)
        changes = {k: v for k, v in {"device": a.device, "steps": a.steps, "lr": a.lr}.items() if v is not None}
        if a.device and a.device.startswith("cuda"):
            changes["amp"] = True
        cfg = cfg.replace(train=changes)
        if a.data:
            cfg = for_data(cfg, a.data)
    except (ValueError, OSError) as e:
        fail("python -m afvae.train", e, a.debug)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(a.out) if a.out else run_dir(cfg)
    try:
        history = train(cfg, out, resume=a.resume, overwrite=a.overwrite)
    except (ValueError, OSError, FloatingPointError) as e:  # data, run folder (RunFolderError), the NaN stop
        fail("python -m afvae.train", e, a.debug)
    if history:
        last = history[-1]
        shown = [k for k in ("loss", "l1", "kl", "d_loss", "g_loss") if k in last]
        print(f"step {last['step']}: " + "  ".join(f"{k} {last[k]:.4f}" for k in shown) + f" -> {out}")


def main(argv: list[str] | None = None) -> None:
    """``python -m afvae.train ...`` (see ``parser``)."""
    run(parser().parse_args(argv))


if __name__ == "__main__":
    run(ARGS)
