"""A study set on disk and the trials it defines; the order each participant sees them in.

A study folder ``results/study/NAME/`` holds ``images/source/``, ``images/target/`` and ``images/real/`` (one
PNG per manipulation pair ``0000.png ...``: the source face, the target face whose structure is transferred,
and a real test image of the same content) and one folder per method, ``images/METHOD/0000.png ...``, holding
that method's output for each pair. A method is just a folder of images named like the pairs, so images made
elsewhere (a GAN baseline, say) drop in beside the AF-VAE variants; ``build_trials`` then lists:

* **fool** trials: one image, real or generated? — every method's output and every real image;
* **pair** trials: the same source and target, two methods' outputs side by side, which is better?

Trial ids are short hashes of what a trial shows, so rebuilding ``trials.json`` after adding a method keeps
every earlier answer valid, and the page never learns which method made an image.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afvae.atomic import write_text

RESERVED = ("source", "target", "real")  # image folders that are not methods
REAL = "real"


class StudyNotFound(FileNotFoundError):
    """The study folder or its trials are missing: says which command makes them."""


def trial_id(kind: str, methods: tuple[str, ...], pair: str) -> str:
    """A stable, opaque id of a trial (10 hex digits)."""
    return hashlib.sha1(f"{kind}:{':'.join(methods)}:{pair}".encode()).hexdigest()[:10]


def pair_names(folder: Path) -> list[str]:
    """Stems of the PNGs of ``folder``, sorted."""
    return sorted(p.stem for p in folder.glob("*.png"))


def discover_methods(study_dir: str | Path) -> tuple[list[str], list[str]]:
    """(methods, pairs) of a study folder; every method folder must hold an image for every pair."""
    images = Path(study_dir) / "images"
    for r in RESERVED:
        if not (images / r).is_dir():
            raise StudyNotFound(f"{images / r} is missing: run `python -m afvae.study prepare` first")
    pairs = pair_names(images / "source")
    if not pairs:
        raise StudyNotFound(f"{images / 'source'} holds no PNG images")
    methods = sorted(p.name for p in images.iterdir() if p.is_dir() and p.name not in RESERVED)
    for folder in [*RESERVED, *methods]:
        missing = sorted(set(pairs) - set(pair_names(images / folder)))
        if missing:
            raise ValueError(f"{images / folder} lacks {len(missing)} of the pair images, e.g. {missing[0]}.png")
    if len(methods) < 1:
        raise ValueError(f"{images} holds no method folder beside {', '.join(RESERVED)}")
    return methods, pairs


def build_trials(methods: list[str], pairs: list[str]) -> list[dict[str, Any]]:
    """Every fool trial (methods and real images) and every pair trial (each two methods, each pair)."""
    trials = []
    for method in [*methods, REAL]:
        for pair in pairs:
            trials.append({"id": trial_id("fool", (method,), pair), "kind": "fool", "pair": pair, "method": method,
                           "image": f"images/{method}/{pair}.png",
                           "truth": REAL if method == REAL else "generated"})
    for a, b in itertools.combinations(methods, 2):
        for pair in pairs:
            trials.append({"id": trial_id("pair", (a, b), pair), "kind": "pair", "pair": pair, "methods": [a, b],
                           "images": [f"images/{a}/{pair}.png", f"images/{b}/{pair}.png"],
                           "source": f"images/source/{pair}.png", "target": f"images/target/{pair}.png"})
    return trials


def write_trials(study_dir: str | Path) -> Path:
    """(Re)build ``trials.json`` from the image folders of ``study_dir``, atomically."""
    study_dir = Path(study_dir)
    methods, pairs = discover_methods(study_dir)
    doc = {"methods": methods, "pairs": pairs, "trials": build_trials(methods, pairs)}
    return write_text(study_dir / "trials.json", json.dumps(doc, indent=1) + "\n")


@dataclass(frozen=True)
class Study:
    """A loaded study set: its folder, methods and trials by id."""

    root: Path
    name: str
    methods: tuple[str, ...]
    trials: dict[str, dict[str, Any]]
    seed: int = 0

    @property
    def answers_path(self) -> Path:
        return self.root / "answers.csv"


def load_study(study_dir: str | Path) -> Study:
    """Read ``study_dir/trials.json`` (and ``study.json`` when present); StudyNotFound says what to run."""
    root = Path(study_dir)
    path = root / "trials.json"
    if not path.is_file():
        raise StudyNotFound(f"{path} is missing: run `python -m afvae.study prepare --name {root.name}` "
                            f"(or `python -m afvae.study trials {root}` after adding image folders) first")
    doc = json.loads(path.read_text())
    meta = json.loads((root / "study.json").read_text()) if (root / "study.json").is_file() else {}
    trials = {t["id"]: t for t in doc["trials"]}
    if len(trials) != len(doc["trials"]):
        raise ValueError(f"{path}: duplicate trial ids")
    return Study(root, meta.get("name", root.name), tuple(doc["methods"]), trials,
                 int(meta.get("seed", 0)))


def participant_order(study: Study, participant: str) -> list[tuple[str, bool]]:
    """The trials ``participant`` sees, in order, as (trial id, swap sides): all fool trials, then all pair
    trials, each block shuffled; a pure function of the study seed and the participant id."""
    rng = random.Random(f"{study.seed}:{participant}")
    blocks = []
    for kind in ("fool", "pair"):
        ids = sorted(i for i, t in study.trials.items() if t["kind"] == kind)
        rng.shuffle(ids)
        blocks += [(i, kind == "pair" and rng.random() < 0.5) for i in ids]
    return blocks
