"""The held-out scorer: in no method's loss, another architecture, faces no method sees; its accuracy read-outs."""
import pytest
import torch

from afvae.config import get_config
from afvae.data.datasets import build_dataset
from afvae.features import FactorNet, cached_net
from afvae.scorer import HELD_OUT_SEED, MIN_IDENTITIES, ScorerNet, scorer_data, scorer_path
from afvae.scorer_accuracy import accuracy_items, identity_separation


def test_identity_separation_against_closed_forms():
    identity = torch.arange(6).repeat_interleave(3)  # 6 identities x 3 items
    perfect = torch.nn.functional.one_hot(identity, 6).float()  # same: cosine 1, different: 0
    sep = identity_separation(perfect, identity)
    assert sep == {"auc": 1.0, "same": 1.0, "different": 0.0}
    assert identity_separation(-perfect + 1, identity)["auc"] == 1.0  # cosines 1 vs 0.8: still separated
    assert identity_separation(torch.ones(18, 4), identity)["auc"] == 0.5  # all ties: chance
    noise = torch.randn(600, 16, generator=torch.Generator().manual_seed(0))
    assert abs(identity_separation(noise, torch.arange(200).repeat_interleave(3))["auc"] - 0.5) < 0.05


def test_scorer_is_another_architecture_on_another_population():
    data = get_config("smoke").data
    held = scorer_data(data)
    assert held.seed == data.seed + HELD_OUT_SEED and held.size == data.size and held.source == data.source
    assert held.n_identities == MIN_IDENTITIES > data.n_identities  # the smoke preset's 24 people do not generalise
    paper = get_config("paper").data
    assert scorer_data(paper).n_identities == paper.n_identities > MIN_IDENTITIES
    kinds = lambda net: {type(m) for m in net.modules()}  # noqa: E731
    assert torch.nn.BatchNorm2d in kinds(FactorNet(10)) and torch.nn.BatchNorm2d not in kinds(ScorerNet(10))
    assert torch.nn.GroupNorm in kinds(ScorerNet(10)) and torch.nn.GroupNorm not in kinds(FactorNet(10))
    train = build_dataset(data, "train").factors["appearance"].unique(dim=0)  # (n_train_ids, A)
    other = build_dataset(held, "all").factors["appearance"].unique(dim=0)
    assert torch.cdist(other, train).min() > 0.1  # not one identity in common with the training split
    assert scorer_path(data) != scorer_path(get_config("default").data)
    with pytest.raises(ValueError, match="only the synthetic sources"):
        scorer_data(data.__class__(source="some/folder"))


def test_scorer_interface_and_cache_round_trip(tmp_path):
    net = ScorerNet(7).eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    assert net.embed(x).shape == (3, 2 * 192) and net.predict(x).shape == (3, 7)
    assert [f.shape[-1] for f in net(x)] == [16, 8, 4, 2]
    meta = {"mean": torch.zeros(7), "std": torch.ones(7), "steps": 0}
    first, _ = cached_net(tmp_path / "s.pt", lambda: (net, meta), ScorerNet)
    again, meta2 = cached_net(tmp_path / "s.pt", lambda: pytest.fail("retrained a cached net"), ScorerNet)
    assert isinstance(again, ScorerNet) and torch.equal(again.eval().predict(x), first.predict(x))
    assert torch.equal(meta2["mean"], meta["mean"])


def test_accuracy_items_take_whole_identities():
    identity = torch.tensor([3, 3, 1, 1, 1, 2, 2, 0])
    items = accuracy_items(identity, 2, 2)
    assert identity[items].tolist() == [0, 1, 1] and items.tolist() == [7, 2, 3]
