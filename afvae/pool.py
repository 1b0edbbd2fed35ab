"""Training every model the notebooks need before they run, several at once: the first stage of ``make paper``.

At 64 px one training process barely gains from a second CPU thread (its small convolutions do not split
well), so on a 2-core machine two single-threaded workers side by side finish ~1.5x sooner than one run after
the other at two threads: 1,700 default-preset steps took 383-441 s each at one thread beside another run (make
paper from a clean clone), against ~320 s alone at two threads. The notebooks then find every run finished in
the cache (``experiment.trained``), and the evaluation nets trained beside the runs (``evaluate.load_scorers``),
and only evaluate and plot.

    train_all(needed(["02_train", "09_comparison"], "default", "synthetic"), "results/runs", jobs=2)

Runs already finished, or shipped in ``weights/`` (unless ``$AFVAE_RETRAIN=1``), are skipped, an interrupted
one resumes exactly (``experiment.train_cached``), and each run folder is locked while a worker trains it.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from afvae import baselines, beta_sweep, experiment
from afvae.checkpoint import METRICS, run_dir
from afvae.config import VARIANTS, Config
from afvae.data.datasets import SYNTHETIC
from afvae.features import build_feature_net, landmark_net_path, load_landmark_net
from afvae.scorer import load_scorer, scorer_path

POLL_SECONDS = 2.0  # how often the progress bar reads the workers' metrics.jsonl
TABLE3 = {"02_train", "03_ablation", "05_weight_norm"}  # the notebooks that use every Table 3 variant's runs
TABLE1 = {"09_comparison"}  # the GAN baselines
BETA_SWEEP = {"14_prior_beta"}
STEMS = TABLE3 | TABLE1 | BETA_SWEEP  # the notebooks whose runs ``needed`` lists


def needed(stems: Iterable[str], scale: str, data: str = "synthetic", seed: int = 0, n_seeds: int = 1
           ) -> list[Config]:
    """The configs that the notebooks ``stems`` train, the slowest kind first: the GAN baselines of
    ``09_comparison``, the Table 3 variants (``02_train`` and the notebooks that read its runs), then
    ``14_prior_beta``'s β sweep (synthetic data only); each seed of ``seed .. seed + n_seeds - 1``, each run once.
    """
    stems, seeds = set(stems), range(seed, seed + n_seeds)
    cfgs: list[Config] = []
    if stems & TABLE1:
        cfgs += [baselines.config(scale, m, data, s) for s in seeds for m in baselines.METHODS]
    if stems & TABLE3:
        cfgs += [experiment.config(scale, v, data, s) for s in seeds for v in VARIANTS]
    if stems & BETA_SWEEP and data == "synthetic":
        cfgs += list(beta_sweep.configs(scale, data, seed).values())
    return list({run_dir(c, "").name: c for c in cfgs}.values())


def unshipped(stems: Iterable[str], scale: str, data: str = "synthetic", seed: int = 0, n_seeds: int = 1,
              results: str | Path = "results", most: int = 4) -> dict[str, str]:
    """The notebooks of ``stems`` (those that ``needed`` lists runs for) with a run that is neither finished in
    ``results/runs`` nor shipped -> why, naming up to ``most`` of them: at ``SHIPPED_SCALE``, which trains
    nothing, the pipeline skips them."""
    out = {}
    for stem in sorted(set(stems) & STEMS):
        missing = [run_dir(c, "").name for c in needed([stem], scale, data, seed, n_seeds)
                   if not experiment.available(c, results)]
        if missing:
            names = ", ".join(missing[:most]) + (f" and {len(missing) - most} more" if len(missing) > most else "")
            out[stem] = (f"weights/ ships no {scale}-preset model for {len(missing)} of its runs ({names}); "
                         "RETRAIN=1 trains them, or python -m afvae.zoo train / export ships them")
    return out


def _cores() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def default_jobs(cfgs: Sequence[Config]) -> int:
    """One single-threaded worker per CPU core; one process when any run trains on a GPU."""
    return 1 if any(c.train.device != "cpu" for c in cfgs) else _cores()


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _timed(fn: Callable[..., Any], *args: Any) -> float:
    """Run ``fn(*args)`` -> wall seconds (in a worker)."""
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _train(cfg: Config, root: str) -> None:
    experiment.train_cached(cfg, root, progress=False)


def _scorer_tasks(cfgs: Sequence[Config], cache: Path) -> list[tuple[str, Callable[..., Any], tuple]]:
    """The evaluation nets of the runs' data that ``cache`` lacks (``evaluate.load_scorers``: the landmark net,
    and the held-out scorer for synthetic data), as tasks: trained beside the runs rather than by a notebook."""
    tasks: dict[str, tuple[str, Callable[..., Any], tuple]] = {}
    for data in {repr(c.data): c.data for c in cfgs}.values():
        nets = [(landmark_net_path, load_landmark_net)] + [(scorer_path, load_scorer)] * (data.source in SYNTHETIC)
        for path, load in nets:
            if not (file := path(data, cache)).exists():
                tasks[file.name] = (file.name, load, (data, str(cache), False))
    return list(tasks.values())


def _step(run: Path) -> int:
    """The last step a run folder has logged (0 before its first log)."""
    path = run / METRICS
    try:
        last = path.read_text().rstrip().rpartition("\n")[2]
        return int(json.loads(last)["step"]) if last else 0
    except (OSError, ValueError, KeyError):
        return 0


def train_all(cfgs: Sequence[Config], root: str | Path, jobs: int | None = None, progress: bool = True,
              scorers: bool = True) -> dict[str, float]:
    """Train ``cfgs`` into ``root``, and (``scorers``, with more than one job) the evaluation nets of their data
    into ``root/../cache``, with ``jobs`` worker processes (default ``default_jobs``) of cores // jobs torch
    threads each; one progress bar over the runs' steps.

    Returns name -> wall seconds of each run and net trained here (finished, cached and shipped ones are not
    listed). A failure stops the other workers (each run resumes from its last checkpoint) and raises
    RuntimeError naming it.
    """
    root = Path(root)
    cache = root.parent / "cache"
    todo = [c for c in cfgs if not experiment.ready(c, root)]  # shipped runs are installed here
    if not todo:
        return {}
    jobs = min(jobs or default_jobs(todo), len(todo))
    for cfg in todo:  # the shared loss net first, here, so that no two workers train it at once
        build_feature_net(cfg.loss.feature_net, cfg.data, progress=progress, cache_root=cache)
    tasks = [(run_dir(c, root).name, _train, (c, str(root))) for c in todo]
    tasks = tasks[:1] + _scorer_tasks(todo, cache) + tasks[1:] if jobs > 1 and scorers else tasks
    if jobs == 1:
        return {name: _timed(fn, *args) for name, fn, args in tasks}
    bar = tqdm(total=sum(c.train.steps for c in todo), desc=f"training {len(tasks)} runs and nets, {jobs} at a time",
               unit="step", disable=not progress)
    seconds: dict[str, float] = {}
    pool = get_context("spawn").Pool(jobs, _init_worker, (max(1, _cores() // jobs),))
    try:
        running = {name: pool.apply_async(_timed, (fn, *args)) for name, fn, args in tasks}
        while len(seconds) < len(tasks):
            time.sleep(POLL_SECONDS)
            for name, result in running.items():
                if name not in seconds and result.ready():
                    try:
                        seconds[name] = result.get()
                    except Exception as e:  # the worker's exception, re-raised here
                        raise RuntimeError(f"training {name} failed ({type(e).__name__}: {e}); "
                                           "run again to resume it") from e
            bar.n = sum(_step(run_dir(c, root)) for c in todo)
            bar.set_postfix_str(f"{len(seconds)}/{len(tasks)} done")
        pool.close()
    except BaseException:
        pool.terminate()  # a failure or an interrupt stops the other runs too; each resumes from its checkpoint
        raise
    finally:
        pool.join()
        bar.close()
    return seconds
