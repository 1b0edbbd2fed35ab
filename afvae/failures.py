"""Failure cases (Fig. 11): the worst edits of unseen faces, mined by their error against the truth and explained
by the renderer's factors.

The edits are ``afvae.quality``'s (yaw, pose and expression targets, each with its true render), made of
faces the model has never seen: identities drawn from outside the training population (ids from
``n_identities`` up), one image each, so that every pair is another identity, with the renderer's full variety
of appearance (a test split of 20 identities holds two or three with glasses).

* **error**: the L1 of the output against the true target over the whole image, in [0, 1] units
  (``afvae.metrics.l1_error``); SSIM and the changed-region L1 (``quality.changed_region_l1``) are kept beside it.
* **failures**: the worst ``FAILURE_FRACTION`` of the pairs by that error (``failure_mask``).
* **factors** (``factor_flags``): yes / no per pair, from the factors that drew it (``FACTOR_RULES``).
* **explanation** (``assign``): a failure goes to the factor it carries whose lift (its rate among the failures
  over its rate among all pairs) is highest, among the factors with lift > 1; ``OTHER`` when it carries none.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from afvae.config import DataConfig
from afvae.data.datasets import SyntheticFaces, unseen_identities
from afvae.data.synthetic import EXPRESSIONS, HAIR_STYLES
from afvae.metrics import l1_error
from afvae.quality import EditSet, truth_scores

FAILURE_FRACTION = 0.02  # the worst 2 % of the pairs are the failures
EXTREME_YAW = 45.0  # degrees: a target |yaw| at least this (the outer quarter of the +-60 training range) ...
LARGE_YAW_CHANGE = 60.0  # ... or a change of yaw at least this (half the range) is "extreme yaw"
EYES_CLOSED = 0.5  # eyes_closed weight of the source or the target, at least
STRONG_EXPRESSION = 0.8  # weight of smile, surprise, anger or disgust of the source or the target, at least
CONTOUR_QUANTILE = 0.9  # "large contour change": landmark displacement in the top 10 % of the pairs
OTHER = "other"
MOVING = [EXPRESSIONS.index(e) for e in ("smile", "surprise", "anger", "disgust")]
EYES = EXPRESSIONS.index("eyes_closed")


def unseen_faces(data: DataConfig, n: int) -> SyntheticFaces:
    """``n`` synthetic faces of ``n`` identities outside the population of ``data`` and past its new training
    identities (``datasets.unseen_identities``: never trained on), one image each, with their true renders."""
    ids = unseen_identities(data, n)
    return SyntheticFaces(data.size, data.n_identities, 1, "test", data.seed, data.boundary_channels,
                          identities=ids)


def edit_counts(n_pairs: int) -> dict[str, int]:
    """``quality.edit_set``'s counts for ``n_pairs`` edits: 2 : 1 : 2 yaw, pose (pitch and roll), expression."""
    n_pose = n_pairs // 5
    n_yaw = (n_pairs - n_pose) // 2
    return {"n_yaw": n_yaw, "n_pose": n_pose, "n_expression": n_pairs - n_pose - n_yaw}


def pair_factors(faces: SyntheticFaces, edits: EditSet) -> pd.DataFrame:
    """One row per pair: its kind, identity, and the factors of source and target that the flags read."""
    src, tgt = faces.structure.index(edits.items), edits.structure_target
    app = faces.appearance_of(faces.identity[edits.items])
    shift = (faces.landmarks[edits.items] - edits.landmarks_target).norm(dim=-1).mean(-1)  # (N,) pixels
    col = lambda t: t.reshape(len(t), -1)[:, 0].numpy()  # noqa: E731
    return pd.DataFrame({
        "kind": list(edits.kind), "identity": faces.identity[edits.items].numpy(),
        "yaw_source": col(src.yaw), "yaw_target": col(tgt.yaw), "pitch_source": col(src.pitch),
        "pitch_target": col(tgt.pitch), "roll_source": col(src.roll), "roll_target": col(tgt.roll),
        "expression_source": [EXPRESSIONS[i] for i in src.expression.argmax(1)],
        "expression_target": [EXPRESSIONS[i] for i in tgt.expression.argmax(1)],
        "eyes_closed": col(torch.maximum(src.expression[:, EYES], tgt.expression[:, EYES])),
        "expression_strength": col(torch.maximum(src.expression[:, MOVING].amax(1), tgt.expression[:, MOVING].amax(1))),
        "glasses": col(app.glasses), "beard": col(app.beard),
        "hair_style": [HAIR_STYLES[i] for i in app.hair_style.argmax(1)],
        "landmark_shift": shift.numpy(),
    })


def pair_errors(edits: EditSet, x_out: Tensor, x_rec: Tensor) -> pd.DataFrame:
    """Per pair: ``l1`` (the error that ranks them), ``ssim``, ``changed_l1`` against the truth, ``l1_copy`` (the
    source returned unchanged) and ``rec_l1`` (the source's reconstruction against the source: what the model
    cannot even reproduce). ``x_out``, ``x_rec`` (N, 3, H, W) in [-1, 1] (``quality.run_edits``)."""
    scores = truth_scores(x_out, edits)
    return pd.DataFrame({
        "l1": scores["l1"].numpy(), "ssim": scores["ssim"].numpy(), "changed_l1": scores["changed_l1"].numpy(),
        "l1_copy": l1_error(edits.x, edits.x_truth).numpy(), "rec_l1": l1_error(x_rec, edits.x).numpy(),
    })


# factor -> (the rule in words, pairs -> (N,) bool); the contour rule's threshold is a quantile of the pairs
FACTOR_RULES: dict[str, tuple[str, Callable[[pd.DataFrame], pd.Series]]] = {
    "extreme yaw": (f"target |yaw| >= {EXTREME_YAW:.0f} deg or |yaw change| >= {LARGE_YAW_CHANGE:.0f} deg",
                    lambda p: (p.yaw_target.abs() >= EXTREME_YAW)
                    | ((p.yaw_target - p.yaw_source).abs() >= LARGE_YAW_CHANGE)),
    "glasses": ("the identity wears glasses", lambda p: p.glasses > 0.5),
    "beard": ("the identity has a beard", lambda p: p.beard > 0),
    **{f"hair: {s}": (f"hair style {s}", lambda p, s=s: p.hair_style == s) for s in HAIR_STYLES},
    "eyes closed": (f"eyes_closed weight >= {EYES_CLOSED} in source or target", lambda p: p.eyes_closed >= EYES_CLOSED),
    "strong expression": (f"smile, surprise, anger or disgust >= {STRONG_EXPRESSION} in source or target",
                          lambda p: p.expression_strength >= STRONG_EXPRESSION),
    "large contour change": (f"mean landmark displacement source -> target in the top "
                             f"{1 - CONTOUR_QUANTILE:.0%} of the pairs",
                             lambda p: p.landmark_shift >= p.landmark_shift.quantile(CONTOUR_QUANTILE)),
}


def factor_flags(pairs: pd.DataFrame) -> pd.DataFrame:
    """(N, F) bool, one column per ``FACTOR_RULES`` factor, from ``pair_factors``' table."""
    return pd.DataFrame({name: rule(pairs).to_numpy(bool) for name, (_, rule) in FACTOR_RULES.items()})


def failure_mask(error: np.ndarray, fraction: float = FAILURE_FRACTION) -> np.ndarray:
    """(N,) bool: the ``ceil(fraction * N)`` pairs of largest error (ties: the earlier pair first)."""
    k = math.ceil(fraction * len(error))
    worst = np.argsort(-np.asarray(error, np.float64), kind="stable")[:k]
    out = np.zeros(len(error), bool)
    out[worst] = True
    return out


def bootstrap_mean(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` (n,) and its 95 % percentile-bootstrap interval; NaNs when empty."""
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    idx = np.random.default_rng(seed).integers(len(values), size=(n_boot, len(values)))
    lo, hi = np.quantile(values[idx].mean(1), [0.025, 0.975])
    return float(values.mean()), float(lo), float(hi)


def factor_table(flags: pd.DataFrame, error: np.ndarray, failed: np.ndarray, rec: np.ndarray, n_boot: int = 2000,
                 seed: int = 0) -> pd.DataFrame:
    """Per factor: n, its rate among all pairs and among the failures, lift = their ratio, the mean error with and
    without it with 95 % bootstrap intervals, and the mean reconstruction error ``rec`` with and without it.
    ``error``, ``failed``, ``rec`` (N,)."""
    rows = []
    for name in flags.columns:
        f = flags[name].to_numpy(bool)
        rate_all, rate_failed = f.mean(), f[failed].mean()
        with_, without = bootstrap_mean(error[f], n_boot, seed), bootstrap_mean(error[~f], n_boot, seed)
        rows.append({"factor": name, "rule": FACTOR_RULES[name][0], "n": int(f.sum()),
                     "n_failures": int((f & failed).sum()), "rate_all": rate_all, "rate_failures": rate_failed,
                     "lift": rate_failed / rate_all if rate_all > 0 else math.nan,
                     **dict(zip(("error_with", "error_with_lo", "error_with_hi"), with_)),
                     **dict(zip(("error_without", "error_without_lo", "error_without_hi"), without)),
                     "rec_with": rec[f].mean() if f.any() else math.nan, "rec_without": rec[~f].mean()})
    return pd.DataFrame(rows)


def assign(flags: pd.DataFrame, failed: np.ndarray, lift: pd.Series) -> pd.Series:
    """The category of each failure (index: its pair): the factor it carries of highest lift among those with
    lift > 1, else ``OTHER``. ``lift``: factor -> lift."""
    explaining = [f for f in lift.sort_values(ascending=False).index if lift[f] > 1]  # best first
    rows = flags[failed]
    return pd.Series([next((f for f in explaining if row[f]), OTHER) for _, row in rows.iterrows()],
                     index=rows.index, name="category")


def explain(pairs: pd.DataFrame, fraction: float = FAILURE_FRACTION, n_boot: int = 2000, seed: int = 0
            ) -> tuple[pd.DataFrame, pd.Series]:
    """The failures of ``pairs`` (``pair_factors`` joined with ``pair_errors``), explained: the per-factor table
    (with ``n_assigned``, failures assigned to each factor) and each failure's category (index: its pair)."""
    flags = factor_flags(pairs)
    error = pairs["l1"].to_numpy(np.float64)
    failed = failure_mask(error, fraction)
    table = factor_table(flags, error, failed, pairs["rec_l1"].to_numpy(np.float64), n_boot, seed)
    category = assign(flags, failed, table.set_index("factor")["lift"])
    counts = category.value_counts()
    return table.assign(n_assigned=[int(counts.get(f, 0)) for f in table["factor"]]), category


def examples(edits: EditSet, x_out: Tensor, pairs: pd.DataFrame, category: pd.Series, lift: pd.Series,
             per_row: int = 3) -> dict[str, dict[str, Any]]:
    """Figure rows: per category with failures (most failures first), its ``per_row`` worst pairs' source,
    target boundary, truth, output, error, a caption of the edit and a note (failures, lift)."""
    rows = {}
    for name, n in category.value_counts().items():
        idx = pairs.loc[category.index[category == name], "l1"].sort_values(ascending=False).index[:per_row]
        i = torch.tensor(idx.tolist())
        note = f"{n} failure{'s' * (n > 1)}" + (f", lift {lift[name]:.1f}" if name in lift else "")
        rows[name] = {"x": edits.x[i], "c_target": edits.c_target[i], "truth": edits.x_truth[i], "output": x_out[i],
                      "error": pairs.loc[idx, "l1"].tolist(), "caption": [describe_edit(pairs.loc[j]) for j in idx],
                      "note": note}
    return rows


def describe_edit(pair: pd.Series) -> str:
    """One pair's edit in a few words, source -> target: its yaw, or at its yaw, pitch and roll or expression."""
    if pair.kind == "yaw":
        return f"yaw {pair.yaw_source:+.0f} -> {pair.yaw_target:+.0f}"
    if pair.kind == "pose":
        return (f"yaw {pair.yaw_source:+.0f}: pitch {pair.pitch_source:+.0f} -> {pair.pitch_target:+.0f},\n"
                f"roll {pair.roll_source:+.0f} -> {pair.roll_target:+.0f}")
    return f"yaw {pair.yaw_source:+.0f}: {pair.expression_source}\n-> {pair.expression_target}"
