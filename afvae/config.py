"""Configuration dataclasses and named presets (smoke / default / paper).

Imports nothing from afvae: every other module takes these as plain data.
A config round-trips through JSON (``to_dict`` / ``from_dict``) and hashes to a
short stable key, so trained models can be cached by what produced them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Prior = Literal["additive", "gmm_sampled", "standard"]
Upsample = Literal["pixel_shuffle", "deconv"]
Norm = Literal["weight", "batch", "none"]


@dataclass(frozen=True)
class DataConfig:
    """Which images to train on: the embedded synthetic faces or a prepared folder."""

    source: str = "synthetic"  # "synthetic" or a path to a prepared folder
    size: int = 64  # image side in pixels (32 | 64 | 128 | 256)
    n_identities: int = 200  # synthetic only: identities (90 % train / 10 % test)
    images_per_identity: int = 40  # synthetic only: structures rendered per identity
    boundary_channels: int = 13  # 13 LAB curves, or 1 for the merged map
    seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """AF-VAE architecture and the paper's ablation switches (Table 3, Fig. 8)."""

    resolution: int = 64  # depth follows resolution: one down/up stage per factor 2 to 4 px
    base_width: int = 32  # channels at full resolution, doubled per stage
    max_width: int = 128
    z_dim: int = 64  # appearance code z
    boundary_channels: int = 13
    n_focal: int = 8  # K focal points
    prior: Prior = "additive"
    kl: bool = True
    upsample: Upsample = "pixel_shuffle"
    norm: Norm = "weight"
    focal_downsample: int = 16  # side d of the pooled boundary map the focal points live on (C * d * d features)
    focal_temperature: float = 0.1  # T of the focal weights softmax(cos / T)


@dataclass(frozen=True)
class LossConfig:
    """Total = L1 + sum_l lambda_l * feature matching + beta * KL."""

    # KL weight. The KL is summed over z's dimensions while L1 is averaged over pixels, so beta = 1e-5 is
    # the ELBO of a Laplace likelihood with scale ~0.1 on 64-px images; 1e-3 collapses the posterior.
    beta: float = 1e-5
    feature_weight: float = 0.1  # overall weight of the feature-matching term
    feature_net: str = "auto"  # "auto" | "vgg19" | "factor" | "none"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping."""

    steps: int = 3000
    batch_size: int = 32
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's
    seed: int = 0
    device: str = "cpu"
    amp: bool = False  # bf16 autocast on CUDA
    channels_last: bool = True
    num_workers: int = 0
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 250


@dataclass(frozen=True)
class Config:
    """Everything one training run needs."""

    name: str = "afvae"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        parts = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}
        unknown = set(d) - set(parts) - {"name"}
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)}; expected name, {sorted(parts)}")
        # JSON has no tuples: lists (Adam's betas) come back as the tuples the frozen dataclasses hold
        kwargs: dict[str, Any] = {k: t(**{f: tuple(v) if isinstance(v, list) else v for f, v in d.get(k, {}).items()})
                                  for k, t in parts.items()}
        return cls(name=d.get("name", "afvae"), **kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def hash(self) -> str:
        """Short stable key of everything that changes the trained weights (not device or logging)."""
        d = self.to_dict()
        for k in ("device", "num_workers", "log_every", "sample_every", "checkpoint_every"):
            d["train"].pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def replace(self, **sections: dict[str, Any]) -> "Config":
        """Copy with some fields changed: ``cfg.replace(model={"prior": "standard"})``."""
        new: dict[str, Any] = {}
        for key, changes in sections.items():
            if key == "name":
                new["name"] = changes
                continue
            new[key] = dataclasses.replace(getattr(self, key), **changes)
        return dataclasses.replace(self, **new)


# The paper's Table 3 / Fig. 8 variants, each a set of config changes, never a code copy.
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {},
    "no_kl": {"model": {"kl": False}},
    "standard_prior": {"model": {"prior": "standard"}},  # "w/o GMM": vanilla C-VAE N(0, I)
    "gmm_sampled": {"model": {"prior": "gmm_sampled"}},
    "deconv": {"model": {"upsample": "deconv"}},  # "w/o pixel shuffle"
    "batchnorm": {"model": {"norm": "batch"}},  # "w/o WN, with BN"
    "no_norm": {"model": {"norm": "none"}},
}


def _preset(size: int, n_id: int, per_id: int, width: tuple[int, int], z: int, steps: int, batch: int,
            **train: Any) -> Config:
    return Config(
        data=DataConfig(size=size, n_identities=n_id, images_per_identity=per_id),
        model=ModelConfig(resolution=size, base_width=width[0], max_width=width[1], z_dim=z),
        train=TrainConfig(steps=steps, batch_size=batch, **train),
    )


PRESETS: dict[str, Config] = {
    # CI: every notebook in minutes on 2 cores.
    "smoke": _preset(32, 24, 8, (8, 32), 16, 30, 16, log_every=5, sample_every=15, checkpoint_every=15),
    # The CPU reproduction at 64 px.
    "default": _preset(64, 200, 40, (32, 128), 64, 900, 32, sample_every=300, checkpoint_every=150),
    # The paper's scale: 256 px, meant for a GPU and real data.
    "paper": _preset(256, 2000, 50, (64, 512), 128, 100_000, 32, device="cuda", amp=True, lr=1e-4),
}


# The tutorial's C-VAE sizes (afvae.tutorial.tiny_config, changes to the smoke preset): "smoke" is the CI
# preset as it is; "default" is 32 px, small enough that four models train in about 2 minutes on a 2-core CPU.
# No feature network: the tutorial is about the prior and the KL.
TUTORIAL_SIZES: dict[str, dict[str, dict]] = {
    "smoke": {"train": {"steps": 30, "lr": 1e-3}},
    "default": {
        "data": {"size": 32, "n_identities": 60, "images_per_identity": 16},
        "model": {"resolution": 32, "base_width": 16, "max_width": 64, "z_dim": 16},
        "train": {"steps": 500, "batch_size": 32, "lr": 1e-3},
    },
}


def get_config(scale: str = "default", variant: str = "full") -> Config:
    """Preset ``scale`` with the ablation ``variant`` applied."""
    if scale not in PRESETS:
        raise ValueError(f"unknown scale {scale!r}; choose one of {sorted(PRESETS)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return PRESETS[scale].replace(name=variant, **VARIANTS[variant])


def load_config(spec: str, variant: str = "full") -> Config:
    """A preset name (smoke | default | paper) with ``variant``, or a JSON file written by ``Config.to_json`` (a
    run's config.json; ``variant`` other than "full" is then applied on top)."""
    if spec in PRESETS:
        return get_config(spec, variant)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"config {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file")
    try:
        cfg = Config.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a valid afvae config ({e})") from e
    return cfg.replace(name=variant, **VARIANTS[variant]) if variant != "full" else cfg
