"""Time to quality: the default preset trained from scratch (seed 0), its edits scored along the way.

``python -m afvae.bench quality`` trains the full model with the default recipe in a temporary folder and
evaluates it (the EMA weights when the recipe keeps them) at ``EVAL_POINTS`` evenly spaced steps, the last
one the end of training, on a fixed set of 200 yaw and 200 expression edits of unseen identities
(``afvae.quality``). Training compute is counted, not estimated: FLOPs of one training step (forward and
backward of the model and the feature net, ``torch.utils.flop_counter``) per image, times images seen.
Evaluation time is excluded from ``train_minutes``. Identity and landmarks are read twice: by the factor net
(``identity_sim``, ``landmark_nme``, the keys the targets read, as before) and by the held-out scorer, which is in
no loss (``afvae.scorer``: ``identity_sim_heldout``, ``landmark_nme_heldout`` and their ``_truth`` / ``_floor``).
The last point also scores the model's oracle (``*_oracle``) and, under ``seen``, the same draw of edits of its
training identities.
"""
from __future__ import annotations

import functools
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from afvae.config import Config, get_config
from afvae.hardware import flops

EVAL_POINTS = 6
CACHE = "results/cache"  # the FactorNet (feature matching and scorer), shared with make paper
# The bar of the quality issue: (key, comparison, threshold); "copy+" thresholds are relative to a baseline.
TARGETS = {
    "yaw_ssim >= 0.85": lambda r: r["yaw_ssim"] >= 0.85,
    "yaw_ssim >= yaw_ssim_copy + 0.15": lambda r: r["yaw_ssim"] >= r["yaw_ssim_copy"] + 0.15,
    "expr_changed_l1 <= 0.5 * expr_changed_l1_copy": lambda r: r["expr_changed_l1"] <= 0.5 * r["expr_changed_l1_copy"],
    "identity_sim >= 0.85": lambda r: r["identity_sim"] >= 0.85,
    "landmark_nme <= 0.095": lambda r: r["landmark_nme"] <= 0.095,
    "train_tflop <= 40": lambda r: r["train_tflop"] <= 40,
}


def flops_per_image(cfg: Config, cache_root: str = CACHE) -> float:
    """FLOPs of a training step of ``cfg``'s method per image (values do not change FLOPs: random inputs),
    averaged over ``R1_EVERY`` steps when a GAN baseline's lazy R1 penalty is on (it runs on one step of them)."""
    from afvae.baselines.common import R1_EVERY
    from afvae.methods import build_method

    R, B, m = cfg.data.size, cfg.train.batch_size, cfg.model
    steps = R1_EVERY if cfg.loss.r1 > 0 else 1
    centres = torch.rand(m.n_focal, m.boundary_channels * m.focal_downsample**2)
    with torch.random.fork_rng(devices=[]):
        method = build_method(cfg, centres, torch.device("cpu"), progress=False, cache_root=cache_root)
        batch = {"x": torch.rand(B, 3, R, R) * 2 - 1, "c": torch.rand(B, m.boundary_channels, R, R)}
        seeds = itertools.count()
        return flops(lambda: method.step(batch, torch.Generator().manual_seed(next(seeds))), calls=steps) / B


def before_recipe() -> Config:
    """The compact preset as it was before the time-to-quality work: Adam (0.9, 0.999) at a constant 5e-4,
    batch 32 x 900 steps, no FiLM (``python -m afvae.bench quality_before`` measures it)."""
    return get_config("compact").replace(
        train={"steps": 900, "batch_size": 32, "lr": 5e-4, "betas": (0.9, 0.999), "warmup": 0.0, "decay": "constant",
               "ema": 0.0, "sample_every": 300, "checkpoint_every": 150},
        model={"z_film": False, "full_res_width": 0})


def fresh_recipe(cfg: Config | None = None) -> Config:
    """``cfg`` (default: the compact preset) trained on as many identities as it sees images: every training image
    is of a new identity (``data.train_images``; ``python -m afvae.bench quality_fresh`` measures the compact
    preset)."""
    cfg = cfg or get_config("compact")
    return cfg.replace(data={"train_images": cfg.train.steps * cfg.train.batch_size})


def train_tflop(cfg: Config, cache_root: str = CACHE) -> float:
    """The training compute of ``cfg``'s method in TFLOP: ``flops_per_image`` x images seen."""
    return flops_per_image(cfg, cache_root) * cfg.train.steps * cfg.train.batch_size / 1e12


@functools.cache
def default_tflop() -> float:
    """The compact preset's training TFLOP (38.8), counted once per process: the budget that every ``at_budget``
    of the recipe ladder spends, the default preset included."""
    return train_tflop(get_config("compact"))


def at_budget(cfg: Config, tflop: float | None = None) -> Config:
    """``cfg`` trained for as many steps as ``tflop`` buys at its counted FLOPs per image (default: the compact
    preset's training FLOPs, so a cheaper model sees more images), its checkpoints and samples at the same
    share of the steps as the compact preset's."""
    default = get_config("compact").train
    per_step = flops_per_image(cfg) * cfg.train.batch_size
    steps = int((tflop or default_tflop()) * 1e12 // per_step)
    share = lambda every: max(1, round(steps * every / default.steps))  # noqa: E731
    return cfg.replace(train={"steps": steps, "checkpoint_every": share(default.checkpoint_every),
                              "sample_every": share(default.sample_every)})


def narrow(base_width: int) -> Config:
    """The compact preset with ``base_width`` channels at full resolution (its 32) and the same ratio
    to ``max_width`` (4x)."""
    return get_config("compact").replace(model={"base_width": base_width, "max_width": 4 * base_width})


def narrow_recipe() -> Config:
    """The compact recipe at half its widths (``base_width`` 16, ``max_width`` 64: 0.51 GFLOP per training image
    against 1.43), trained for as many images as the compact preset's FLOPs buy (``at_budget``: 76,752 against
    27,200), each of a new identity (``fresh_recipe``); ``python -m afvae.bench quality_narrow`` measures it."""
    return fresh_recipe(at_budget(narrow(16)))


# On top of ``narrow_recipe``: twice its peak learning rate, a 1 - SSIM reconstruction term (``loss.ssim``, not in
# the paper) at weight 0.3 and feature matching at 0.3 (README "Time to quality", *A structure term*: the screen).
SSIM_CHANGES: dict[str, dict[str, Any]] = {"train": {"lr": 3e-3}, "loss": {"ssim": 0.3, "feature_weight": 0.3}}


@functools.cache
def ssim_recipe() -> Config:
    """``narrow_recipe`` with ``SSIM_CHANGES``, trained for as many images as the compact preset's FLOPs buy (73,216:
    the SSIM term's FLOPs are counted too), each of a new identity: the default preset before the data-init and
    broadcast changes (``python -m afvae.bench quality_ssim`` measures it)."""
    return fresh_recipe(at_budget(narrow(16).replace(**SSIM_CHANGES)))


DATA_INIT = 256  # training images the data-dependent initialisation reads (``train.data_init``)
# On top of ``ssim_recipe``: that initialisation, with a longer warm-up (10 % of the steps, not 3 %: at 3 % two of
# three runs diverged) and beta 1e-4 (README "Time to quality", *After the SSIM recipe*: the screen).
INIT_CHANGES: dict[str, dict[str, Any]] = {"train": {"data_init": DATA_INIT, "warmup": 0.1}, "loss": {"beta": 1e-4}}


def init_recipe() -> Config:
    """``ssim_recipe`` with ``INIT_CHANGES``: its weight-normalised convs initialised from ``DATA_INIT`` training
    images (``train.data_init``, ``model.data_init_``), a 10 % warm-up and beta 1e-4;
    ``python -m afvae.bench quality_init`` measures it."""
    return ssim_recipe().replace(**INIT_CHANGES)


# On top of ``init_recipe``: z reaches the decoder as one vector over its 4 x 4 (``model.z_spatial`` off, not in the
# paper), the SSIM term at 1 and beta 3e-4 (README "Time to quality", *Where z may put things*: the screen).
BROADCAST_CHANGES: dict[str, dict[str, Any]] = {"model": {"z_spatial": False}, "loss": {"ssim": 1.0, "beta": 3e-4}}


def default_recipe() -> Config:
    """``init_recipe`` with ``BROADCAST_CHANGES``: the default preset, derived (a test holds the two equal;
    ``python -m afvae.bench quality`` measures it)."""
    return init_recipe().replace(**BROADCAST_CHANGES)


# The screen's first form of the broadcast recipe: batch 8 over twice the steps (the same 73,216 images) at peak 2e-3.
SMALL_BATCH: dict[str, Any] = {"batch_size": 8, "lr": 2e-3}


def broadcast_recipe() -> Config:
    """``default_recipe`` at ``SMALL_BATCH``, over as many images (its steps scaled to the batch):
    ``python -m afvae.bench quality_broadcast`` measures it."""
    cfg = default_recipe()
    images = cfg.train.steps * cfg.train.batch_size
    return cfg.replace(train={**SMALL_BATCH, "steps": images // SMALL_BATCH["batch_size"]})


# The curves of ``figure``, in the ladder's order: legend label -> benchmark name (``results/bench/NAME.json``).
DEFAULT_CURVE = "default: + z broadcast over the 4 x 4, SSIM term 1, beta 3e-4"
CURVES = {DEFAULT_CURVE: "quality", "before": "quality_before",
          "compact (the default before the SSIM recipe)": "quality_compact",
          "compact, fresh identities": "quality_fresh",
          "compact at half widths, fresh identities, equal FLOPs": "quality_narrow",
          "+ peak 3e-3, SSIM term 0.3, feature matching 0.3 (the default before the data init)": "quality_ssim",
          "+ data-dependent init, warm-up 10 %, beta 1e-4": "quality_init",
          "default at batch 8, peak 2e-3": "quality_broadcast"}


def figure(bench_dir: str | Path = "results/bench", figures: str | Path = "figures") -> Path | None:
    """``figures/time_to_quality.png`` from the ``CURVES`` that have run (None until ``quality`` has)."""
    from afvae.plotting import plot_time_to_quality, save_figure

    bench = Path(bench_dir)
    runs = {label: json.loads((bench / f"{stem}.json").read_text()) for label, stem in CURVES.items()
            if (bench / f"{stem}.json").exists()}
    if DEFAULT_CURVE not in runs:
        return None
    # CPU minutes are the machine's: each curve says which CPU ran it (files before afvae.hardware do not)
    curves = {f"{name} ({_machine(run)})": run["curve"] for name, run in runs.items()}
    return save_figure(plot_time_to_quality(curves), "time_to_quality", figures)


def _machine(results: dict[str, Any]) -> str:
    """The CPU and threads a benchmark's JSON was measured on, in a few words."""
    from afvae.hardware import summary

    if not results.get("cpu_isa"):
        return "CPU not recorded"
    return f"{summary(results)}, {results['threads']} thread(s)"


def scoring(cfg: Config) -> tuple[Any, Any, Any]:
    """The benchmark's fixed edits (200 yaw, 200 expression of unseen identities of ``cfg.data``, seed 0), the
    factor net that scores them (``identity_sim``, ``landmark_nme``) and the held-out scorer (``*_heldout``)."""
    from afvae.features import load_factor_net
    from afvae.scorer import load_scorer

    return benchmark_edits(cfg), load_factor_net(cfg.data, CACHE), load_scorer(cfg.data, CACHE)


SEEN_KEYS = ("yaw_ssim", "yaw_ssim_oracle", "rec_ssim", "expr_changed_l1", "identity_sim", "landmark_nme")


def benchmark_edits(cfg: Config, split: str = "test") -> Any:
    """The benchmark's draw of edits (``afvae.quality.BENCHMARK``) of ``cfg``'s unseen identities, or with
    ``split="train"`` the same draw of its training identities: people the model was fitted to, under structures
    it never saw with them (``seen``)."""
    from afvae.data.datasets import build_dataset
    from afvae.quality import BENCHMARK, edit_set

    return edit_set(build_dataset(cfg.data, split), **BENCHMARK)


def seen_scores(model: torch.nn.Module, edits: Any, scorer: Any) -> dict[str, float]:
    """``SEEN_KEYS`` of ``model`` on ``edits`` of training identities (no held-out scorer)."""
    from afvae.quality import edit_quality

    q = edit_quality(model, edits, scorer, oracle=True)
    return {k: round(q[k], 4) for k in SEEN_KEYS}


def edits_figure(model: torch.nn.Module, edits: Any, name: str, figures: str | Path = "figures",
                 n_show: int = 5) -> Path:
    """``figures/NAME.png``: the benchmark's first ``n_show`` yaw and expression edits (source, target boundary,
    truth, the model's edit), under each edit its score (SSIM to the truth; changed-region L1) and the unchanged
    source's."""
    from afvae.model import translate_all
    from afvae.plotting import plot_swaps, save_figure
    from afvae.quality import EDIT_METRICS

    panels, notes = {}, {}
    for kind, label in (("yaw", "SSIM"), ("expression", "changed L1")):
        i = edits.mask(kind).nonzero()[:n_show, 0]
        x, c, c_target, x_truth = edits.x[i], edits.c[i], edits.c_target[i], edits.x_truth[i]
        x_out = translate_all(model, x, c, c_target).float()  # eval mode, restored after
        score = EDIT_METRICS[kind][0]
        notes[f"{kind} edits"] = [f"{label} {a:.3f}\n(unchanged {b:.3f})" for a, b in
                                  zip(score(x_out, x, x_truth).tolist(), score(x, x, x_truth).tolist())]
        panels[f"{kind} edits"] = {"x": x, "c_target": c_target, "x_truth": x_truth, "x_out": x_out}
    title = "Unseen faces edited by the benchmark's model at the end of training, beside the true render"
    return save_figure(plot_swaps(panels, notes, title, n_show=n_show), name, figures)


def run(cfg: Config | None = None, eval_points: int = EVAL_POINTS, show: str | None = None) -> dict[str, Any]:
    """Train ``cfg`` (default: the default preset, its edits drawn as ``figures/quality_edits.png``) and score it
    at ``eval_points`` points (module docstring); ``show``: also draw its last point's edits as
    ``figures/SHOW.png`` (``edits_figure``)."""
    if cfg is None:
        cfg, show = get_config("default"), show or "quality_edits"
    from afvae.quality import edit_quality
    from afvae.train import fit

    edits, scorer, heldout = scoring(cfg)
    per_image = flops_per_image(cfg)
    points = {round(cfg.train.steps * (i + 1) / eval_points) for i in range(eval_points)}
    curve: list[dict[str, float]] = []
    clock = {"eval": 0.0}

    def evaluate(done: int, method: Any) -> None:
        if done not in points:
            return
        t0 = time.perf_counter()
        images = done * cfg.train.batch_size
        last = done == cfg.train.steps  # the final point also scores the oracle: the model's own ceiling
        row = {"step": done, "images_seen": images, "train_tflop": per_image * images / 1e12,
               "train_minutes": (t0 - clock["start"] - clock["eval"]) / 60,
               **edit_quality(method.evaluated, edits, scorer, heldout, oracle=last)}
        if last:  # and the same edits of training identities: fit against generalisation
            row["seen"] = seen_scores(method.evaluated, benchmark_edits(cfg, "train"), scorer)
            if show:
                edits_figure(method.evaluated, edits, show)
        curve.append(row)
        clock["eval"] += time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="afvae-quality-") as out:
        clock["start"] = time.perf_counter()
        fit(cfg, out, cache_root=CACHE, callback=evaluate)
    final = curve[-1]
    return {**final, "flops_per_image": per_image, "eval_seconds": clock["eval"], "n_edits": len(edits.kind),
            "recipe": cfg.train.__dict__ | {"model": cfg.model.__dict__, "loss": cfg.loss.__dict__,
                                            "data": cfg.data.__dict__},
            "targets_met": {name: bool(ok(final)) for name, ok in TARGETS.items()}, "curve": curve}
