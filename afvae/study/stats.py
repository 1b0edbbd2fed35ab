"""Table 2 from the answers: Fool Rate with a 95 % interval and TrueSkill ratings per method.

* **Fool Rate** (paper, Table 2): the share of a method's generated images that participants judged real.
  The same share for the real images is reported as the reference row ``real`` (how often real faces are
  recognised as real). Intervals: Wilson score (default) or exact Clopper-Pearson.
* **TrueSkill** (Herbrich et al. 2006, the ``trueskill`` package): every pair trial is a game between two
  methods, won by the one the participant chose, played in the order the answers were recorded; ``mu`` and
  ``sigma`` of each method's rating, and the conservative ``mu - 3 sigma``.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd
import trueskill
from scipy import stats as sps


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n; (nan, nan) when n = 0."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return math.nan, math.nan
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of k / n from Beta quantiles; (nan, nan) when n = 0."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return math.nan, math.nan
    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(sps.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(sps.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


INTERVALS = {"wilson": wilson_interval, "clopper-pearson": clopper_pearson_interval}


def fool_rates(answers: pd.DataFrame, interval: str = "wilson") -> pd.DataFrame:
    """Per ``shown`` method of the fool trials: n, fooled (answered real), fool_rate, fool_low, fool_high."""
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {sorted(INTERVALS)}, got {interval!r}")
    fool = answers[answers["kind"] == "fool"]
    rows = []
    for method, group in fool.groupby("shown", sort=True):
        n, k = len(group), int((group["answer"] == "real").sum())
        low, high = INTERVALS[interval](k, n)
        rows.append({"method": method, "fool_n": n, "fooled": k, "fool_rate": k / n, "fool_low": low,
                     "fool_high": high})
    return pd.DataFrame(rows, columns=["method", "fool_n", "fooled", "fool_rate", "fool_low", "fool_high"])


def trueskill_ratings(games: Iterable[tuple[str, str]], methods: Iterable[str] = ()) -> pd.DataFrame:
    """TrueSkill of each player from (winner, loser) games in order (no draws).

    Returns one row per player: method, games, wins, ts_mu, ts_sigma, ts_conservative (mu - 3 sigma).
    Players in ``methods`` that never played keep the prior (mu 25, sigma 25/3).
    """
    env = trueskill.TrueSkill(draw_probability=0.0)
    ratings = {m: env.create_rating() for m in methods}
    played: dict[str, int] = dict.fromkeys(ratings, 0)
    won: dict[str, int] = dict.fromkeys(ratings, 0)
    for winner, loser in games:
        if winner == loser:
            raise ValueError(f"a game needs two different players, got {winner!r} twice")
        for m in (winner, loser):
            ratings.setdefault(m, env.create_rating())
            played[m] = played.get(m, 0) + 1
        won[winner] = won.get(winner, 0) + 1
        ratings[winner], ratings[loser] = trueskill.rate_1vs1(ratings[winner], ratings[loser], env=env)
    rows = [{"method": m, "games": played.get(m, 0), "wins": won.get(m, 0), "ts_mu": r.mu, "ts_sigma": r.sigma,
             "ts_conservative": r.mu - 3 * r.sigma} for m, r in sorted(ratings.items())]
    return pd.DataFrame(rows, columns=["method", "games", "wins", "ts_mu", "ts_sigma", "ts_conservative"])


def table2(answers: pd.DataFrame, methods: Iterable[str] = (), interval: str = "wilson") -> pd.DataFrame:
    """Table 2: one row per method (and ``real``), fool-rate columns and TrueSkill columns, best TrueSkill first.

    answers: rows of ``afvae.study.answers.COLUMNS``. Methods without answers of a kind get NaN there.
    """
    pairs = answers[answers["kind"] == "pair"]
    ts = trueskill_ratings(zip(pairs["winner"], pairs["loser"]), methods)
    table = fool_rates(answers, interval).merge(ts, on="method", how="outer")
    table["participants"] = table["method"].map(_participants(answers)).fillna(0).astype(int)
    is_real = table["method"] == "real"
    table = pd.concat([table[~is_real].sort_values("ts_mu", ascending=False, na_position="last"), table[is_real]])
    for col in ("fool_n", "fooled", "games", "wins"):
        table[col] = table[col].fillna(0).astype(int)
    return table.reset_index(drop=True)


def _participants(answers: pd.DataFrame) -> dict[str, int]:
    """How many distinct participants judged images of each method (either kind of trial)."""
    fool = answers.loc[answers["kind"] == "fool", ["shown", "participant"]].rename(columns={"shown": "method"})
    pair = answers.loc[answers["kind"] == "pair", ["winner", "loser", "participant"]]
    both = pd.concat([fool, pair.rename(columns={"winner": "method"})[["method", "participant"]],
                      pair.rename(columns={"loser": "method"})[["method", "participant"]]])
    return both.groupby("method")["participant"].nunique().to_dict()


def simulate_answers(quality: dict[str, float], *, n_fool: int, n_pair: int, seed: int = 0,
                     participant: str = "sim") -> pd.DataFrame:
    """Answers of a simulated observer, for tests and demos: a method of quality q in [0, 1] fools it with
    probability q, and wins a comparison against r with probability q / (q + r) (Bradley-Terry).

    n_fool fool trials per method, n_pair pair trials per pair of methods; rows like ``read_answers``.
    """
    rng = np.random.default_rng(seed)
    names = sorted(quality)
    rows = [{"kind": "fool", "shown": m, "answer": "real" if rng.random() < quality[m] else "generated",
             "winner": "", "loser": ""} for m in names for _ in range(n_fool)]
    games = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] for _ in range(n_pair)]
    for j in rng.permutation(len(games)):
        a, b = games[j]
        a_wins = rng.random() < quality[a] / (quality[a] + quality[b])
        rows.append({"kind": "pair", "shown": f"{a}|{b}", "answer": "", "winner": a if a_wins else b,
                     "loser": b if a_wins else a})
    return pd.DataFrame(rows).assign(participant=participant)
