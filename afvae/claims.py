"""The paper's claims as tests: means with 95 % intervals over training seeds, paired comparisons, verdicts.

Every seeded table reads one row per (method, training seed), each row a mean over the same evaluation pairs.

* ``t_interval``: mean and 95 % t-interval over seeds (NaN bounds with one seed: no interval);
* ``seed_table``: that, per method and metric (``metric``, ``metric_lo``, ``metric_hi``, ``n_seeds``);
* ``compare``: the paper's method against each alternative: the advantage (positive = the paper's side better), a
  Welch t-interval over seeds (it carries the seed-to-seed noise), a Wilcoxon signed-rank test over the same
  evaluation pairs (seed-averaged; it does not), and the ``verdict`` read from the seed interval;
* ``claims_table``: the rows of a ``results/claims_*.csv`` for a claim tested another way (e.g. a bootstrap over
  images), the verdict filled in by the same rule.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

Better = Literal["min", "max"]
INTERVAL = "95 % t-interval over training seeds (each seed: the mean over the same evaluation pairs)"
PAIRED_TEST = "Wilcoxon signed-rank over evaluation pairs, each pair's value averaged over seeds"
ONE_SEED = "not tested (1 seed)"
COLUMNS = ("claim", "metric", "paper", "ours_method", "ours_baseline", "diff", "lo", "hi", "verdict", "n_seeds",
           "interval")  # claims_table's


def verdict(lo: float, hi: float) -> str:
    """The verdict on a claim from the 95 % CI [lo, hi] of the paper-side advantage (positive = the paper's
    method better): "holds" when it excludes 0 on the paper's side, "fails" when it excludes 0 on the other,
    else "undecided (CI overlaps)" (also when a bound is NaN: no interval)."""
    if lo > hi:
        raise ValueError(f"an interval needs lo <= hi, got [{lo}, {hi}]")
    if lo > 0:
        return "holds"
    if hi < 0:
        return "fails"
    return "undecided (CI overlaps)"


def t_interval(values: "np.ndarray | pd.Series | list[float]") -> tuple[float, float, float]:
    """(mean, lo, hi) of ``values`` (NaN dropped) with the 95 % Student-t interval; NaN bounds below 2 values."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return mean, mean - half, mean + half


def t_bounds(values: "np.ndarray | pd.Series") -> tuple[float, float]:
    """``t_interval``'s (lo, hi), the form seaborn's ``errorbar=`` callable takes."""
    return t_interval(values)[1:]


def seed_table(rows: pd.DataFrame, metrics: list[str], by: str = "variant", seed: str = "train_seed"
               ) -> pd.DataFrame:
    """One row per ``by`` (first-seen order): ``n_seeds`` and per metric its mean over seeds and 95 % t-interval
    (``*_lo``, ``*_hi``), plus ``interval`` naming the method."""
    out = []
    for name, group in rows.groupby(by, sort=False):
        row: dict[str, object] = {by: name, "n_seeds": int(group[seed].nunique())}
        for m in metrics:
            mean, lo, hi = t_interval(group[m])
            row |= {m: mean, f"{m}_lo": lo, f"{m}_hi": hi}
        out.append(row | {"interval": INTERVAL if row["n_seeds"] > 1 else "none (1 seed)"})
    return pd.DataFrame(out)


def welch_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """95 % Welch t-interval of mean(a) - mean(b) (seeds of two methods, trained independently)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # e.g. "source unchanged": no spread, the difference is exact
        d = float(a.mean() - b.mean())
        return d, d
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return float(ci.low), float(ci.high)


def paired_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the per-pair differences a - b (NaN pairs dropped)."""
    d = a - b
    d = d[~np.isnan(d)]
    if d.size == 0 or not np.any(d):
        return math.nan
    return float(stats.wilcoxon(d).pvalue)


def compare(rows: pd.DataFrame, pairs: pd.DataFrame | None, base: str, others: list[str],
            better: dict[str, Better], by: str = "variant", seed: str = "train_seed") -> pd.DataFrame:
    """``base`` (the paper's method) against each of ``others`` on each metric of ``better``.

    rows: one row per (``by``, ``seed``) with the metric means; pairs: per-pair values (columns ``by``, ``seed``,
    ``pair`` and the metrics) or None. Returns one row per (other, metric): both means, ``advantage`` (positive =
    ``base`` better), its 95 % Welch interval over seeds (``lo``, ``hi``), ``p_pairs`` and the ``verdict``.
    """
    out = []
    for other in others:
        for m, direction in better.items():
            sign = 1.0 if direction == "min" else -1.0  # advantage = how much better base is
            a = rows.loc[rows[by] == base, m].to_numpy(float)
            b = rows.loc[rows[by] == other, m].to_numpy(float)
            lo, hi = welch_interval(sign * b, sign * a)
            p = math.nan
            if pairs is not None and m in pairs:
                per = pairs.pivot_table(index="pair", columns=by, values=m, aggfunc="mean")
                p = paired_p(per[base].to_numpy(float), per[other].to_numpy(float)) if other in per else math.nan
            n = min(len(a), len(b))
            out.append({"claim": f"{base} beats {other}", "metric": m, "better": direction, base: a.mean(),
                        "other": other, "other_value": b.mean(), "advantage": sign * (b.mean() - a.mean()),
                        "lo": lo, "hi": hi, "p_pairs": p, "n_seeds": n,
                        "verdict": verdict(lo, hi) if n > 1 else ONE_SEED})
    columns = ["claim", "metric", "better", "base_value", "other", "other_value", "advantage", "lo", "hi", "p_pairs",
               "n_seeds", "verdict"]  # also when there is nothing to compare (e.g. real data: no ground truth)
    return pd.DataFrame([{**r, "base_value": r.pop(base)} for r in out], columns=columns).assign(base=base)


def claims_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per tested claim and metric, the ``verdict`` filled in from each row's lo and hi, columns in
    ``COLUMNS`` order. rows: dicts with every column of ``COLUMNS`` but verdict (``paper`` NaN where the paper
    gives no number; no interval from one seed reads "not tested (1 seed)")."""
    missing = [c for c in COLUMNS if c != "verdict" and any(c not in r for r in rows)]
    if missing:
        raise ValueError(f"claim rows lack {missing}")
    table = pd.DataFrame(rows).assign(verdict=[
        ONE_SEED if r["n_seeds"] < 2 and math.isnan(r["lo"]) else verdict(r["lo"], r["hi"]) for r in rows])
    return table[list(COLUMNS)]
