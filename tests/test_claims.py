import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from afvae import claims


def test_verdict_reads_the_interval_of_the_advantage():
    assert claims.verdict(0.01, 0.03) == "holds"
    assert claims.verdict(-0.03, -0.001) == "fails"
    assert claims.verdict(-0.01, 0.02) == "undecided (CI overlaps)"
    assert claims.verdict(0.0, 0.02) == "undecided (CI overlaps)"  # touching zero is not excluding it


def test_t_interval_against_scipy_and_one_value():
    v = np.array([0.051, 0.057, 0.054])
    mean, lo, hi = claims.t_interval(v)
    ref = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert mean == pytest.approx(v.mean()) and (lo, hi) == pytest.approx(ref)
    one = claims.t_interval([0.05, math.nan])
    assert one[0] == 0.05 and math.isnan(one[1]) and math.isnan(one[2])


def _rows(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"variant": v, "train_seed": s, "gt_l1": x, "gt_ssim": 1 - x}
                         for v, xs in values.items() for s, x in enumerate(xs)])


def test_seed_table_and_one_seed_has_no_interval():
    table = claims.seed_table(_rows({"full": [0.05, 0.06, 0.07], "no_kl": [0.08]}), ["gt_l1"]).set_index("variant")
    assert table.loc["full", "n_seeds"] == 3 and table.loc["full", "gt_l1"] == pytest.approx(0.06)
    assert table.loc["full", "gt_l1_lo"] < 0.06 < table.loc["full", "gt_l1_hi"]
    assert math.isnan(table.loc["no_kl", "gt_l1_lo"]) and table.loc["no_kl", "interval"] == "none (1 seed)"


def test_compare_signs_intervals_and_verdicts():
    rows = _rows({"full": [0.050, 0.051, 0.052], "worse": [0.070, 0.071, 0.073], "same": [0.049, 0.053, 0.051]})
    out = claims.compare(rows, None, "full", ["worse", "same"], {"gt_l1": "min", "gt_ssim": "max"})
    by = out.set_index(["other", "metric"])
    # lower gt_l1 and higher gt_ssim are both better: the advantage of full is positive on both
    assert by.loc[("worse", "gt_l1"), "advantage"] == pytest.approx(0.0203, abs=1e-4)
    assert by.loc[("worse", "gt_ssim"), "advantage"] == pytest.approx(0.0203, abs=1e-4)
    assert by.loc[("worse", "gt_l1"), "verdict"] == "holds" and by.loc[("worse", "gt_ssim"), "verdict"] == "holds"
    assert by.loc[("same", "gt_l1"), "verdict"] == "undecided (CI overlaps)"
    ci = stats.ttest_ind([0.070, 0.071, 0.073], [0.050, 0.051, 0.052], equal_var=False).confidence_interval()
    assert (by.loc[("worse", "gt_l1"), "lo"], by.loc[("worse", "gt_l1"), "hi"]) == pytest.approx((ci.low, ci.high))
    flipped = claims.compare(rows, None, "worse", ["full"], {"gt_l1": "min"})
    assert flipped["verdict"].iloc[0] == "fails"
    single = claims.compare(_rows({"full": [0.05], "worse": [0.07]}), None, "full", ["worse"], {"gt_l1": "min"})
    assert single["verdict"].iloc[0] == claims.ONE_SEED and math.isnan(single["lo"].iloc[0])


def test_paired_test_over_pairs():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.03, 0.08, 200)
    pairs = pd.DataFrame({"pair": np.tile(np.arange(200), 2), "variant": ["full"] * 200 + ["worse"] * 200,
                          "train_seed": 0, "gt_l1": np.concatenate([base, base + 0.002])})
    rows = _rows({"full": [0.05, 0.051], "worse": [0.052, 0.053]})
    out = claims.compare(rows, pairs, "full", ["worse"], {"gt_l1": "min"})
    assert out["p_pairs"].iloc[0] < 1e-10  # every pair is worse
    assert math.isnan(claims.paired_p(base, base))  # no difference at all: no test


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
    no_interval = claims.claims_table([{**base, "lo": math.nan, "hi": math.nan}])
    assert no_interval["verdict"].tolist() == [claims.ONE_SEED]  # one seed: not tested, not "undecided"
    with pytest.raises(ValueError, match="lack"):
        claims.claims_table([{k: v for k, v in base.items() if k != "paper"} | {"lo": 0.0, "hi": 1.0}])


def test_compare_with_nothing_to_compare_keeps_its_columns():
    out = claims.compare(_rows({"full": [0.05], "worse": [0.07]}), None, "full", ["worse"], {})
    assert out.empty and {"other", "metric", "verdict", "lo", "hi"} <= set(out.columns)
    assert out.pivot(index="other", columns="metric", values="verdict").reindex(index=["worse"]).shape == (1, 0)
