"""Where the edits stop: each shipped long model's edits beside its own ceiling.

At 8x the default budget (the ``long`` preset, ``weights/``) the quality curves flatten below the quality
bars (README, *Time to quality*). This asks why. It scores every shipped AF-VAE model (and the shipped GAN
baselines, for their colour noise, ``speckle``) on the quality benchmark's 400 edits
(``afvae.bench.quality.scoring``) together with its **oracle**: the true target through the model's own
encoders and decoder (``afvae.quality``, ``oracle=True``). The oracle is the best an edit can do
at the model's reconstruction quality. Where it is itself below a bar, no better manipulation reaches the bar;
only a better reconstruction can.

The same 200 + 200 edits are also drawn (same seed, same construction) from the **training identities**
(``seen``): faces whose appearance the model was fitted to, under structures it never saw with them. The gap
between the two says whether what a model lacks is fidelity (both low) or generalisation to new people (seen
high, unseen low). ``figure`` draws the edits, the oracles, the seen-identity edits and the bars, and the full
model's edit and reconstruction SSIM along its long run (its manifest curve).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def bar_reachable(q: dict[str, float]) -> dict[str, bool]:
    """Per bar of the quality benchmark (``afvae.bench.quality.TARGETS``, training compute aside): does the
    model's oracle meet it? False: even the truth reconstructed by this model misses it."""
    from afvae.bench.quality import TARGETS

    oracle = q | {k.removesuffix("_oracle"): v for k, v in q.items() if k.endswith("_oracle")}
    return {name: bool(ok(oracle)) for name, ok in TARGETS.items() if "train_tflop" not in name}


def run() -> dict[str, Any]:
    from afvae import shipped
    from afvae.bench.quality import benchmark_edits, scoring, seen_scores
    from afvae.config import get_config
    from afvae.metrics import read_once
    from afvae.quality import edit_quality
    from afvae.weights_manifest import manifest
    from afvae.zoo import AFVAE_NAMES, BASELINE_NAMES

    cfg = get_config("default")
    edits, scorer, heldout = scoring(cfg)  # the quality benchmark's edits and scorers
    seen = benchmark_edits(cfg, "train")  # the same draw from the training identities
    names = [n for n in AFVAE_NAMES + BASELINE_NAMES if n in manifest()]  # the GAN baselines: their speckle
    models: dict[str, dict[str, Any]] = {}
    with read_once():  # the sources and truths are read once by each scorer for all models
        for name in names:
            model = shipped.load(name)[0]
            q = edit_quality(model, edits, scorer, heldout, oracle=True)
            models[name] = ({k: round(v, 4) for k, v in q.items()} | {"bar_reachable": bar_reachable(q)}
                            | {"seen": seen_scores(model, seen, scorer)})
    return {"n_edits": len(edits.kind), "models": models}


def yaw_edit_rows(models: dict[str, Any], split: str = "test", n: int = 6, who: str = "new person"
                  ) -> tuple[list[list[Any]], list[str]]:
    """Image rows of the benchmark's first ``n`` yaw edits of ``split``'s people: source, true render, then each
    model's edit (``models``: row label -> network) -> (rows, row labels)."""
    from afvae.bench.quality import benchmark_edits
    from afvae.config import get_config
    from afvae.model import translate_all

    edits = benchmark_edits(get_config("default"), split)  # no scoring nets needed
    i = edits.mask("yaw").nonzero()[:n, 0]
    rows = [list(edits.x[i]), list(edits.x_truth[i])]
    rows += [list(translate_all(model, edits.x[i], edits.c[i], edits.c_target[i])) for model in models.values()]
    return rows, [f"{who}:\nsource", "true render\nat new yaw", *models]


def edits_figure(figures: str | Path = "figures", n: int = 6) -> Path:
    """``figures/seen_unseen_edits.png``: the shipped full model's first ``n`` yaw edits of new people and of
    training people, each over its source and its true render."""
    from afvae import shipped
    from afvae.plotting import image_grid, save_figure

    model = shipped.load("full")[0]
    rows, labels = [], []
    for who, split in (("new person", "test"), ("training person", "train")):
        more, names = yaw_edit_rows({"AF-VAE edit": model}, split, n, who)
        rows, labels = rows + more, labels + names
    return save_figure(image_grid(rows, row_labels=labels), "seen_unseen_edits", figures)


def figure(bench_dir: str | Path = "results/bench", figures: str | Path = "figures") -> Path | None:
    """``figures/quality_ceiling.png`` from ``ceiling.json`` and the shipped full model's curve (and, drawn by
    the shipped full model, ``figures/seen_unseen_edits.png``)."""
    from afvae.plotting import plot_ceiling, save_figure
    from afvae.weights_manifest import manifest
    from afvae.zoo import AFVAE_NAMES

    path = Path(bench_dir) / "ceiling.json"
    if not path.exists():
        return None
    scored = json.loads(path.read_text())["models"]
    models = {n: scored[n] for n in AFVAE_NAMES if n in scored}  # the paper's order, full first
    curve = manifest()["full"]["curve"]
    edits_figure(figures)
    return save_figure(plot_ceiling(models, curve), "quality_ceiling", figures)
