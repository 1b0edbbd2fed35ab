"""Fresh identities at the long budget: does training on more people lift the edits of new people?

Trained 8x longer, the shipped full model edits its 180 training people at yaw SSIM ~0.90 and new people at
~0.77 (``ceiling``): what it lacks is people, not fidelity. This benchmark tests that reading at the same
compute. It trains (or resumes, or finds finished) the zoo's experiment ``full_fresh``: the full model's long
preset on 54,400 people, each one image, seen four times (``afvae.zoo.EXPERIMENTS``), in ``$AFVAE_RUNS``
(default ``~/.cache/afvae/runs``, the ``RUNS`` of ``make weights``; 43 minutes on 2 CPU cores, resumable).
Then it scores its final weights (EMA) like ``ceiling`` scores the shipped models: the quality benchmark's 400
edits of unseen faces with the model's oracle and the held-out scorer, and the same draw of edits of the
model's own training people. Beside it, the shipped full model (the same preset on the population's 180 people)
on the same edits, and the difference of the two pair by pair. ``figure`` draws both runs' quality curves
against images seen (``figures/fresh_long.png``) and their first edits (``figures/fresh_long_edits.png``).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from afvae.config import SHIPPED_SCALE

EXPERIMENT, REFERENCE = "full_fresh", "full"  # the zoo experiment, and the shipped model it is compared with


def runs_folder() -> Path:
    """Where the experiment trains: ``$AFVAE_RUNS``, else ``make weights``' default ``~/.cache/afvae/runs``."""
    return Path(os.environ.get("AFVAE_RUNS", "~/.cache/afvae/runs")).expanduser()


def run(scale: str = SHIPPED_SCALE, cache: str | Path | None = None) -> dict[str, Any]:
    """Train (or resume) the experiment at preset ``scale`` and score it beside the shipped reference."""
    from afvae import shipped, zoo
    from afvae.bench.ceiling import bar_reachable
    from afvae.bench.quality import CACHE, benchmark_edits, scoring, seen_scores
    from afvae.checkpoint import CHECKPOINT, load_checkpoint, model_from_state
    from afvae.metrics import read_once
    from afvae.quality import edit_scores, interval

    folder = zoo.train(EXPERIMENT, runs_folder(), cache=cache or CACHE, scale=scale)
    state = load_checkpoint(folder / CHECKPOINT)
    model, cfg = model_from_state(state)
    edits, scorer, heldout = scoring(cfg)  # the population's unseen faces: the same for both models
    models: dict[str, dict[str, Any]] = {}
    per_pair = {}
    with read_once():
        for name, (net, net_cfg) in ((EXPERIMENT, (model, cfg)), (REFERENCE, shipped.load(REFERENCE))):
            seen = benchmark_edits(net_cfg, "train")  # the draw of edits of the model's own training people
            per_pair[name] = edit_scores(net, edits, scorer, heldout, oracle=True)
            q = {k: float(v.float().nanmean()) for k, v in per_pair[name].items()}
            models[name] = ({k: round(v, 4) for k, v in q.items()} | {"bar_reachable": bar_reachable(q)}
                            | {"ci95": {k: list(interval(per_pair[name][k])) for k in zoo.SCORED}}
                            | {"seen": seen_scores(net, seen, scorer)})
    # the experiment minus the reference on the same edits, pair by pair: mean and 95 % bootstrap interval
    diff = {k: per_pair[EXPERIMENT][k].float() - per_pair[REFERENCE][k].float() for k in zoo.SCORED}
    sittings = zoo.read_sittings(folder)
    return {"n_edits": len(edits.kind), "images_seen": int(state["step"]) * cfg.train.batch_size,
            "people": cfg.data.train_images, "config_hash": cfg.hash(),
            "wall_minutes": sum(s["seconds"] for s in sittings) / 60,
            "machine": sorted({s["machine"] for s in sittings}), "models": models,
            "difference": {k: {"mean": round(float(v.nanmean()), 4), "ci95": list(interval(v))}
                           for k, v in diff.items()},
            "curve": zoo.read_curve(folder)}


def figure(bench_dir: str | Path = "results/bench", figures: str | Path = "figures") -> Path | None:
    """``figures/fresh_long.png``: the experiment's quality curve and the shipped full model's (its manifest's)
    against images seen, EMA weights. The manifest's identity scores were read by the factor net of the export's
    machine, not the shipped one (README, *Where the edits stop*), so of the reference's identity curve only its
    end is drawn, as ``run`` rescored it."""
    from afvae.plotting import plot_time_to_quality, save_figure
    from afvae.weights_manifest import manifest

    path = Path(bench_dir) / "fresh_long.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    reference = manifest()[REFERENCE]["curve"]
    reference = ([{**r, "identity_sim": math.nan} for r in reference[:-1]]
                 + [{**reference[-1], "identity_sim": result["models"][REFERENCE]["identity_sim"]}])
    curves = {f"{REFERENCE}: 180 people, 40 images each (shipped)": reference,
              f"{EXPERIMENT}: {result['people']:,} people, one image each": result["curve"]}
    edits_figure(figures)
    return save_figure(plot_time_to_quality(curves, x_keys=("images_seen",)), "fresh_long", figures)


def edits_figure(figures: str | Path = "figures", n: int = 8) -> Path | None:
    """``figures/fresh_long_edits.png``: the benchmark's first ``n`` yaw edits of new people by the shipped full
    model and by the experiment (its finished run in ``runs_folder``; None without one)."""
    from afvae import shipped, zoo
    from afvae.bench.ceiling import yaw_edit_rows
    from afvae.checkpoint import finished, load_model, run_dir
    from afvae.plotting import image_grid, save_figure

    cfg = zoo.zoo_config(EXPERIMENT)
    if not finished(cfg, runs_folder()):
        return None
    models = {"trained on\n180 people": shipped.load(REFERENCE)[0],
              f"trained on\n{cfg.data.train_images:,} people": load_model(run_dir(cfg, runs_folder()))[0]}
    rows, labels = yaw_edit_rows(models, "test", n)
    return save_figure(image_grid(rows, row_labels=labels), "fresh_long_edits", figures)
