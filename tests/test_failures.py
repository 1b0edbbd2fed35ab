"""Failure mining (afvae.failures): the failures are exactly the worst pairs, a planted factor is found and
blamed, the bootstrap matches the normal interval, and the flags read the renderer's true factors."""
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from afvae import failures
from afvae.config import get_config
from afvae.data.datasets import training_identities
from afvae.data.synthetic import EXPRESSIONS, HAIR_STYLES
from afvae.quality import edit_set


def _pairs(n: int, seed: int) -> pd.DataFrame:
    """``pair_factors``-like rows with independent random factors, and a base error in [0.05, 0.1)."""
    rng = np.random.default_rng(seed)
    yaw = rng.uniform(-60, 60, n)
    return pd.DataFrame({
        "kind": "yaw", "yaw_source": yaw, "yaw_target": np.clip(yaw + rng.uniform(-30, 30, n), -60, 60),
        "eyes_closed": rng.uniform(0, 1, n), "expression_strength": rng.uniform(0, 1, n),
        "glasses": (rng.uniform(size=n) < 0.2).astype(float), "beard": (rng.uniform(size=n) < 0.2) * 0.7,
        "hair_style": rng.choice(HAIR_STYLES, n), "landmark_shift": rng.uniform(0, 5, n),
        "l1": rng.uniform(0.05, 0.1, n), "rec_l1": rng.uniform(0.03, 0.06, n),
    })


def test_the_failures_are_exactly_the_worst_two_percent():
    error = np.random.default_rng(0).uniform(size=1000)
    failed = failures.failure_mask(error)
    assert failed.sum() == 20 and error[failed].min() > error[~failed].max()
    assert set(np.flatnonzero(failed)) == set(np.argsort(error)[-20:])
    assert failures.failure_mask(np.arange(101.0)).sum() == 3  # ceil(2.02): at least 2 % of the pairs
    assert failures.failure_mask(np.zeros(50)).tolist() == [True] + [False] * 49  # ties: the first pair


def test_a_planted_factor_that_doubles_the_error_is_found_and_blamed():
    pairs = _pairs(2000, seed=1)
    pairs["l1"] *= np.where(pairs.glasses > 0.5, 2.0, 1.0)  # glasses double the error
    table, category = failures.explain(pairs, n_boot=500)
    row = table.set_index("factor").loc["glasses"]
    assert row.lift > 3 and row.rate_failures == 1.0  # the worst 2 % all wear glasses (rate ~0.2 overall)
    assert row.error_with_lo > 1.8 * row.error_without_hi  # the intervals are far apart
    assert (category == "glasses").mean() >= 0.9 and len(category) == 40
    others = table[table.factor != "glasses"]
    assert (others.error_with_lo < others.error_without_hi).sum() >= len(others) - 1  # no effect elsewhere


def test_a_failure_without_an_enriched_factor_is_other():
    flags = pd.DataFrame({"a": [True, False, True, False], "b": [True, True, False, False]})
    failed = np.array([True, True, True, True])
    category = failures.assign(flags, failed, pd.Series({"a": 0.9, "b": 1.5}))
    assert category.tolist() == ["b", "b", failures.OTHER, failures.OTHER]  # "a" has lift <= 1: explains nothing


def test_bootstrap_interval_matches_the_normal_one():
    values = np.random.default_rng(2).normal(1.0, 0.5, 400)
    mean, lo, hi = failures.bootstrap_mean(values, n_boot=4000, seed=0)
    half = 1.96 * values.std() / math.sqrt(len(values))
    assert mean == pytest.approx(values.mean()) and (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    assert lo < mean < hi and all(math.isnan(v) for v in failures.bootstrap_mean(np.array([])))


@pytest.mark.usefixtures("one_thread")
def test_unseen_pairs_carry_the_factors_that_drew_them():
    data = get_config("smoke").data
    faces = failures.unseen_faces(data, 30)
    assert int(faces.identities.min()) == data.n_identities and len(faces) == 30  # outside the population
    edits = edit_set(faces, seed=0, **failures.edit_counts(30))
    assert edits.items.unique().numel() == 30 and edits.kind.count("pose") == 6  # one pair per identity
    fresh = dataclasses.replace(data, train_images=500)
    ids = failures.unseen_faces(fresh, 30).identities.tolist()  # a train split of new identities: past them too
    assert len(ids) == 30 and not set(ids) & set(training_identities(fresh)) and min(ids) >= fresh.n_identities
    pairs = failures.pair_factors(faces, edits)
    pose = edits.mask("pose")
    src, tgt = faces.structure.index(edits.items[pose]), edits.structure_target.index(pose)
    assert torch.equal(src.yaw, tgt.yaw) and torch.equal(src.expression, tgt.expression)
    assert not torch.equal(src.pitch, tgt.pitch)
    app = faces.appearance_of(faces.identity[edits.items])
    flags = failures.factor_flags(pairs)
    assert (flags["glasses"].to_numpy() == (app.glasses[:, 0] == 1).numpy()).all()
    styles = app.hair_style.argmax(1).numpy()
    assert all((flags[f"hair: {s}"].to_numpy() == (styles == k)).all() for k, s in enumerate(HAIR_STYLES))
    eyes = torch.maximum(src.expression[:, EXPRESSIONS.index("eyes_closed")],
                         tgt.expression[:, EXPRESSIONS.index("eyes_closed")]) >= failures.EYES_CLOSED
    assert (flags["eyes closed"][pose.numpy()].to_numpy() == eyes.numpy()).all()
    assert flags["large contour change"].sum() == math.ceil(0.1 * 30)  # the top 10 % of the landmark shifts
