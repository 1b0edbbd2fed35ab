"""The paper's claims as tests: a verdict read from the 95 % interval of the paper's advantage, and the table of
claims a notebook writes (``results/claims_*.csv``).

The advantage is oriented so that positive means the paper's method does better (lower error, closer to the real
images, ...), whatever the metric's own direction.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

COLUMNS = ("claim", "metric", "paper", "ours_method", "ours_baseline", "diff", "lo", "hi", "verdict", "n_seeds",
           "interval")


def verdict(lo: float, hi: float) -> str:
    """The verdict on a claim from the 95 % interval [lo, hi] of the advantage of the paper's method (positive =
    the paper's side better): "holds" when the interval excludes 0 on the paper's side, "fails" when it excludes 0
    on the other side, else "undecided (CI overlaps)" (also when a bound is NaN: no interval)."""
    if lo > hi:
        raise ValueError(f"an interval needs lo <= hi, got [{lo}, {hi}]")
    if lo > 0:
        return "holds"
    if hi < 0:
        return "fails"
    return "undecided (CI overlaps)"


def claims_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per tested claim and metric, the ``verdict`` filled in from each row's lo and hi, columns in
    ``COLUMNS`` order. rows: dicts with every column of ``COLUMNS`` but verdict (``paper`` NaN where the paper
    gives no number)."""
    missing = [c for c in COLUMNS if c != "verdict" and any(c not in r for r in rows)]
    if missing:
        raise ValueError(f"claim rows lack {missing}")
    table = pd.DataFrame(rows).assign(verdict=[verdict(r["lo"], r["hi"]) for r in rows])
    return table[list(COLUMNS)]
