"""afvae.claims: the verdict rule and the claims table."""
import math

import pytest

from afvae import claims


@pytest.mark.parametrize("lo, hi, expected", [
    (0.01, 0.2, "holds"),  # excludes 0 on the paper's side
    (-0.3, -1e-9, "fails"),  # excludes 0 on the other side
    (-0.1, 0.1, "undecided (CI overlaps)"),
    (0.0, 0.5, "undecided (CI overlaps)"),  # touching 0 is not excluding it
    (-0.5, 0.0, "undecided (CI overlaps)"),
    (math.nan, math.nan, "undecided (CI overlaps)"),  # one seed: no interval
])
def test_verdict(lo, hi, expected):
    assert claims.verdict(lo, hi) == expected


def test_verdict_rejects_a_reversed_interval():
    with pytest.raises(ValueError, match="lo <= hi"):
        claims.verdict(0.2, 0.1)


def test_claims_table_fills_the_verdicts_in_column_order():
    base = {"claim": "c", "metric": "m", "paper": 1.0, "ours_method": 0.1, "ours_baseline": 0.2, "diff": 0.1,
            "n_seeds": 1, "interval": "bootstrap"}
    table = claims.claims_table([{**base, "lo": 0.05, "hi": 0.15}, {**base, "hi": 0.1, "lo": -0.1}])
    assert list(table.columns) == list(claims.COLUMNS)
    assert table["verdict"].tolist() == ["holds", "undecided (CI overlaps)"]
    with pytest.raises(ValueError, match="lack"):
        claims.claims_table([{k: v for k, v in base.items() if k != "paper"} | {"lo": 0.0, "hi": 1.0}])
