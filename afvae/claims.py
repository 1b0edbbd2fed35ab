"""Verdicts on the paper's claims from 95 % confidence intervals of the paper-side advantage."""
from __future__ import annotations


def verdict(lo: float, hi: float) -> str:
    """"holds" / "fails" / "undecided (CI overlaps)" from the 95 % CI [lo, hi] of the paper-side advantage.

    The advantage is signed so that positive means the paper's method is better: the claim holds when the whole
    interval is above 0, fails when it is wholly below 0, and is undecided when the interval contains 0.
    """
    if lo > hi:
        raise ValueError(f"an interval needs lo <= hi, got [{lo}, {hi}]")
    if lo > 0:
        return "holds"
    if hi < 0:
        return "fails"
    return "undecided (CI overlaps)"
