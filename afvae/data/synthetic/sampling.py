"""What every synthetic subject shares about its factors: batched factor dataclasses, the common samplers
(skin tones, muted colours, lights) and the identity split.

Each identity draws its appearance and structures from its own generator, seeded by (seed, identity), and a
seeded tenth of the identities is held out; faces, hands and cats all split this way.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence, TypeVar

import torch
from torch import Tensor

_F = TypeVar("_F", bound="Factors")


class Factors:
    """Batch behaviour of a factor dataclass: every field is a (B, ...) float32 tensor."""

    def tensors(self) -> dict[str, Tensor]:
        """The fields by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def __len__(self) -> int:
        return next(iter(self.tensors().values())).shape[0]

    def index(self: _F, idx: int | slice | Sequence[int] | Tensor) -> _F:
        """The sub-batch ``idx`` (an int keeps a batch of one)."""
        idx = [idx] if isinstance(idx, int) else idx
        return type(self)(**{k: v[idx] for k, v in self.tensors().items()})

    def repeat_interleave(self: _F, n: int) -> _F:
        """Each item repeated ``n`` times in place: (B, ...) -> (B * n, ...)."""
        return type(self)(**{k: v.repeat_interleave(n, dim=0) for k, v in self.tensors().items()})

    @classmethod
    def cat(cls: type[_F], items: Sequence[_F]) -> _F:
        """Concatenate batches."""
        return cls(**{f.name: torch.cat([getattr(i, f.name) for i in items]) for f in dataclasses.fields(cls)})

    def replace(self: _F, **fields: Tensor) -> _F:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **fields)  # type: ignore[type-var]

    def to_vector(self) -> Tensor:
        """(B, F) features: the fields flattened and concatenated in field order."""
        return torch.cat([v.float().reshape(len(self), -1) for v in self.tensors().values()], dim=1)

    def columns(self) -> list[str]:
        """Names of the to_vector() columns: a field's name, or name_k for the k-th value of a wider field."""
        return [n if v[0].numel() == 1 and v.ndim == 1 else f"{n}_{k}"
                for n, v in self.tensors().items() for k in range(v[0].numel())]


def broadcast(appearance: _F, structure: Factors) -> tuple[_F, Factors]:
    """Repeat a batch of one to the other's length."""
    na, ns = len(appearance), len(structure)
    if na == ns:
        return appearance, structure
    if na == 1:
        return appearance.index([0] * ns), structure
    if ns == 1:
        return appearance, structure.index([0] * na)
    raise ValueError(f"appearance and structure batches differ: {na} vs {ns} (one of them may be 1)")


# =========================================================================================================
# Samplers shared by the subjects
# =========================================================================================================

SKIN_TONES = ((0.98, 0.85, 0.76), (0.94, 0.76, 0.63), (0.84, 0.62, 0.47), (0.68, 0.46, 0.32),
              (0.50, 0.33, 0.22), (0.34, 0.22, 0.15))


def uniform(g: torch.Generator, *shape: int) -> Tensor:
    """Uniform [0, 1) of the given shape from g."""
    return torch.rand(*shape, generator=g)


def pick(g: torch.Generator, palette: Sequence[Sequence[float]], n: int, jitter: float) -> Tensor:
    """n random palette colours with Gaussian jitter, (n, 3) in [0, 1]."""
    idx = torch.randint(len(palette), (n,), generator=g)
    return (torch.tensor(palette)[idx] + jitter * torch.randn(n, 3, generator=g)).clamp(0, 1)


def skin_tone(g: torch.Generator, n: int) -> Tensor:
    """Skin albedo along the tone palette (piecewise linear) with jitter, (n, 3)."""
    tones = torch.tensor(SKIN_TONES)
    pos = uniform(g, n) * (len(tones) - 1)
    lo = pos.floor().long().clamp(max=len(tones) - 2)
    frac = (pos - lo)[:, None]
    return (tones[lo] * (1 - frac) + tones[lo + 1] * frac + 0.02 * torch.randn(n, 3, generator=g)).clamp(0, 1)


def muted(g: torch.Generator, n: int) -> Tensor:
    """Random colours pulled half-way to their grey, (n, 3)."""
    c = uniform(g, n, 3)
    return 0.15 + 0.75 * (0.5 * c + 0.5 * c.mean(1, keepdim=True))


def sample_light(g: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    """Light direction (n, 3) from azimuth in [-70, 70] and elevation in [-15, 55] degrees; (intensity, ambient)."""
    az, el = torch.deg2rad(140 * uniform(g, n) - 70), torch.deg2rad(70 * uniform(g, n) - 15)
    direction = torch.stack([az.sin() * el.cos(), el.sin(), az.cos() * el.cos()], 1)
    return direction, torch.stack([0.55 + 0.4 * uniform(g, n), 0.28 + 0.17 * uniform(g, n)], 1)


def background_noise(g: torch.Generator, n: int) -> Tensor:
    """(n, 16) brightness offsets of a 4 x 4 background grid, at a random strength per image."""
    return torch.randn(n, 16, generator=g) * 0.12 * uniform(g, n, 1)


def sample_scene(g: torch.Generator, n: int) -> dict[str, Tensor]:
    """The appearance fields every subject shares: background (bg_top, bg_bottom (n, 3), bg_noise (n, 16)) and
    light (light_dir (n, 3), light (n, 2))."""
    light_dir, light = sample_light(g, n)
    return {"bg_top": muted(g, n), "bg_bottom": muted(g, n), "bg_noise": background_noise(g, n),
            "light_dir": light_dir, "light": light}


# =========================================================================================================
# Identities: one generator each, and the held-out split
# =========================================================================================================

TEST_FRACTION = 0.1


def identity_generator(seed: int, identity: int) -> torch.Generator:
    """The generator of one identity: its appearance and structures depend only on (seed, identity).

    torch's CPU generator keeps only the low 32 bits of its seed, so (seed, identity) is mixed into 32 bits
    (seed 0 gives identity i the seed i).
    """
    return torch.Generator().manual_seed((seed * 0x9E3779B1 + identity) % 2**32)


def held_out_identities(n_identities: int, seed: int) -> Tensor:
    """(n,) bool, True for the held-out identities: round(TEST_FRACTION * n) of them, chosen by seed."""
    n_test = round(TEST_FRACTION * n_identities)
    order = torch.randperm(n_identities, generator=torch.Generator().manual_seed(seed))
    test = torch.zeros(n_identities, dtype=torch.bool)
    test[order[:n_test]] = True
    return test


_A = TypeVar("_A", bound=Factors)
_S = TypeVar("_S", bound=Factors)


def identities_of(sample_appearance: Callable[[int, torch.Generator], _A],
                  sample_structure: Callable[[int, torch.Generator], _S], identities: Sequence[int] | Tensor,
                  images_per_identity: int, seed: int) -> tuple[_A, _S]:
    """Appearance of each identity (n) and its images' structures (n * images_per_identity, identity-major),
    each identity drawn from its own generator: its appearance first, then its structures."""
    apps, structs = [], []
    for i in [int(i) for i in identities]:
        g = identity_generator(seed, i)
        apps.append(sample_appearance(1, g))
        structs.append(sample_structure(images_per_identity, g))
    return type(apps[0]).cat(apps), type(structs[0]).cat(structs)
