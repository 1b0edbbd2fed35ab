"""Configuration dataclasses and named presets (smoke / default / compact / long / paper).

Imports nothing from afvae: every other module takes these as plain data.
A config round-trips through JSON (``to_dict`` / ``from_dict``) and hashes to a
short stable key, so trained models can be cached by what produced them. Every section checks its fields
when it is built (``Checked``), so a bad value fails at once, by name, and never deep inside training.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, Callable, Literal

Prior = Literal["additive", "gmm_sampled", "standard"]
Upsample = Literal["pixel_shuffle", "deconv", "deconv_6x6"]  # deconv_6x6: deconv at pixel shuffle's size
Norm = Literal["weight", "batch", "none"]
Decay = Literal["constant", "linear", "cosine"]
FeatureNetName = Literal["auto", "vgg19", "factor", "none"]
# Train fields that do not change the weights (left out of the hash), and those a resume may change.
UNHASHED = ("device", "num_workers", "log_every", "sample_every", "checkpoint_every")
# Fields added after runs and shipped weights were keyed: hashed only when set away from these defaults, so every
# earlier config keeps its hash.
HASHED_WHEN_SET: dict[tuple[str, str], Any] = {("model", "instance_features"): 3, ("loss", "recon"): 0.0,
                                               ("loss", "attention"): 0.1, ("data", "train_images"): 0,
                                               ("model", "d_blur"): False, ("model", "g_instance_norm"): True,
                                               ("loss", "r1"): 0.0, ("loss", "ssim"): 0.0,
                                               ("train", "data_init"): 0, ("model", "z_spatial"): True}
# Nor is ``train.amp``: bf16 and float32 runs of one config are the same training, as a CPU and a GPU run are
# (no difference of the default preset's quality measured over three seeds, README), and amp falls back to
# float32 on a CPU without bf16. It is hashed as False, so every key made before it stands.
PRECISION = "amp"
RESUMABLE = ("steps", "lr")  # run longer; lower the learning rate after a NaN stop

# What a number must be, by field name (any section); every other number must be >= 0. Strings by pattern.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **dict.fromkeys(("size", "n_identities", "images_per_identity", "boundary_channels", "base_width", "max_width",
                     "z_dim", "n_focal", "focal_downsample", "steps", "batch_size", "log_every", "sample_every",
                     "checkpoint_every"), (lambda v: v >= 1, ">= 1")),
    **dict.fromkeys(("focal_temperature", "lr"), (lambda v: v > 0, "> 0")),
    "resolution": (lambda v: v >= 8 and not v & (v - 1), "a power of two >= 8"),  # one stage per factor 2 to 4 px
    **dict.fromkeys(("betas", "warmup", "ema"), (lambda v: 0 <= v < 1, "in [0, 1)")),
}
PATTERNS: dict[str, tuple[str, str]] = {"device": (r"cpu|cuda(:\d+)?|mps", "cpu, cuda, cuda:N or mps")}
AGREE = (("data.size", "model.resolution"), ("data.boundary_channels", "model.boundary_channels"))


class Checked:
    """Base of the config dataclasses: ``validate`` runs when one is built. It reads the annotations, so a field
    added later is checked too: its type, its Literal values, its range (``RULES``)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field (``train.batch_size must be >= 1, got 0``)."""
        section = type(self).__name__.removesuffix("Config").lower()
        for name, hint in _hints(type(self)).items():
            value = getattr(self, name)
            wanted = _wanted(value, hint, name)
            if wanted:
                raise ValueError(f"{section + '.' if section else ''}{name} must be {wanted}, got {value!r}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _wanted(value: Any, hint: Any, name: str) -> str | None:
    """What field ``name`` (annotated ``hint``) must be, when ``value`` is not that; else None."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal:
        return None if value in args else "one of " + ", ".join(map(repr, args))
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, tuple) or len(value) != len(args):
            return f"{len(args)} values"
        return next((w for v, t in zip(value, args) if (w := _wanted(v, t, name))), None)
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is str:
        pattern, says = PATTERNS.get(name, (r"(?s).*", "a string"))
        return None if isinstance(value, str) and re.fullmatch(pattern, value) else says
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, int if hint is int else (int, float)):
            return "an integer" if hint is int else "a number"
        test, says = RULES.get(name, (lambda v: v >= 0, ">= 0"))
        return None if math.isfinite(value) and test(value) else says
    if isinstance(hint, type) and not isinstance(value, hint):
        return f"a {hint.__name__}"
    return None


@dataclass(frozen=True)
class DataConfig(Checked):
    """Which images to train on: the embedded synthetic faces, hands or cats, or a prepared folder."""

    source: str = "synthetic"  # "synthetic" (faces), "synthetic-hands", "synthetic-cats" or a prepared folder's path
    size: int = 64  # image side in pixels (32 | 64 | 128 | 256)
    n_identities: int = 200  # synthetic only: identities (90 % train / 10 % test)
    images_per_identity: int = 40  # synthetic only: structures rendered per identity
    boundary_channels: int = 13  # 13 LAB curves, or 1 for the merged map
    seed: int = 0
    # synthetic only, > 0: the train split is this many images of as many identities, one image each (the
    # population's training identities, then new ones from n_identities up: never a test identity); 0: the
    # population's training identities, images_per_identity each. Evaluation and its nets keep the population.
    train_images: int = 0

    def population(self) -> "DataConfig":
        """These data with the population's own training split (``train_images`` off): what the feature and
        scoring nets are fitted to, so that every training set is scored by the same nets."""
        return dataclasses.replace(self, train_images=0)


@dataclass(frozen=True)
class ModelConfig(Checked):
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
    # Switches beyond the paper, off by default (README: "Deviations from the paper", with measured effects).
    z_film: bool = False  # z also scales and shifts the decoder's features at every scale (FiLM)
    full_res_width: int = 0  # > 0: convs of this width at full resolution, fed the boundary map c as well
    z_spatial: bool = True  # False: z's 4 x 4 map in the decoder is one vector broadcast over space (no layout from z)
    instance_features: int = 3  # pix2pixHD baseline only: its encoder's instance-feature channels (the paper: 3)
    d_blur: bool = False  # GAN baselines only: their discriminators low-pass their input to every stride-2 conv
    g_instance_norm: bool = True  # GAN baselines only: InstanceNorm in their generators (the papers'); off: none


@dataclass(frozen=True)
class LossConfig(Checked):
    """Total = L1 + sum_l lambda_l * feature matching + beta * KL."""

    # KL weight. The KL is summed over z's dimensions while L1 is averaged over pixels, so beta = 1e-5 is
    # the ELBO of a Laplace likelihood with scale ~0.1 on 64-px images; 1e-3 collapses the posterior.
    beta: float = 1e-5
    feature_weight: float = 0.1  # overall weight of the feature-matching term
    feature_net: FeatureNetName = "auto"
    recon: float = 0.0  # GAN baselines only: weight of the generator's self-reconstruction L1 (afvae.baselines)
    attention: float = 0.1  # GANimation baseline only: lambda_A, the weight of its mean attention (the paper: 0.1)
    r1: float = 0.0  # GAN baselines only: gamma of D's R1 penalty on real images, every R1_EVERY-th D step (0: off)
    ssim: float = 0.0  # AF-VAE only, not in the paper: weight of a 1 - SSIM reconstruction term (losses.ssim_loss)


@dataclass(frozen=True)
class TrainConfig(Checked):
    """Optimisation and bookkeeping."""

    steps: int = 3000
    batch_size: int = 32
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's
    warmup: float = 0.0  # fraction of the steps over which the learning rate rises linearly from 0
    decay: Decay = "constant"  # the learning rate after warm-up: constant, or a linear / cosine decay to 0
    ema: float = 0.0  # > 0: evaluate an exponential moving average of the weights with this decay per step
    # > 0: AF-VAE only: set the weight-normalised convs' gains and biases from this many training images before step 0
    # (model.data_init_, Salimans & Kingma's data-dependent initialisation); 0: PyTorch's default initialisation
    data_init: int = 0
    seed: int = 0
    device: str = "cpu"
    amp: bool = False  # bf16 autocast of the forward passes where the device has bf16 in hardware (hardware.autocast)
    channels_last: bool = True
    num_workers: int = 0
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 250


@dataclass(frozen=True)
class Config(Checked):
    """Everything one training run needs."""

    name: str = "afvae"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """``Checked.validate``, and the sections agree (``AGREE``): the model is built for the images."""
        super().validate()
        for a, b in AGREE:
            if attrgetter(a)(self) != attrgetter(b)(self):
                raise ValueError(f"{a} ({attrgetter(a)(self)}) must equal {b} ({attrgetter(b)(self)}); change both")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        parts = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}
        if not isinstance(d, dict):
            raise ValueError(f"a config is a JSON object with sections {sorted(parts)}, got {type(d).__name__}")
        unknown = set(d) - set(parts) - {"name"}
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)}; expected name, {sorted(parts)}")
        bad = [k for k in parts if not isinstance(d.get(k, {}), dict)]
        if bad:
            raise ValueError(f"section {bad[0]} must be an object of fields, got {d[bad[0]]!r}")
        # JSON has no tuples: lists (Adam's betas) come back as the tuples the frozen dataclasses hold
        kwargs: dict[str, Any] = {k: t(**{f: tuple(v) if isinstance(v, list) else v for f, v in d.get(k, {}).items()})
                                  for k, t in parts.items()}
        return cls(name=d.get("name", "afvae"), **kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def hash(self) -> str:
        """Short stable key of everything that changes the trained weights (not device or logging)."""
        return config_hash(self.to_dict())

    def replace(self, **sections: dict[str, Any]) -> "Config":
        """Copy with some fields changed: ``cfg.replace(model={"prior": "standard"})``."""
        new: dict[str, Any] = {}
        for key, changes in sections.items():
            if key == "name":
                new["name"] = changes
                continue
            new[key] = dataclasses.replace(getattr(self, key), **changes)
        return dataclasses.replace(self, **new)


def config_hash(d: dict[str, Any]) -> str:
    """``Config.hash`` of a config's ``to_dict()``; also a key for parts of one (a data section with the other
    sections' defaults keys a feature network), which need not be a valid whole config."""
    train = {k: v for k, v in d["train"].items() if k not in UNHASHED}
    d = {**d, "train": train | ({PRECISION: False} if PRECISION in train else {})}  # see PRECISION
    for (section, key), default in HASHED_WHEN_SET.items():
        if section in d and d[section].get(key, default) == default:
            d = {**d, section: {k: v for k, v in d[section].items() if k != key}}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


# The paper's Table 3 / Fig. 8 variants, each a set of config changes, never a code copy.
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {},
    "no_kl": {"model": {"kl": False}},
    "standard_prior": {"model": {"prior": "standard"}},  # "w/o GMM": vanilla C-VAE N(0, I)
    "gmm_sampled": {"model": {"prior": "gmm_sampled"}},
    "deconv": {"model": {"upsample": "deconv_6x6"}},  # "w/o pixel shuffle", at pixel shuffle's parameter count
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


SHIPPED_SCALE = "long"  # the preset of the reference models in weights/ (afvae.zoo): make paper at it trains nothing
PRESETS: dict[str, Config] = {
    # CI: every notebook in minutes on 2 cores.
    "smoke": _preset(32, 24, 8, (8, 32), 16, 30, 16, log_every=5, sample_every=15, checkpoint_every=15),
    # The CPU reproduction at 64 px, 38.8 TFLOP of training (python -m afvae.bench quality; README "Time to
    # quality"): half the compact preset's widths (16 / 64 channels), so that the same FLOPs buy 73,216 images, each
    # of a new person (data.train_images); batch 16, Adam (0.9, 0.99) warmed up over 10 % of the steps to 3e-3 and
    # decayed linearly to 0; the weight-normalised convs initialised from 256 training images (train.data_init);
    # z modulating every decoder scale (FiLM) and reaching its 4 x 4 as one vector (z_spatial off); a 1 - SSIM
    # reconstruction term (1.0), feature matching at 0.3 and beta 3e-4; the forward passes in bf16 where the CPU
    # has it in hardware (AMX / AVX512-BF16, float32 elsewhere). ``afvae.bench.quality.default_recipe`` derives the
    # same config from the compact preset, one measured change at a time.
    "default": _preset(64, 200, 40, (16, 64), 64, 4576, 16, sample_every=1144, checkpoint_every=458,
                       lr=3e-3, betas=(0.9, 0.99), warmup=0.1, decay="linear", amp=True, data_init=256
                       ).replace(model={"z_film": True, "z_spatial": False},
                                 loss={"ssim": 1.0, "feature_weight": 0.3, "beta": 3e-4},
                                 data={"train_images": 73_216}),
    # The default preset before the SSIM recipe, at the same FLOPs: full widths (32 / 128), 27,200 images of the
    # population's 180 training identities, peak 1.5e-3, no SSIM term. The recipe ladder's steps, the shipped
    # hands and cats (afvae.zoo.SUBJECT_SCALE) and the GAN baselines' widths (afvae.baselines.WIDTH_SCALE) keep it.
    "compact": _preset(64, 200, 40, (32, 128), 64, 1700, 16, sample_every=425, checkpoint_every=170,
                       lr=1.5e-3, betas=(0.9, 0.99), warmup=0.03, decay="linear", amp=True
                       ).replace(model={"z_film": True}),
    # The shipped reference models (afvae.zoo, weights/): the compact recipe over 8x its images (217,600), with
    # an EMA of the weights (decay 0.999) for evaluation; its quality curve is in each model's manifest entry.
    "long": _preset(64, 200, 40, (32, 128), 64, 13_600, 16, sample_every=1700, checkpoint_every=850,
                    lr=1.5e-3, betas=(0.9, 0.99), warmup=0.03, decay="linear", ema=0.999
                    ).replace(model={"z_film": True}),
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
    """A preset name (smoke | default | compact | long | paper) with ``variant``, or a JSON file written by ``Config.to_json`` (a
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
