"""Evaluation harness: one trained model on the unseen test identities -> one row of numbers.

The paper's protocol (Sec. 4): generated images of *unseen* identities against real test images at the same
resolution. Each of ``n`` (source, target) pairs of test items with different identities is manipulated
(source appearance, target structure) and scored three ways, never mixed up in a table:

* ground truth (synthetic data only: the true target is the source identity rendered under the target
  structure): ``gt_l1``, ``gt_psnr``, ``gt_ssim``, ``gt_factor_perceptual``; reconstructions ``rec_l1``,
  ``rec_psnr``; ``landmark_nme`` of the output (the landmark net's landmarks vs the true ones, / inter-ocular
  distance) beside ``landmark_nme_floor``, the same detector on the true targets, and
  ``landmark_nme_mean_shape``, the training mean shape taken for every target (the score of a detector that
  falls back to the mean face; the landmark net reads non-faces as far from any face instead, see
  ``afvae.features.train_landmark_net``); ``identity_sim`` (cosine of
  FactorNet appearance predictions, source vs output) beside ``identity_sim_truth`` (source vs true target)
  and ``identity_sim_other`` (source vs the target item, a different identity);
* the standard FID / IS / KID (torch-fidelity, Inception-v3): ``available: False`` with the ``reason`` when
  the Inception weights are absent, never a number from other weights;
* the labelled offline proxies on FactorNet features: ``factor_fd``, ``factor_kid``, ``factor_is``.

Two scorers read identity, landmarks and the FID stand-ins, side by side. The unsuffixed ``identity_sim*``,
``landmark_nme`` / ``landmark_nme_floor`` and ``heldout_fd`` / ``heldout_kid`` / ``heldout_is`` come from the
held-out scorer (``afvae.scorer``): another architecture, trained on faces of another data seed, in no method's
loss. The ``*_factor`` columns and ``factor_*`` come from the factor-net family trained on the training split:
``identity_sim*_factor`` and ``factor_*`` from the factor net, which is AF-VAE's feature-matching loss and
pix2pixHD's perceptual loss; ``landmark_nme*_factor`` from the landmark net (the factor net's architecture and
data). On a prepared folder, which cannot render another population, the held-out columns are NaN.

``gt_changed_l1`` is the manipulation's own error: the L1 over the pixels where source and truth differ
(``afvae.metrics.changed_region_l1``). ``evaluate_with_references`` adds the rows that frame every method:
"source unchanged" (the source returned as it is) and "oracle" (the true target through the model's own
encoder and decoder: the best an edit can do at the model's reconstruction quality).

``python -m afvae.evaluate CHECKPOINT`` writes ``results/eval_<name>.csv / .md / .tex``.
"""
from __future__ import annotations

import argparse

from afvae.cli import add_debug, at_least_1, fail

PROG = "python -m afvae.evaluate"


def parser() -> argparse.ArgumentParser:
    """``python -m afvae.evaluate``'s arguments."""
    p = argparse.ArgumentParser(prog=PROG, description="Evaluate trained runs (AF-VAE or a GAN baseline) on the "
                                                       "unseen test identities.")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="run folder(s) or checkpoint.pt file(s)")
    p.add_argument("--n", type=at_least_1, default=500, help="(source, target) pairs (default 500)")
    p.add_argument("--out", default="results", help="output folder (default results)")
    p.add_argument("--name", help="table name: writes eval_NAME.{csv,md,tex} (default: the run's folder name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--inception-weights",
                   help="torch-fidelity's Inception weights (default $AFVAE_INCEPTION_WEIGHTS, then the torch hub cache)")
    p.add_argument("--no-download", action="store_true", help="never try to download the Inception weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache", default="results/cache", help="where the FactorNet is cached (default results/cache)")
    p.add_argument("--threads", type=at_least_1, help="torch CPU threads (1 is fastest on a busy shared machine)")
    return add_debug(p)


if __name__ == "__main__":  # parse before torch is imported: --help and bad arguments answer at once
    ARGS = parser().parse_args()

# The heavy imports, once the command line (if any) has been parsed.
import logging
import math
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from afvae import tables
from afvae.boundaries import FACE68, Schema
from afvae.checkpoint import checkpoint_path, load_checkpoint, model_from_state
from afvae.config import Config, DataConfig
from afvae.data import synthetic as syn
from afvae.data.datasets import SYNTHETIC, build_dataset, collate
from afvae.features import FeatureNet, load_factor_net, load_landmark_net
from afvae.metrics import (
    INCEPTION_ENV,
    changed_region_l1,
    factor_class_probs,
    factor_metrics,
    fidelity_metrics,
    fingerprint,
    ground_truth_errors,
    identity_similarity,
    l1_error,
    landmark_error,
    predict,
    psnr,
    read_once,
    recall,
    summarise,
)
from afvae.model import edit_and_reconstruction
from afvae.scorer import NAME, load_scorer

log = logging.getLogger(__name__)
PROXY_NET = "factor"

# The columns of the .md / .tex tables, in order (the .csv keeps every recorded field).
TABLE_COLUMNS = (
    "name", "variant", "train_seed", "step", "n", "gt_l1", "gt_changed_l1", "gt_psnr", "gt_ssim", "gt_factor_perceptual",
    "landmark_nme", "landmark_nme_factor", "landmark_nme_floor", "landmark_nme_floor_factor",
    "landmark_nme_mean_shape", "rec_l1", "rec_psnr", "identity_sim", "identity_sim_factor", "identity_sim_truth",
    "identity_sim_truth_factor", "identity_sim_other", "identity_sim_other_factor",
    "fid", "is_mean", "kid_mean", "heldout_fd", "factor_fd", "heldout_kid", "factor_kid", "heldout_is", "factor_is",
)
REFERENCES = ("source unchanged", "oracle")  # the floor and the ceiling of every table (evaluate_with_references)
PAIR_METRICS = ("gt_l1", "gt_changed_l1", "gt_ssim", "identity_sim", "landmark_nme")  # pair_scores' columns


# ----------------------------------------------------------------------------------------------------------
# Which FactorNet target columns hold what


def factor_columns(n_targets: int, n_points: int = 68) -> dict[str, list[int]]:
    """Column indices of ``FactorNet.predict`` outputs: ``landmarks`` (2 * n_points), and on synthetic-factor
    data also ``appearance`` and ``structure`` (for faces 63 and 9) and, for faces, ``expression`` (the 6
    ``expr_*`` structure columns). The synthetic subject is the one whose schema has n_points.

    Layout of ``afvae.features.factor_targets``: landmarks / size, appearance vector, structure vector.
    """
    L = 2 * n_points
    cols = {"landmarks": list(range(L))}
    if n_targets == L:
        return cols  # landmarks only: a folder without factors.csv
    subject = next((s for s in syn.SUBJECTS.values() if s.schema.n_points == n_points), None)
    app, st = subject.columns() if subject is not None else ([], [])
    A, S = len(app), len(st)
    if subject is None or n_targets != L + A + S:
        raise ValueError(f"a FactorNet with {n_targets} targets matches neither the landmark-only layout "
                         f"({L}) nor a synthetic one of {n_points} points")
    expr = [L + A + i for i, c in enumerate(st) if c.startswith("expr_")]
    return {**cols, "appearance": list(range(L, L + A)), "structure": list(range(L + A, L + A + S))} | (
        {"expression": expr} if expr else {})


def predict_factors(net: FeatureNet, x: Tensor, batch_size: int = 256) -> Tensor:
    """Standardised FactorNet predictions: (N, 3, H, W) in [-1, 1] -> (N, T) float32 on the CPU."""
    return predict(net, x, batch_size)


def predicted_landmarks(net: FeatureNet, pred: Tensor, size: int, n_points: int = 68) -> Tensor:
    """De-standardise the landmark columns of ``predict_factors`` output (N, T) -> (N, P, 2) in pixels."""
    cols = slice(0, 2 * n_points)
    mean, std = net.meta["mean"].float()[cols], net.meta["std"].float()[cols]
    return ((pred[:, cols] * std + mean) * size).view(-1, n_points, 2)


# ----------------------------------------------------------------------------------------------------------
# Pairs and generation


def sample_pairs(identity: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` (source, target) item indices with different identities, a pure function of ``seed``.

    identity: (N,) identity per item. Sources run through seeded permutations of all items (each item is a
    source once before any is a source twice); each target is uniform over the items of other identities.
    """
    N = identity.numel()
    if identity.unique().numel() < 2:
        raise ValueError("pairs of different identities need at least two identities in the split")
    g = torch.Generator().manual_seed(seed)
    src = torch.cat([torch.randperm(N, generator=g) for _ in range(math.ceil(n / N))])[:n]  # (n,)
    other = identity[src][:, None] != identity[None, :]  # (n, N) candidates for each source
    k = (torch.rand(n, generator=g) * other.sum(1)).long()  # which candidate, uniform
    tgt = (other.cumsum(1) > k[:, None]).int().argmax(1)  # the (k+1)-th True of each row
    return src, tgt


def has_ground_truth(dataset: Any) -> bool:
    """Whether the dataset can render the true target of a manipulation (the synthetic faces can)."""
    return hasattr(dataset, "render_pair")


@torch.no_grad()
def generate(model: torch.nn.Module, dataset: Any, src: Tensor, tgt: Tensor, *, batch_size: int = 128,
             progress: bool = True, oracle: bool = False) -> dict[str, Tensor | None]:
    """Manipulations and reconstructions of the pairs (src, tgt), with their references, on the CPU.

    ``model``: AF-VAE or a GAN baseline (``afvae.baselines``): anything with ``translate(x, c_source, c_target)``.
    Returns ``x`` sources, ``x_out`` = translate(x, c_source, c_target), ``x_rec`` = translate(x, c_source,
    c_source) (for AF-VAE: decoded from the posterior mean), ``x_truth`` (the true targets, or None without ground truth),
    ``x_other`` (the target items' images), ``landmarks_target`` (N, 68, 2) pixels, the structure the outputs
    should have; with ``oracle`` and ground truth also ``x_oracle`` = translate(x_truth, c_target, c_target), the
    model's reconstruction of the true target. Images (N, 3, H, W) in [-1, 1]. The model runs in eval mode; its
    mode is restored after.
    """
    device, was_training = next(model.parameters()).device, model.training
    model.eval()  # BatchNorm variants: running statistics, not the batch's
    truth = has_ground_truth(dataset)
    parts: dict[str, list[Tensor]] = {}
    for s, t in tqdm(list(zip(src.split(batch_size), tgt.split(batch_size))), desc="evaluate",
                     disable=not progress, dynamic_ncols=True):
        b = collate(dataset, s, ["x", "c"])
        other = collate(dataset, t, ["x", "landmarks"] if truth else ["x", "c", "landmarks"])
        ref = (recall(dataset, ("render_pair", *fingerprint(s), *fingerprint(t)), lambda: dataset.render_pair(s, t))
               if truth else {"c_target": other["c"], "landmarks_target": other["landmarks"]})  # every run: the same truths
        x, c, ct = b["x"].to(device), b["c"].to(device), ref["c_target"].to(device)
        x_out, x_rec = edit_and_reconstruction(model, x, c, ct)
        batch = {"x": b["x"], "x_out": x_out.float().cpu(), "x_rec": x_rec.float().cpu(),  # x_rec: own z, own c
                 "x_other": other["x"], "landmarks_target": ref["landmarks_target"]}
        if truth:
            batch["x_truth"] = ref["x_target"]
        if truth and oracle:
            batch["x_oracle"] = model.translate(ref["x_target"].to(device), ct, ct).float().cpu()
        for k, v in batch.items():
            parts.setdefault(k, []).append(v)
    model.train(was_training)
    out: dict[str, Tensor | None] = {k: torch.cat(v) for k, v in parts.items()}
    out.setdefault("x_truth", None)
    return out


def reference_outputs(g: dict[str, Tensor | None]) -> dict[str, dict[str, Tensor | None]]:
    """``generate``'s output as the two references would have made it: "source unchanged" returns every source
    as it is (its reconstruction too); "oracle" outputs the model's reconstruction of the true target (only
    when ``g`` holds ``x_oracle``)."""
    refs = {"source unchanged": g | {"x_out": g["x"], "x_rec": g["x"]}}
    if g.get("x_oracle") is not None:
        refs["oracle"] = g | {"x_out": g["x_oracle"]}
    return refs


# ----------------------------------------------------------------------------------------------------------
# Metric groups (each returns a flat dict of floats / NaN)


@dataclass(frozen=True)
class Scorers:
    """The nets that read the outputs: ``factor`` (the factor net, a loss network), ``landmark`` (the landmark
    net) and ``heldout`` (``afvae.scorer``; None where the data cannot give one)."""

    factor: FeatureNet
    landmark: FeatureNet
    heldout: FeatureNet | None


def load_scorers(data: DataConfig, cache_root: str | Path = "results/cache", progress: bool = True, *,
                 factor_net: FeatureNet | None = None, landmark_net: FeatureNet | None = None,
                 scorer: FeatureNet | None = None) -> Scorers:
    """The Scorers of ``data``: the nets given, the others loaded from (or trained into) ``cache_root``."""
    load = lambda fn: fn(data, root=cache_root, progress=progress)  # noqa: E731
    factor = factor_net if factor_net is not None else load(load_factor_net)
    landmark = landmark_net if landmark_net is not None else load(load_landmark_net)
    if scorer is None and data.source in SYNTHETIC:
        scorer = load(load_scorer)
    return Scorers(factor, landmark, scorer)


def ground_truth_metrics(g: dict[str, Tensor | None], factor_net: FeatureNet) -> dict[str, float]:
    """``gt_*`` errors of the outputs against the true targets (NaN without ground truth), ``gt_changed_l1``
    (``changed_region_l1``: the L1 over the pixels the manipulation should change) and ``rec_*``."""
    rec = {"rec_l1": float(l1_error(g["x_rec"], g["x"]).double().mean()),
           "rec_psnr": float(psnr(g["x_rec"], g["x"]).double().mean())}
    if g["x_truth"] is None:
        return {f"gt_{k}": math.nan for k in ("l1", "changed_l1", "psnr", "ssim", "factor_perceptual")} | rec
    errors = summarise(ground_truth_errors(g["x_out"], g["x_truth"], feature_net=factor_net))
    changed = float(changed_region_l1(g["x_out"], g["x"], g["x_truth"]).double().nanmean())
    return {f"gt_{k}": v for k, v in errors.items()} | {"gt_changed_l1": changed} | rec


def landmark_metrics(g: dict[str, Tensor | None], net: FeatureNet, size: int, schema: Schema = FACE68,
                     suffix: str = "") -> dict[str, float]:
    """``landmark_nme`` (the landmarks ``net`` reads on the outputs vs the targets') and ``landmark_nme_floor``,
    each name ending in ``suffix``.

    The floor runs the same detector on images that truly have the target structure: the true targets, or
    without ground truth the target items themselves.
    """
    read = lambda x: predicted_landmarks(net, predict_factors(net, x), size, schema.n_points)  # noqa: E731
    floor = g["x_truth"] if g["x_truth"] is not None else g["x_other"]
    return {f"landmark_nme{suffix}": _nme(read(g["x_out"]), g, schema),
            f"landmark_nme_floor{suffix}": _nme(read(floor), g, schema)}


def _nme(pred: Tensor, g: dict[str, Tensor | None], schema: Schema) -> float:
    """Mean NME of landmarks pred (N, P, 2) against the targets' in ``g``."""
    return float(landmark_error(pred, g["landmarks_target"].float(), schema.reference).double().mean())


def mean_shape_nme(g: dict[str, Tensor | None], landmark_net: FeatureNet, size: int, schema: Schema = FACE68
                   ) -> dict[str, float]:
    """``landmark_nme_mean_shape``: the training split's mean landmarks taken for every target, the score of a
    detector that falls back to the mean face; an NME near it says the outputs follow the targets no better."""
    P = schema.n_points
    mean_shape = (landmark_net.meta["mean"].float()[:2 * P] * size).view(1, P, 2)
    return {"landmark_nme_mean_shape": _nme(mean_shape.expand_as(g["landmarks_target"]), g, schema)}


def identity_metrics(preds: dict[str, Tensor], columns: dict[str, list[int]], suffix: str = "") -> dict[str, float]:
    """Cosine similarities of a scorer's standardised appearance predictions (all 63 columns), names ending in
    ``suffix``.

    ``identity_sim``: source vs output; ``identity_sim_truth``: source vs true target (same identity, the
    ceiling); ``identity_sim_other``: source vs target item (another identity, the chance level).
    NaN where the scorer has no appearance targets or there is no ground truth.
    """
    keys = {f"identity_sim{suffix}": "x_out", f"identity_sim_truth{suffix}": "x_truth",
            f"identity_sim_other{suffix}": "x_other"}
    if "appearance" not in columns:
        return dict.fromkeys(keys, math.nan)
    app = {k: v[:, columns["appearance"]] for k, v in preds.items()}
    return {name: float(identity_similarity(app["x"], app[src]).double().mean()) if src in app else math.nan
            for name, src in keys.items()}


def proxy_metrics(real: Tensor, fake: Tensor, net: FeatureNet, columns: dict[str, list[int]], prefix: str,
                  seed: int) -> dict[str, float]:
    """``{prefix}_fd``, ``_kid`` (+ ``_std``), ``_is`` (+ ``_std``): the FID / KID / IS stand-ins on ``net``'s
    features, fakes vs real test images (``_is``: its expression read-out as a 6-way classifier, else NaN)."""
    classifier: Callable[[Tensor], Tensor] | None = None
    if "expression" in columns:
        classifier = lambda x: factor_class_probs(net, x, columns["expression"])  # noqa: E731
    proxies = factor_metrics(real, fake, net, classifier=classifier, isc_splits=min(10, fake.shape[0]), seed=seed)
    return {f"{prefix}_{k}": proxies.get(f"factor_{k}", math.nan) for k in ("fd", "kid", "kid_std", "is", "is_std")}


def distribution_metrics(real: Tensor, fake: Tensor, factor_net: FeatureNet, columns: dict[str, list[int]], *,
                         inception_weights: str | Path | None, download: bool, device: str,
                         seed: int) -> dict[str, Any]:
    """FID / IS / KID (or None with ``fidelity_reason``) and the FactorNet proxies, fakes vs real test images."""
    fid = fidelity_metrics(real, fake, weights_path=inception_weights, download=download,
                           isc_splits=min(10, fake.shape[0]), device=device, seed=seed)
    out = {k: fid.get(k) for k in ("fid", "is_mean", "is_std", "kid_mean", "kid_std")}
    out |= {"fidelity_available": fid["available"], "fidelity_reason": fid["reason"],
            "fidelity_weights": fid["weights_file"], "kid_subset_size": fid["kid_subset_size"]}
    out |= proxy_metrics(real, fake, factor_net, columns, "factor", seed)
    return out | {"proxy_net": factor_net.name, "n_real": int(real.shape[0]), "n_fake": int(fake.shape[0])}


def heldout_metrics(g: dict[str, Tensor | None], real: Tensor, scorer: FeatureNet | None, schema: Schema,
                    seed: int) -> dict[str, float]:
    """The held-out scorer's ``landmark_nme`` / ``_floor``, ``identity_sim*`` and ``heldout_*`` stand-ins
    (every one NaN without a scorer)."""
    keys = ("landmark_nme", "landmark_nme_floor", "identity_sim", "identity_sim_truth", "identity_sim_other",
            *(f"{NAME}_{k}" for k in ("fd", "kid", "kid_std", "is", "is_std")))
    if scorer is None:
        return dict.fromkeys(keys, math.nan)
    columns = factor_columns(int(scorer.meta["mean"].numel()), schema.n_points)
    preds = {k: predict_factors(scorer, g[k]) for k in ("x", "x_out", "x_truth", "x_other") if g[k] is not None}
    out = landmark_metrics(g, scorer, g["x"].shape[-1], schema) | identity_metrics(preds, columns)
    return out | proxy_metrics(real, g["x_out"], scorer, columns, NAME, seed)


def pair_scores(g: dict[str, Tensor | None], scorer: FeatureNet | None, schema: Schema) -> pd.DataFrame:
    """The paired metrics (``PAIR_METRICS``) pair by pair, one row per pair (``pair`` = its index): the table's
    ``gt_*``, ``identity_sim`` and ``landmark_nme`` are their means. NaN columns without ground truth or scorer."""
    n = g["x"].shape[0]
    out = {"pair": np.arange(n), **{m: np.full(n, np.nan) for m in PAIR_METRICS}}
    if g["x_truth"] is not None:
        errors = ground_truth_errors(g["x_out"], g["x_truth"])
        out |= {"gt_l1": errors["l1"].numpy(), "gt_ssim": errors["ssim"].numpy(),
                "gt_changed_l1": changed_region_l1(g["x_out"], g["x"], g["x_truth"]).numpy()}
    if scorer is not None:
        columns = factor_columns(int(scorer.meta["mean"].numel()), schema.n_points)
        pred = {k: predict_factors(scorer, g[k]) for k in ("x", "x_out")}  # (N, T) each, read once
        if "appearance" in columns:
            app = columns["appearance"]
            out["identity_sim"] = identity_similarity(pred["x"][:, app], pred["x_out"][:, app]).numpy()
        read = predicted_landmarks(scorer, pred["x_out"], g["x"].shape[-1], schema.n_points)
        out["landmark_nme"] = landmark_error(read, g["landmarks_target"].float(), schema.reference).numpy()
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------------------------------
# One model, several runs


def real_test_images(dataset: Any, limit: int, seed: int) -> Tensor:
    """Up to ``limit`` real test images (all of them when fewer), chosen by a seeded permutation."""
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed + 1))[:limit]
    return collate(dataset, idx.sort().values, ["x"])["x"]


def score(g: dict[str, Tensor | None], cfg: Config, dataset: Any, scorers: Scorers, *, seed: int, real: Tensor,
          inception_weights: str | Path | None, download: bool, device: str) -> dict[str, Any]:
    """Every metric of ``generate``'s output ``g`` for ``cfg`` on ``dataset``: one flat table row."""
    net, schema = scorers.factor, dataset.schema
    columns = factor_columns(int(net.meta["mean"].numel()), schema.n_points)
    preds = {k: predict_factors(net, g[k]) for k in ("x", "x_out", "x_truth", "x_other") if g[k] is not None}
    row: dict[str, Any] = {"variant": cfg.name, "train_seed": cfg.train.seed, "config_hash": cfg.hash(),
                           "n": int(g["x"].shape[0]), "seed": seed,
                           "size": cfg.data.size, "data": cfg.data.source, "train_feature_net": cfg.loss.feature_net}
    row |= ground_truth_metrics(g, net) | heldout_metrics(g, real, scorers.heldout, schema, seed)
    row |= landmark_metrics(g, scorers.landmark, cfg.data.size, schema, "_factor")
    row |= mean_shape_nme(g, scorers.landmark, cfg.data.size, schema) | identity_metrics(preds, columns, "_factor")
    row |= distribution_metrics(real, g["x_out"], net, columns, inception_weights=inception_weights,
                                download=download, device=device, seed=seed)
    row["proxy_net_test_r2"] = float(net.meta.get("test_r2", math.nan))
    notes = [f"{type(dataset).__name__} cannot render true targets: gt_* and identity_sim_truth* are NaN"] * (
        g["x_truth"] is None) + ["no appearance factors: identity_sim* are NaN"] * ("appearance" not in columns)
    notes += ["no held-out scorer for this data: its columns are NaN"] * (scorers.heldout is None)
    return row | {"note": "; ".join(notes)}


@read_once()  # the nets read each image set once
def evaluate(model: torch.nn.Module, cfg: Config, *, n: int = 500, seed: int = 0, factor_net: FeatureNet | None = None,
             landmark_net: FeatureNet | None = None, scorer: FeatureNet | None = None,
             inception_weights: str | Path | None = None, download: bool = True, real_limit: int = 5000,
             batch_size: int = 128, cache_root: str | Path = "results/cache", progress: bool = True,
             references: bool = False, pairs: list[pd.DataFrame] | None = None
             ) -> dict[str, Any] | list[dict[str, Any]]:
    """Score ``model`` (AF-VAE or a GAN baseline) on ``n`` pairs of unseen test identities of ``cfg.data``; a
    flat dict (one table row). With ``references``: a list, that row then "source unchanged" and (with ground
    truth) "oracle" (``reference_outputs``), each marked in ``kind`` ("method" | "reference").

    factor_net, landmark_net, scorer: the FactorNet, landmark net and held-out scorer of ``cfg.data`` (default:
    ``load_scorers`` from ``cache_root``, each trained once and cached). ``download`` lets torch-fidelity's
    Inception weights be fetched when not on disk. Deterministic: the same (model, cfg, n, seed) give the same
    numbers. ``pairs``: a list that receives ``pair_scores`` of the model (and of each reference), tagged with
    ``variant``, ``train_seed`` and ``kind``.
    """
    t0 = time.perf_counter()
    scorers = load_scorers(cfg.data, cache_root, progress, factor_net=factor_net, landmark_net=landmark_net,
                           scorer=scorer)
    dataset = build_dataset(cfg.data, "test")
    src, tgt = sample_pairs(dataset.identity, n, seed)
    g = generate(model, dataset, src, tgt, batch_size=batch_size, progress=progress, oracle=references)
    kw = dict(seed=seed, real=real_test_images(dataset, real_limit, seed), inception_weights=inception_weights,
              download=download, device=next(model.parameters()).device.type)
    row = score(g, cfg, dataset, scorers, **kw)
    outputs = {cfg.name: (g, "method")} | {k: (r, "reference") for k, r in reference_outputs(g).items() if references}
    if pairs is not None:
        pairs += [pair_scores(o, scorers.heldout, dataset.schema).assign(variant=name, train_seed=cfg.train.seed,
                                                                          kind=kind) for name, (o, kind) in outputs.items()]
    log.info("evaluated %s on %d pairs in %.1f s", cfg.name, n, time.perf_counter() - t0)
    if not references:
        return row
    refs = [score(r, cfg, dataset, scorers, **kw) | {"variant": name, "kind": "reference", "reference_of": cfg.name}
            for name, (r, kind) in outputs.items() if kind == "reference"]
    return [row | {"kind": "method"}, *refs]


def checkpoint_info(run: str | Path, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a checkpoint records beyond the weights: its path, step and the feature-matching network used.

    ``state``: the checkpoint already loaded from ``run``, to avoid reading it again.
    """
    path = checkpoint_path(run)
    state = load_checkpoint(path) if state is None else state
    return {"checkpoint": f"{path.parent.name}/{path.name}",  # run folder + file: no machine paths in tables
            "step": int(state["step"]), "train_feature_net": state.get("feature_net")}


def run_name(run: str | Path) -> str:
    """A run's display name: its folder (``full-1a2b3c4d5e6f``), or the checkpoint file's folder."""
    path = Path(run)
    return (path if path.is_dir() else path.parent).resolve().name


@read_once()  # the nets read each image set once
def evaluate_runs(runs: dict[str, str | Path], *, device: str = "cpu", cache_root: str | Path = "results/cache",
                  progress: bool = True, references: str | Sequence[str] | None = None,
                  pairs: list[pd.DataFrame] | None = None, **kwargs: Any) -> pd.DataFrame:
    """``evaluate`` each run (folder or checkpoint) -> DataFrame, one row per entry, ``name`` = its key.

    ``references``: the key (or keys, e.g. one per training seed) of the run whose model also makes the "source
    unchanged" and "oracle" rows (named by ``variant``, last). One set of Scorers per data config is loaded and
    shared; ``pairs`` collects each row's per-pair scores (``evaluate``), tagged with ``name``; ``kwargs`` go to
    ``evaluate`` (n, seed, ...).
    """
    references = [references] if isinstance(references, str) else list(references or [])
    rows, refs, nets = [], [], {}
    for name, run in runs.items():
        state = load_checkpoint(checkpoint_path(run))
        model, cfg = model_from_state(state, device)
        if cfg.data not in nets:
            nets[cfg.data] = load_scorers(cfg.data, cache_root, progress)
            nets[cfg.data].factor.net.to(device)
        s = nets[cfg.data]
        mine: list[pd.DataFrame] | None = [] if pairs is not None else None
        out = evaluate(model, cfg, factor_net=s.factor, landmark_net=s.landmark, scorer=s.heldout,
                       cache_root=cache_root, progress=progress, references=name in references, pairs=mine, **kwargs)
        if pairs is not None:
            pairs += [p.assign(name=name if k == 0 else p["variant"]) for k, p in enumerate(mine)]
        info = checkpoint_info(run, state)
        if info["train_feature_net"] is None:  # an older checkpoint: keep the configured value
            info.pop("train_feature_net")
        first, *extra = out if isinstance(out, list) else [out]
        rows.append({"name": name, "kind": "method", **first, **info})
        refs += [{"name": r["variant"], **r, **info} for r in extra]
    df = pd.DataFrame(rows + refs)
    return df[[c for c in TABLE_COLUMNS if c in df] + [c for c in df if c not in TABLE_COLUMNS]]



# ----------------------------------------------------------------------------------------------------------
# Per-pair scores, for intervals paired over the same pairs


@read_once()  # the nets read each image set once
def evaluate_pairs(runs: dict[str, str | Path], *, n: int = 500, seed: int = 0, references: Sequence[str] = (),
                   cache_root: str | Path = "results/cache", batch_size: int = 128, progress: bool = True
                   ) -> pd.DataFrame:
    """``pair_scores`` of each run on the same ``n`` pairs of unseen test identities -> a long DataFrame.

    Columns ``name`` (the run's key), ``kind`` ("method" | "reference"), ``reference_of``, ``pair`` and
    ``PAIR_METRICS``. Each run in ``references`` also makes the "source unchanged" and "oracle" rows
    (``reference_outputs``), named by those words, ``reference_of`` its key. The runs must share one data config.
    """
    models = {name: model_from_state(load_checkpoint(checkpoint_path(run)), "cpu") for name, run in runs.items()}
    data = {cfg.data for _, cfg in models.values()}
    if len(data) != 1:
        raise ValueError(f"paired scores need one data config, the runs have {len(data)}")
    data_cfg = data.pop()
    scorers = load_scorers(data_cfg, cache_root, progress)
    dataset = build_dataset(data_cfg, "test")
    src, tgt = sample_pairs(dataset.identity, n, seed)
    frames = []
    for name, (model, cfg) in models.items():
        g = generate(model, dataset, src, tgt, batch_size=batch_size, progress=progress, oracle=name in references)
        outputs = {name: g} | (reference_outputs(g) if name in references else {})
        for label, r in outputs.items():
            kind = "method" if label == name else "reference"
            frames.append(pair_scores(r, scorers.heldout, dataset.schema).assign(
                name=label, kind=kind, reference_of=name if kind == "reference" else None))
    df = pd.concat(frames, ignore_index=True)
    return df[["name", "kind", "reference_of", "pair", *PAIR_METRICS]]


# ----------------------------------------------------------------------------------------------------------
# Tables


def fidelity_note(df: pd.DataFrame) -> str | None:
    """One line saying why FID / IS / KID are missing, or None when every row has them."""
    if "fidelity_available" not in df or bool(df["fidelity_available"].all()):
        return None
    reasons = df.loc[~df["fidelity_available"].astype(bool), "fidelity_reason"].dropna().unique()
    return str(reasons[0]) if len(reasons) else "FID / IS / KID not computed"


def write_table(df: pd.DataFrame, out_dir: str | Path, name: str,
                columns: Sequence[str] = TABLE_COLUMNS) -> dict[str, Path]:
    """``tables.write_table`` of evaluation rows: ``name.csv`` (every field), ``name.md`` / ``name.tex`` (the
    ``columns`` present), ending with a note saying why FID / IS / KID are missing, when they are."""
    return tables.write_table(df, out_dir, name, columns, note=fidelity_note(df))


# ----------------------------------------------------------------------------------------------------------
# Command line (argparse stays in this entry point, not in the functions above)


def run(a: argparse.Namespace) -> dict[str, Path]:
    """Evaluate the runs the parsed arguments ``a`` name and write their table; bad input exits with code 2."""
    if a.threads:
        torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    runs = {run_name(c): c for c in a.checkpoints}
    t0 = time.perf_counter()
    try:
        df = evaluate_runs(runs, n=a.n, seed=a.seed, inception_weights=a.inception_weights,
                           download=not a.no_download, device=a.device, cache_root=a.cache)
    except (FileNotFoundError, ValueError) as e:  # a missing or foreign checkpoint, a bad value
        fail(PROG, e, a.debug)
    name = a.name or (next(iter(runs)) if len(runs) == 1 else "runs")
    paths = write_table(df, a.out, f"eval_{name}")
    print(tables.to_markdown(df[[c for c in TABLE_COLUMNS if c in df]]), end="")
    note = fidelity_note(df)
    if note:
        print(" ".join(note.split()))
    print(f"{len(df)} run(s), {a.n} pairs each, {time.perf_counter() - t0:.1f} s -> {paths['csv'].with_suffix('.*')}")
    return paths


def main(argv: list[str] | None = None) -> dict[str, Path]:
    """``python -m afvae.evaluate CHECKPOINT [CHECKPOINT ...] [--n 500] [--out results] [--name NAME] ...``."""
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    run(ARGS)
