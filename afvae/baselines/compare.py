"""Table 1 and Fig. 4: the GAN baselines and AF-VAE evaluated the same way (no plotting here).

Every method is scored by ``afvae.evaluate.evaluate`` on the same pairs of unseen test identities (the same
seed), so the numbers differ only by the method: ground-truth errors on synthetic data, FID / IS when the
Inception weights are present, and the held-out scorer's and the factor net's stand-ins otherwise. The rows
"source unchanged" and "oracle" (AF-VAE's reconstruction of the true target) frame the four methods.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from torch import Tensor

from afvae import baselines, experiment
from afvae.analysis import expression_structures
from afvae.checkpoint import METRICS
from afvae.config import Config
from afvae.evaluate import evaluate, has_ground_truth
from afvae.features import FeatureNet
from afvae.model import count_params, translate_all

ORDER = ("pix2pixHD", "StarGAN", "GANimation", "AF-VAE")  # the paper's row order
PAPER_TABLE1 = {  # RaFD, 256 px (the paper's Table 1): FID lower is better, IS higher is better
    "pix2pixHD": {"paper_fid": 75.4, "paper_is": 0.875},
    "StarGAN": {"paper_fid": 56.9, "paper_is": 1.036},
    "GANimation": {"paper_fid": 34.4, "paper_is": 1.112},
    "AF-VAE": {"paper_fid": 25.1, "paper_is": 1.237},
}
TABLE1_COLUMNS = (
    "method", "images_seen", "generator_params", "fid", "is_mean", "heldout_fd", "factor_fd", "heldout_is",
    "factor_is", "gt_l1", "gt_changed_l1", "gt_psnr", "gt_ssim", "landmark_nme", "landmark_nme_factor",
    "landmark_nme_mean_shape", "identity_sim", "identity_sim_factor", "paper_fid", "paper_is",
)


def trained_method(name: str, scale: str, data: str = "synthetic", seed: int = 0, results: str | Path = "results",
                   progress: bool = True) -> tuple[torch.nn.Module, Config, Path]:
    """A trained method by name: a baseline of ``ORDER``, "AF-VAE" (the full model) or an AF-VAE ablation
    variant ("no_kl", ...); trained now unless ``results/runs`` holds it. Returns (model, config, run folder)."""
    if name in baselines.METHODS:
        return experiment.trained(baselines.config(scale, name, data, seed), results, progress=progress)
    variant = "full" if name == "AF-VAE" else name
    return experiment.trained(experiment.config(scale, variant, data, seed), results, progress=progress)


def images_seen(cfg: Config) -> int:
    """The training budget in images seen: steps x batch size."""
    return cfg.train.steps * cfg.train.batch_size


def train_tflop(cfg: Config, cache_root: str | Path = "results/cache") -> float:
    """The training compute of ``cfg``'s method in TFLOP (``afvae.bench.quality.train_tflop``: its counted FLOPs
    per training image, forward and backward, x images seen)."""
    from afvae.bench import quality

    return quality.train_tflop(cfg, str(cache_root))


def same_budget(cfgs: dict[str, Config], scale: str) -> bool:
    """Whether Table 1's methods (name -> config, "AF-VAE" among them) keep its compute rule at ``scale``: where
    ``baselines.BUDGET_STEPS`` sets it, each GAN trains its steps of AF-VAE's batch on AF-VAE's data (equal
    FLOPs); elsewhere every method sees AF-VAE's images."""
    afvae = cfgs["AF-VAE"]
    budget = baselines.BUDGET_STEPS.get(scale)
    for name, cfg in cfgs.items():
        if name == "AF-VAE":
            continue
        if cfg.data != afvae.data or cfg.train.batch_size != afvae.train.batch_size:
            return False
        if cfg.train.steps != (budget[name] if budget else afvae.train.steps):
            return False
    return True


def training_speed(run: str | Path) -> float:
    """The last logged training throughput (images / s) of a run, NaN when it logged none."""
    path = Path(run) / METRICS
    lines = path.read_text().splitlines() if path.exists() else []
    return float(json.loads(lines[-1]).get("img_per_s", float("nan"))) if lines else float("nan")


def generator_params(model: torch.nn.Module) -> int:
    """Parameters used to make an image: a baseline's G, or all of AF-VAE (its encoders and decoder)."""
    return count_params(getattr(model, "G", model))


def comparison_table(methods: dict[str, tuple[torch.nn.Module, Config, Path]], *, n: int, seed: int,
                     factor_net: FeatureNet, cache_root: str | Path, progress: bool = True,
                     references: str | None = "AF-VAE", pairs: list[pd.DataFrame] | None = None) -> pd.DataFrame:
    """``evaluate`` each (model, cfg, run) on the same n pairs -> one row per method, Table 1 columns first.

    Adds ``images_seen``, ``generator_params``, ``train_img_per_s`` and the paper's FID / IS for reference.
    ``references``: the method whose model also makes the "source unchanged" and "oracle" rows (last; ``kind``
    says "reference"), None for none. ``pairs`` collects each row's per-pair scores (``evaluate``), tagged with
    ``method``.
    """
    rows, refs = [], []
    for name, (model, cfg, run) in methods.items():
        mine: list[pd.DataFrame] | None = [] if pairs is not None else None
        out = evaluate(model, cfg, n=n, seed=seed, factor_net=factor_net, cache_root=cache_root, progress=progress,
                       references=name == references, pairs=mine)
        if pairs is not None:
            pairs += [p.assign(method=name if k == 0 else p["variant"]) for k, p in enumerate(mine)]
        first, *extra = out if isinstance(out, list) else [out]
        rows.append({"method": name, "kind": "method", **first, "images_seen": images_seen(cfg),
                     "generator_params": generator_params(model), "train_img_per_s": training_speed(run),
                     **PAPER_TABLE1.get(name, {})})
        refs += [{"method": r["variant"], **r} for r in extra]
    df = pd.DataFrame(rows + refs)
    return df[[c for c in TABLE1_COLUMNS if c in df] + [c for c in df if c not in TABLE1_COLUMNS]]


def ranks(table: pd.DataFrame, better: dict[str, str]) -> dict[str, dict[str, int]]:
    """Rank (1 = best) of every method on each metric (the reference rows left out); ``better`` maps metric ->
    "min" | "max"; NaN skipped."""
    t = table[table["kind"] != "reference"].set_index("method") if "kind" in table else table.set_index("method")
    return {m: {k: int(v) for k, v in t[m].rank(ascending=(d == "min"), method="min").dropna().items()}
            for m, d in better.items() if m in t and t[m].notna().any()}


# ----------------------------------------------------------------------------------------------------------
# Fig. 4: sources x target expressions, every method side by side


def expression_targets(dataset: Any, items: Tensor, expressions: Sequence[str], seed: int) -> dict[str, Any]:
    """Targets for Fig. 4: each source item under each target expression, S = len(expressions) per source.

    Synthetic data: the source's pose with each expression at full intensity; ``truth`` is that render.
    Other data: targets are test items of other identities (``sample_pairs``), ``truth`` is None, labels name
    the target item. Returns x, c_source, c_target (N*S, ...) in source-major order, truth, labels (N*S).
    """
    S = len(expressions)
    b = dataset.get_batch(items, ["x", "c"])
    x, c_src = b["x"].repeat_interleave(S, 0), b["c"].repeat_interleave(S, 0)
    if has_ground_truth(dataset):
        renders = [dataset.true_target(int(i), expression_structures(dataset.structure.index(int(i)), expressions))
                   for i in items]
        return {"x": x, "c_source": c_src, "c_target": torch.cat([r["c"] for r in renders]),
                "truth": torch.cat([r["x"] for r in renders]),
                "labels": [f"item {int(i)}\n{e}" for i in items for e in expressions]}
    g, picks = torch.Generator().manual_seed(seed), []
    for i in items:  # S targets of other identities per source, drawn by the seed
        others = (dataset.identity != dataset.identity[i]).nonzero()[:, 0]
        if len(others) < S:
            raise ValueError(f"item {int(i)}: {len(others)} items of other identities, need {S}")
        picks.append(others[torch.randperm(len(others), generator=g)[:S]])
    tgt = torch.cat(picks)
    return {"x": x, "c_source": c_src, "c_target": dataset.get_batch(tgt, ["c"])["c"], "truth": None,
            "labels": [f"item {int(i)}\nas item {int(t)}" for i, t in zip(items.repeat_interleave(S), tgt)]}


def comparison_rows(models: dict[str, torch.nn.Module], targets: dict[str, Any]
                    ) -> tuple[list[list[Tensor]], list[str], dict[str, Tensor]]:
    """Image-grid rows: input, target boundary, truth (when known), then each method's output.

    Returns (rows, column labels, outputs per method (N*S, 3, H, W)).
    """
    outputs = {name: translate_all(m, targets["x"], targets["c_source"], targets["c_target"]) for name, m in models.items()}
    truth = targets["truth"]
    cols = ["input", "target c"] + (["truth"] if truth is not None else []) + list(models)
    rows = [[targets["x"][i], targets["c_target"][i]] + ([truth[i]] if truth is not None else [])
            + [outputs[name][i] for name in models] for i in range(targets["x"].shape[0])]
    return rows, cols, outputs
