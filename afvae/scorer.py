"""The held-out scorer: identity, landmarks and the FID stand-ins read by a net that is in no method's loss.

The factor net (``afvae.features``) is AF-VAE's feature-matching loss and pix2pixHD's perceptual loss, so it
cannot also be the judge: the models trained against it learn what it reads. The scorer here shares nothing
with it but the task. It is

* another architecture: residual blocks with GroupNorm and SiLU, a 5 x 5 stem at full resolution, average and
  max pooling, an MLP head (the factor net: plain conv pairs with BatchNorm and ReLU, a linear head);
* trained on other faces: the same subject rendered from another data seed (``HELD_OUT_SEED``), so every one
  of its identities is new to every method, and all of that population's identities (train and test);
* with another training seed. Like the landmark net it also sees images holding no face (their landmark target
  is every point at the centre), so a blank output reads as far from any face, not as the mean face.

It predicts the same targets as the factor net (``afvae.features.factor_targets``: landmarks / size, then the
synthetic appearance and structure factors), so every read-out of ``afvae.evaluate`` (landmarks, the identity
cosine of the appearance columns, the expression classifier) works on it unchanged. Trained once per data config
and cached in ``results/cache/scorer_net-HASH.pt`` (``afvae.features.cached_net``), HASH keying the data config
and the recipe.

How well it reads true renders, beside the factor net and dlib: ``afvae.scorer_accuracy``.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from afvae.config import DataConfig
from afvae.features import NO_FACE_FRACTION, FeatureNet, cached_net, factor_targets, frozen, no_face_images

log = logging.getLogger(__name__)
NAME = "heldout"  # the scorer's name in tables: heldout_fd, heldout_kid, heldout_is
HELD_OUT_SEED = 7919  # data.seed + this renders the scorer's faces: a population no method trains or tests on
RECIPE = {"widths": (24, 48, 96, 192), "steps": 1800, "smoke_steps": 400, "batch_size": 64, "lr": 2e-3, "seed": 1,
          "images_per_identity": 40}
MIN_IDENTITIES = 200  # the scorer learns from at least this many people (the default preset's number)


class ResBlock(nn.Module):
    """Pre-activation-free residual block, stride 2: (B, a, H, W) -> (B, b, H/2, W/2)."""

    def __init__(self, a: int, b: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(a, b, 3, 2, 1, bias=False), nn.GroupNorm(8, b), nn.SiLU(),
                                  nn.Conv2d(b, b, 3, 1, 1, bias=False), nn.GroupNorm(8, b))
        self.skip = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(a, b, 1, bias=False))

    def forward(self, h: Tensor) -> Tensor:
        return F.silu(self.body(h) + self.skip(h))


class ScorerNet(nn.Module):
    """Residual GroupNorm net: image -> pooled embedding -> factor predictions (FactorNet's interface)."""

    def __init__(self, n_targets: int, widths: Sequence[int] = RECIPE["widths"]):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 5, 1, 2, bias=False), nn.GroupNorm(8, widths[0]), nn.SiLU())
        self.stages = nn.ModuleList(ResBlock(a, b) for a, b in zip([widths[0], *widths[:-1]], widths))
        self.head = nn.Sequential(nn.Linear(2 * widths[-1], 256), nn.SiLU(), nn.Linear(256, n_targets))

    def forward(self, x: Tensor) -> list[Tensor]:
        """x: (B, 3, H, W) in [-1, 1] -> one feature map per stage, (B, C_i, H / 2^(i+1), W / 2^(i+1))."""
        feats, h = [], self.stem(x)
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats

    def embed(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, 2 C) average- and max-pooled last-stage features (for Frechet distances)."""
        h = self.forward(x)[-1]
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)

    def predict(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, n_targets) standardised factor predictions."""
        return self.head(self.embed(x))


def scorer_data(data: DataConfig) -> DataConfig:
    """The faces the scorer learns from: ``data``'s subject and size rendered from another seed, at least
    ``MIN_IDENTITIES`` people (the smoke preset's 24 teach landmarks that do not carry to new faces)."""
    from afvae.data.datasets import SYNTHETIC

    if data.source not in SYNTHETIC:
        raise ValueError(f"data {data.source!r}: the held-out scorer renders faces of another seed, which only the "
                         f"synthetic sources ({', '.join(SYNTHETIC)}) can do")
    return dataclasses.replace(data.population(), seed=data.seed + HELD_OUT_SEED,
                               images_per_identity=RECIPE["images_per_identity"],
                               n_identities=max(data.n_identities, MIN_IDENTITIES))


def recipe(data: DataConfig) -> dict[str, Any]:
    """``RECIPE`` as it applies to ``data``: ``steps`` is ``smoke_steps`` at 32 px and below."""
    steps = RECIPE["smoke_steps"] if data.size <= 32 else RECIPE["steps"]
    return {k: v for k, v in RECIPE.items() if k != "smoke_steps"} | {"steps": steps}


def scorer_path(data: DataConfig, root: str | Path = "results/cache") -> Path:
    """Cache file of the scorer of ``data``: keyed by its training data and ``recipe(data)``."""
    from afvae.config import Config, config_hash

    key = config_hash({**Config().to_dict(), "data": dataclasses.asdict(scorer_data(data)), "recipe": recipe(data)})
    return Path(root) / f"scorer_net-{key}.pt"


def train_scorer(data: DataConfig, *, steps: int | None = None, progress: bool = True
                 ) -> tuple[ScorerNet, dict[str, Any]]:
    """Fit a ScorerNet on every identity of ``scorer_data(data)``; returns it with the target statistics."""
    from afvae.data.datasets import build_dataset, collate

    held = build_dataset(scorer_data(data), "all")
    steps = steps or recipe(data)["steps"]
    bs, g = RECIPE["batch_size"], torch.Generator().manual_seed(RECIPE["seed"])
    torch.manual_seed(RECIPE["seed"])
    keys = ["x", "landmarks", "appearance", "structure"]
    all_t = factor_targets(collate(held, torch.arange(len(held)), keys[1:]), data.size)  # (N, T)
    mean, std = all_t.mean(0), all_t.std(0).clamp_min(1e-6)
    L = 2 * held.schema.n_points
    centre = ((data.size - 1) / 2 / data.size - mean[:L]) / std[:L]  # (L,) the no-face landmark target
    net, k = ScorerNet(all_t.shape[1]), round(NO_FACE_FRACTION * bs)
    opt = torch.optim.AdamW(net.parameters(), lr=RECIPE["lr"], weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=RECIPE["lr"], total_steps=steps)
    for _ in tqdm(range(steps), desc="held-out scorer", disable=not progress):
        b = collate(held, torch.randint(len(held), (bs,), generator=g), keys)
        target = (factor_targets(b, data.size) - mean) / std  # (bs, T)
        pred = net.predict(torch.cat([no_face_images(b["x"][:k], g), b["x"][k:]]))
        loss = F.mse_loss(pred[:k, :L], centre.expand(k, -1)) * k / bs + F.mse_loss(pred[k:], target[k:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net, {"mean": mean, "std": std, "steps": steps, "data_seed": scorer_data(data).seed,
                 "n_images": len(held), "no_face_fraction": NO_FACE_FRACTION}


def load_scorer(data: DataConfig, root: str | Path = "results/cache", progress: bool = True) -> FeatureNet:
    """The cached held-out scorer of ``data`` (``train_scorer``), trained and cached on first use."""
    net, meta = cached_net(scorer_path(data, root), lambda: train_scorer(data, progress=progress), ScorerNet)
    return FeatureNet(NAME, frozen(net), [1.0] * len(RECIPE["widths"]), meta)
