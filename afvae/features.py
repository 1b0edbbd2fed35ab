"""Feature networks psi_l for the feature-matching loss (AF-VAE Sec. 3, following CRN).

* ``vgg19``: torchvision's ImageNet VGG-19, layers conv1_2 ... conv5_2 with CRN's weights. Used when its
  weights file can be found (a local path, ``$AFVAE_VGG19_WEIGHTS``, or the torch hub cache).
* ``factor``: the fallback, a small conv net the project trains on its own data to predict the known
  generative factors (synthetic appearance and structure, and the landmarks) — the way FID on MNIST uses
  a LeNet trained on MNIST. Trained once per dataset and cached. Never random weights.
The name of the network used goes into every config and result.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from afvae.atomic import atomic_path
from afvae.config import DataConfig
from afvae.weights import resolve_weights, weights_available
from afvae.weights_manifest import install_net

log = logging.getLogger(__name__)
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_ENV = "AFVAE_VGG19_WEIGHTS"
CRN_LAYERS = {2: 1 / 2.6, 7: 1 / 4.8, 12: 1 / 3.7, 21: 1 / 5.6, 30: 10 / 1.5}  # relu1_2 ... relu5_2: lambda_l
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class FeatureNet:
    """A frozen network returning a list of feature maps, with its name and layer weights lambda_l."""

    name: str
    net: nn.Module
    weights: Sequence[float]
    meta: dict[str, Any] = field(default_factory=dict)

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) in [-1, 1] -> features [(B, C_l, H_l, W_l)]."""
        return self.net(x)


class VGGFeatures(nn.Module):
    """VGG-19 trunk returning the CRN layers' activations."""

    def __init__(self, vgg_features: nn.Sequential):
        super().__init__()
        self.body = vgg_features[: max(CRN_LAYERS) + 1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, out = ((x + 1) / 2 - self.mean) / self.std, []
        for i, layer in enumerate(self.body):
            h = layer(h)
            if i in CRN_LAYERS:
                out.append(h)
        return out


def load_vgg19(path: str | Path | None = None, download: bool = True) -> FeatureNet:
    """ImageNet VGG-19 from ``path`` / ``$AFVAE_VGG19_WEIGHTS`` / the hub cache / torchvision's URL."""
    from torchvision.models import VGG19_Weights, vgg19

    file = resolve_weights(VGG19_FILE, env=VGG19_ENV, path=path, url=VGG19_Weights.IMAGENET1K_V1.url,
                           download=download)
    net = vgg19()
    net.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    return FeatureNet("vgg19", frozen(VGGFeatures(net.features)), list(CRN_LAYERS.values()), {"file": str(file)})


class FactorNet(nn.Module):
    """Small conv net: image -> feature pyramid -> regression of the known factors."""

    def __init__(self, n_targets: int, widths: Sequence[int] = (24, 48, 96, 192)):
        super().__init__()
        chans = [3, *widths]
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(),
                          nn.Conv2d(b, b, 3, 1, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
            for a, b in zip(chans[:-1], chans[1:])
        )
        self.head = nn.Linear(widths[-1], n_targets)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) in [-1, 1] -> one feature map per stage."""
        feats, h = [], x
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C) globally pooled last-stage features (for Frechet distances)."""
        return self.forward(x)[-1].mean(dim=(2, 3))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, n_targets) standardised factor predictions."""
        return self.head(self.embed(x))


def factor_targets(batch: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """What the factor net learns to predict: landmarks / size, plus synthetic factors when present."""
    parts = [batch["landmarks"].flatten(1) / size]
    parts += [batch[k].float() for k in ("appearance", "structure") if k in batch]
    return torch.cat(parts, dim=1)


def frozen(net: nn.Module) -> nn.Module:
    """``net`` in eval mode with every parameter's gradient off (the same module, returned)."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def net_path(kind: str, data: DataConfig, root: str | Path = "results/cache") -> Path:
    """Cache file of a ``kind`` net fitted to ``data``'s population (``DataConfig.population``)."""
    from afvae.config import Config, config_hash

    key = config_hash({**Config().to_dict(), "data": asdict(data.population())})  # the data, other fields default
    return Path(root) / f"{kind}-{key}.pt"


def factor_net_path(data: DataConfig, root: str | Path = "results/cache") -> Path:
    return net_path("factor_net", data, root)


def train_factor_net(data: DataConfig, *, steps: int | None = None, batch_size: int = 64, seed: int = 0,
                     progress: bool = True) -> tuple[FactorNet, dict[str, Any]]:
    """Fit a FactorNet on the training split of ``data``; returns it with target statistics and scores."""
    from afvae.data.datasets import build_dataset, collate

    train_set, test_set = build_dataset(data, "train"), build_dataset(data, "test")
    steps = steps or (150 if data.size <= 32 else 800)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    keys = ["x", "landmarks", "appearance", "structure"]  # no boundary maps: the factor net never sees them
    all_t = factor_targets(collate(train_set, torch.arange(len(train_set)), keys[1:]), data.size)
    mean, std = all_t.mean(0), all_t.std(0).clamp_min(1e-6)
    net = FactorNet(all_t.shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    for _ in tqdm(range(steps), desc="factor net", disable=not progress):
        b = collate(train_set, torch.randint(len(train_set), (batch_size,), generator=g), keys)
        loss = F.mse_loss(net.predict(b["x"]), (factor_targets(b, data.size) - mean) / std)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    tb = collate(test_set, torch.arange(min(len(test_set), 512)), keys)
    with torch.no_grad():
        err = ((net.predict(tb["x"]) - (factor_targets(tb, data.size) - mean) / std) ** 2).mean(0)
    r2 = float((1 - err).mean())  # targets are standardised, so 1 - MSE is R^2 per target
    return net, {"mean": mean, "std": std, "test_r2": r2, "steps": steps}


def load_factor_net(data: DataConfig, root: str | Path = "results/cache", progress: bool = True) -> FeatureNet:
    """The cached factor net for ``data``, training (and caching) it on first use."""
    data = data.population()
    net, meta = cached_net(factor_net_path(data, root), lambda: train_factor_net(data, progress=progress))
    return FeatureNet("factor", frozen(net), [1.0, 1.0, 1.0, 1.0], meta)


def cached_net(path: Path, train: Callable[[], tuple[nn.Module, dict[str, Any]]],
               build: Callable[[int], nn.Module] = FactorNet) -> tuple[nn.Module, dict[str, Any]]:
    """A net and its meta from ``path``, or ``train()``-ed and saved there first. ``build(n_targets)`` makes the
    empty net a saved state loads into (its meta's ``mean`` has one entry per target). A net that ``weights/``
    ships (``afvae.weights_manifest.install_net``) is copied into the cache instead of trained."""
    if path.exists() or install_net(path):
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = build(state["mean"].numel())
        net.load_state_dict(state["model"])
        return net, {k: v for k, v in state.items() if k != "model"}
    net, meta = train()
    with atomic_path(path) as tmp:
        torch.save({"model": net.state_dict(), **meta}, tmp)
    log.info("%s trained (%d steps), cached", path.name, meta["steps"])
    return net, meta


# ----------------------------------------------------------------------------------------------------------
# The landmark net: the evaluation's landmark detector, which also knows what a non-face is

NO_FACE_FRACTION = 0.25  # share of each landmark-net batch replaced by images holding no face


def no_face_images(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images holding no face, made from faces x (B, 3, H, W) in [-1, 1]: constant colours, uniform noise and
    the faces' own pixels shuffled (same colours, no structure), in turn -> (B, 3, H, W)."""
    B, C, H, W = x.shape
    kind = torch.arange(B) % 3
    colour = torch.rand(B, C, 1, 1, generator=generator) * 2 - 1
    noise = torch.rand(B, C, H, W, generator=generator) * 2 - 1
    order = torch.argsort(torch.rand(B, H * W, generator=generator), dim=1)  # (B, H*W) a permutation per image
    shuffled = torch.gather(x.flatten(2), 2, order[:, None].expand(B, C, H * W)).view(B, C, H, W)
    out = torch.where((kind == 0).view(B, 1, 1, 1), colour.expand(B, C, H, W), noise)
    return torch.where((kind == 2).view(B, 1, 1, 1), shuffled, out)


def landmark_net_path(data: DataConfig, root: str | Path = "results/cache") -> Path:
    return net_path("landmark_net", data, root)


def train_landmark_net(data: DataConfig, *, steps: int | None = None, batch_size: int = 64, seed: int = 0,
                       progress: bool = True) -> tuple[FactorNet, dict[str, Any]]:
    """A FactorNet regressing the landmarks (/ size, standardised) of the training split of ``data``; images
    holding no face (``no_face_images``) are taught the collapsed shape, every point at the image centre,
    so a blank output is read as far from any face instead of as the mean face."""
    from afvae.data.datasets import build_dataset, collate

    train_set = build_dataset(data, "train")
    steps = steps or (300 if data.size <= 32 else 800)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    marks = train_set.landmarks.flatten(1) / data.size  # (N, 2P)
    mean, std = marks.mean(0), marks.std(0).clamp_min(1e-6)
    centre = ((data.size - 1) / 2 / data.size - mean) / std  # (2P,) the no-face target, standardised
    net = FactorNet(marks.shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    k = round(NO_FACE_FRACTION * batch_size)
    for _ in tqdm(range(steps), desc="landmark net", disable=not progress):
        b = collate(train_set, torch.randint(len(train_set), (batch_size,), generator=g), ["x", "landmarks"])
        x = torch.cat([no_face_images(b["x"][:k], g), b["x"][k:]])
        target = torch.cat([centre.expand(k, -1), (b["landmarks"][k:].flatten(1) / data.size - mean) / std])
        loss = F.mse_loss(net.predict(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net, {"mean": mean, "std": std, "steps": steps, "no_face_fraction": NO_FACE_FRACTION}


def load_landmark_net(data: DataConfig, root: str | Path = "results/cache", progress: bool = True) -> FeatureNet:
    """The cached landmark net for ``data`` (``train_landmark_net``), trained and cached on first use."""
    data = data.population()
    net, meta = cached_net(landmark_net_path(data, root), lambda: train_landmark_net(data, progress=progress))
    return FeatureNet("landmark", frozen(net), [1.0, 1.0, 1.0, 1.0], meta)


def build_feature_net(kind: str, data: DataConfig, device: torch.device | str = "cpu",
                      progress: bool = True, cache_root: str | Path = "results/cache") -> FeatureNet | None:
    """``"auto"`` takes VGG-19 when its weights are on disk, else the factor net; ``"none"`` -> None."""
    if kind == "none":
        return None
    if kind == "auto":
        kind = "vgg19" if weights_available(VGG19_FILE, env=VGG19_ENV) else "factor"
    if kind == "vgg19":
        fn = load_vgg19()
    elif kind == "factor":
        fn = load_factor_net(data, cache_root, progress=progress)
    else:
        raise ValueError(f"unknown feature net {kind!r}; expected 'auto', 'vgg19', 'factor' or 'none'")
    fn.net.to(device)
    return fn
