"""The shipped reference models: trained once with the ``long`` preset, scored, exported to ``weights/``.

``python -m afvae.zoo train [NAME ...] --runs DIR`` trains each model (AF-VAE, its Table 3 variants, the GAN
baselines) into ``DIR/NAME-HASH``, resuming exactly where an earlier sitting stopped. At every checkpoint it
scores the edit benchmark of ``afvae.quality`` (200 yaw and 200 expression edits of unseen faces) with the
evaluated weights (the EMA) and with the raw ones, into the run's ``curve.jsonl``: quality against images seen,
from the default budget to the long one. Each sitting's wall time, machine and commit go to ``sittings.jsonl`` (at every checkpoint).

``python -m afvae.zoo status [NAME ...] --runs DIR`` says where each run stands (step, time so far, time to go
at its rate, its last scores), from its files, while it trains or between sittings.

``python -m afvae.zoo export [NAME ...] --runs DIR`` writes each finished model to ``weights/NAME.safetensors``
and its entry in ``weights/manifest.json`` (``afvae.shipped`` reads them): fp16 when no metric of the benchmark
moves beyond its 95 % bootstrap interval, else fp32; the metrics at export; and ``check``, the pixel metrics of
64 fixed edits that the tests recompute from the shipped file. With them it ships the evaluation nets of the
faces' data from ``--cache`` (``export_nets``: factor net, landmark net, held-out scorer; ``weights/nets/``).

Beside them ship Fig. 7's models (``SUBJECTS``: the full model trained on the procedural hands and cats at the
default preset, by notebook 12) and the tutorial's four small C-VAEs (``TUTORIAL``: notebook 11's, 32 px), scored
on structure swaps of unseen identities (``afvae.quality.swap_set``), so that ``make paper`` installs them instead
of training, and ``make paper SCALE=long`` trains nothing.
"""
from __future__ import annotations

import argparse

from afvae.cli import add_debug, fail
from afvae.config import SHIPPED_SCALE

AFVAE_NAMES = ("full", "no_kl", "standard_prior", "gmm_sampled", "deconv", "batchnorm", "no_norm")
BASELINE_NAMES = ("pix2pixHD", "StarGAN", "GANimation")
SUBJECTS = {"hands": "synthetic-hands", "cats": "synthetic-cats"}  # Fig. 7's models: name -> data source
TUTORIAL = {f"tutorial_{prior}_{name}": (prior, beta)  # notebook 11's models: name -> (prior, beta)
            for name, beta in (("beta1e-5", 1e-5), ("beta1e-3", 1e-3)) for prior in ("standard", "additive")}
NAMES = AFVAE_NAMES + BASELINE_NAMES + tuple(SUBJECTS) + tuple(TUTORIAL)
# Experiments: trained and scored like the reference models when named, never by default nor shipped unasked.
# full_fresh: the full model on fresh identities, a quarter as many training images (and people) as it sees
# images (the long preset: 54,400 people, four passes), against the 180 people of the population.
EXPERIMENTS = {"full_fresh": 4}  # name -> passes over its training images
SCALE = SHIPPED_SCALE
SUBJECT_SCALE = "compact"  # the preset of SUBJECTS' models (notebook 12's; shipped, so kept when the default moved)
CURVE, SITTINGS = "curve.jsonl", "sittings.jsonl"
SCORED = ("yaw_ssim", "expr_changed_l1", "identity_sim", "landmark_nme", "rec_ssim")  # a model's own scores
CHECK_PAIRS = {"n_yaw": 32, "n_expression": 32, "seed": 1}  # the tests' fixed edits (pixel metrics: no scorer)
CHECKED = ("yaw_ssim", "expr_changed_l1", "rec_ssim")
SWAP_SCORED = ("swap_changed_l1", "rec_ssim")  # SUBJECTS' scores, and their checks (pixel metrics: no scorer)
HISTORY_EVERY = 50  # steps between the training-log rows kept in a shipped file


def subject_scale(scale: str) -> str:
    """The preset notebook 12 trains its hands and cats at for a pipeline at ``scale``: the shipped models'
    (``SUBJECT_SCALE``) at the default and long scales, ``scale`` itself at the others (smoke, paper)."""
    return SUBJECT_SCALE if scale in ("default", SCALE) else scale


def parser() -> argparse.ArgumentParser:
    """``python -m afvae.zoo``'s arguments."""
    p = argparse.ArgumentParser(prog="python -m afvae.zoo", description="Train the shipped reference models.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (or resume) models of the long preset, scoring edits at checkpoints")
    t.add_argument("names", nargs="*", default=list(NAMES), metavar="NAME",
                   help=f"models to train, in order (default: all of {', '.join(NAMES)}; experiments, only when "
                        f"named: {', '.join(EXPERIMENTS)})")
    t.add_argument("--runs", required=True, help="folder of the runs (keep it outside the work tree)")
    t.add_argument("--cache", default="results/cache", help="feature and scoring networks' cache")
    t.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N: where to train and score (not in the "
                   "config hash: a run may move between machines)")
    st = sub.add_parser("status", help="where each run stands: step, time so far and to go, last scores")
    st.add_argument("names", nargs="*", default=list(NAMES), metavar="NAME", help="models (default: all)")
    st.add_argument("--runs", required=True, help="folder of the runs trained by `train`")
    e = sub.add_parser("export", help="write finished models to weights/ (safetensors + manifest.json)")
    e.add_argument("names", nargs="*", default=list(NAMES), metavar="NAME", help="models to export (default: all "
                   "that are finished)")
    e.add_argument("--runs", required=True, help="folder of the runs trained by `train`")
    e.add_argument("--cache", default="results/cache", help="feature and scoring networks' cache")
    e.add_argument("--weights", help="output folder (default: the repository's weights/)")
    for q in (t, st, e):
        q.add_argument("--scale", default=SCALE, help=f"preset (default {SCALE}; smoke tries the commands in a minute)")
    return add_debug(p)


if __name__ == "__main__":  # parse before torch is imported
    ARGS = parser().parse_args()

import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from afvae import hardware
from afvae.atomic import atomic_path, write_text
from afvae.baselines import config as baseline_config
from afvae.baselines.compare import images_seen
from afvae.checkpoint import CHECKPOINT, evaluated_weights, load_checkpoint, model_from_state, read_history, run_dir
from afvae.config import Config, get_config
from afvae.data.datasets import build_dataset, for_data
from afvae.features import load_factor_net
from afvae.methods import Method
from afvae.quality import BENCHMARK, EditSet, edit_quality, edit_scores, edit_set, interval, swap_set
from afvae.shipped import CENTRES, load_state
from afvae.train import fit
from afvae.tutorial import tiny_config
from afvae.weights_manifest import MANIFEST, NETS, export_net, manifest, nets, sha256, weights_dir

log = logging.getLogger(__name__)


def zoo_config(name: str, scale: str = SCALE) -> Config:
    """The config of reference model ``name``: an AF-VAE variant or a GAN baseline at preset ``scale``."""
    if name in BASELINE_NAMES:
        return baseline_config(scale, name)
    if name in AFVAE_NAMES:
        return get_config(scale, name)
    if name in SUBJECTS:  # always notebook 12's config, whatever ``scale``
        return for_data(get_config(SUBJECT_SCALE, "full"), SUBJECTS[name]).replace(train={"seed": 0})
    if name in TUTORIAL:  # notebook 11's, the same at every scale but smoke
        return tiny_config("smoke" if scale == "smoke" else SUBJECT_SCALE, *TUTORIAL[name])
    if name in EXPERIMENTS:
        cfg = get_config(scale, "full")
        return cfg.replace(data={"train_images": cfg.train.steps * cfg.train.batch_size // EXPERIMENTS[name]})
    raise ValueError(f"unknown reference model {name!r}; choose one of {', '.join(NAMES + tuple(EXPERIMENTS))}")


def is_face(cfg: Config) -> bool:
    """Whether ``cfg`` is a face model of the paper's size (scored on yaw and expression edits, with a scorer);
    hands, cats and the tutorial's small models are scored on structure swaps."""
    return cfg.data.source == "synthetic" and not cfg.name.startswith("tutorial_")


def benchmark(cfg: Config, check: bool = False) -> EditSet:
    """The edits a reference model is scored on: faces, 200 yaw + 200 expression edits (``check``: the tests' 64,
    ``CHECK_PAIRS``); hands and cats, 200 structure swaps (``check``: 64, another seed)."""
    test = build_dataset(cfg.data, "test")
    if is_face(cfg):
        return edit_set(test, **(CHECK_PAIRS if check else BENCHMARK))
    return swap_set(test, n=64, seed=1) if check else swap_set(test, n=200, seed=0)


def scorer_for(cfg: Config, cache: str | Path) -> Any:
    """The faces' factor net (identity and landmark scores) on ``cfg.train.device``; None for hands and cats
    (pixel scores only)."""
    if not is_face(cfg):
        return None
    scorer = load_factor_net(cfg.data, cache)
    scorer.net.to(cfg.train.device)
    return scorer


def scored(cfg: Config) -> tuple[str, ...]:
    """The metrics recorded with their intervals (and fp16-checked) for a model of ``cfg``."""
    return SCORED if is_face(cfg) else SWAP_SCORED


def _rows(path: Path) -> list[dict[str, Any]]:
    """The JSON rows of a ``.jsonl`` file; [] when it does not exist."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def read_curve(run: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``curve.jsonl`` (one per scored checkpoint); [] before any."""
    return _rows(Path(run) / CURVE)


def read_sittings(run: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``sittings.jsonl`` (from_step, to_step, seconds, machine, commit); [] before any."""
    return _rows(Path(run) / SITTINGS)


def curve_callback(cfg: Config, run: Path, edits: EditSet, scorer: Any) -> Any:
    """``fit``'s callback: at every checkpoint step, score the evaluated and the raw weights into ``CURVE``
    (rows of later steps, left by an interrupted sitting, are replaced), and record this sitting so far."""
    tc = cfg.train
    sitting = {"from_step": _step_of(run), "machine": machine(), "commit": commit(), "t0": time.perf_counter()}

    def score(done: int, method: Method) -> None:
        if done % tc.checkpoint_every and done != tc.steps:
            return
        t0 = time.perf_counter()
        row: dict[str, Any] = {"step": done, "images_seen": done * tc.batch_size}
        row |= edit_quality(method.evaluated, edits, scorer)
        if method.ema is not None:
            row |= {f"raw_{k}": v for k, v in edit_quality(method.model, edits, scorer).items()}
        row["eval_seconds"] = time.perf_counter() - t0
        rows = [r for r in read_curve(run) if r["step"] < done] + [row]
        write_text(run / CURVE, "".join(json.dumps(r) + "\n" for r in rows))
        record_sitting(run, sitting, done)
        log.info("%s step %d: %s", cfg.name, done, ", ".join(f"{k} {row[k]:.3f}" for k in scored(cfg)))

    return score


def train(name: str, runs: str | Path, cache: str | Path = "results/cache", scale: str = SCALE,
          device: str = "cpu") -> Path:
    """Train (or resume, or find finished) reference model ``name`` into ``runs/NAME-HASH`` -> that folder, on
    ``device`` (the checkpoints' scoring too)."""
    cfg = zoo_config(name, scale).replace(train={"device": device})
    run = run_dir(cfg, runs)
    scorer, edits = scorer_for(cfg, cache), benchmark(cfg)
    with torch.random.fork_rng(devices=[]):
        fit(cfg, run, resume=True, cache_root=cache, callback=curve_callback(cfg, run, edits, scorer))
    return run


def record_sitting(run: Path, sitting: dict[str, Any], done: int) -> None:
    """Write ``SITTINGS``: the earlier sittings up to where this one resumed, then this one up to step ``done``
    (rewritten at every checkpoint, so a killed sitting keeps its time up to its last checkpoint)."""
    path, start = run / SITTINGS, sitting["from_step"]
    rows = read_sittings(run)
    rows = [{**r, "to_step": min(r["to_step"], start)} for r in rows if r["from_step"] < start]
    rows.append({"from_step": start, "to_step": done, "seconds": time.perf_counter() - sitting["t0"],
                 "machine": sitting["machine"], "commit": sitting["commit"]})
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def status(name: str, runs: str | Path, scale: str = SCALE) -> dict[str, Any]:
    """Where model ``name``'s run under ``runs`` stands, from its ``SITTINGS`` and ``CURVE`` (no checkpoint is
    loaded): ``step`` (of its last checkpoint) of ``steps``, the wall ``seconds`` of its sittings (their pauses
    included), ``seconds_per_step`` of the last sitting and ``seconds_to_go`` at that rate (None before a
    checkpoint), the last scored checkpoint's ``scores``, and whether ``weights/`` ships the model."""
    cfg = zoo_config(name, scale)
    run = run_dir(cfg, runs)
    sittings = read_sittings(run)
    last = sittings[-1] if sittings else {"from_step": 0, "to_step": 0, "seconds": 0.0}
    step, seconds = last["to_step"], sum(r["seconds"] for r in sittings)
    per_step = last["seconds"] / (step - last["from_step"]) if step > last["from_step"] else None
    curve = read_curve(run)
    return {"name": name, "run": str(run), "step": step, "steps": cfg.train.steps, "sittings": len(sittings),
            "seconds": seconds, "seconds_per_step": per_step,
            "seconds_to_go": per_step * (cfg.train.steps - step) if per_step else None,
            "scores": {k: curve[-1][k] for k in (*scored(cfg), "speckle") if k in curve[-1]} if curve else {},
            "scored_step": curve[-1]["step"] if curve else None, "shipped": name in manifest()}


def status_line(st: dict[str, Any]) -> str:
    """``status`` in one line."""
    done = st["step"] >= st["steps"]
    head = f"{st['name']}: " + ("shipped; " if st["shipped"] else "")
    if not st["step"]:
        return head + f"no checkpoint in {st['run']}"
    hours = lambda s: f"{s / 3600:.1f} h"  # noqa: E731
    line = (head + f"step {st['step']:,} of {st['steps']:,}" + (" (finished)" if done else "")
            + f", {hours(st['seconds'])} over {st['sittings']} sitting(s)")
    if st["seconds_per_step"] is not None:
        line += f", the last at {st['seconds_per_step']:.2f} s a step"
    if not done and st["seconds_to_go"] is not None:
        line += f": ~{hours(st['seconds_to_go'])} to go at that rate"
    if st["scores"]:
        line += f"; at step {st['scored_step']:,}: " + ", ".join(f"{k} {v:.3f}" for k, v in st["scores"].items())
    return line


def _step_of(run: Path) -> int:
    return int(load_checkpoint(run / CHECKPOINT)["step"]) if (run / CHECKPOINT).exists() else 0


def machine() -> str:
    """What trains here, in words: the accelerator, or the CPU's cores."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU: {hardware.summary()}, {torch.get_num_threads()} torch threads"


def commit() -> str:
    """The git commit of the code running; outside a clone (a copy of the tree sent to another machine),
    ``$AFVAE_COMMIT`` or ``unknown``."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("AFVAE_COMMIT", "unknown")


def fp16_check(state: dict[str, Any], edits: EditSet, scorer: Any, keys: tuple[str, ...] = SCORED
               ) -> dict[str, dict[str, Any]]:
    """Each scored metric (``keys``) with fp32 and fp16-rounded weights, beside the fp32 mean's 95 % interval."""
    model32, _ = model_from_state(state)
    half = {k: v.half().float() if v.is_floating_point() else v for k, v in evaluated_weights(state).items()}
    model16, _ = model_from_state({**state, "model": half, "states": {}})
    s32, s16 = edit_scores(model32, edits, scorer), edit_scores(model16, edits, scorer)
    out = {}
    for k in keys:
        lo, hi = interval(s32[k])
        m32, m16 = float(s32[k].nanmean()), float(s16[k].nanmean())
        out[k] = {"fp32": m32, "fp16": m16, "ci95": [lo, hi], "within": abs(m16 - m32) < (hi - lo) / 2}
    return out


def check_metrics(model: torch.nn.Module, cfg: Config) -> dict[str, float]:
    """Pixel metrics of ``model`` (trained with ``cfg``) on the tests' 64 fixed edits (``benchmark(check=True)``);
    no scoring network needed."""
    scores = edit_scores(model, benchmark(cfg, check=True), None)
    return {k: float(scores[k].float().nanmean()) for k in (CHECKED if is_face(cfg) else SWAP_SCORED)}


def export(name: str, runs: str | Path, cache: str | Path = "results/cache", folder: str | Path | None = None,
           scale: str = SCALE) -> dict[str, Any]:
    """Write finished model ``name`` of ``runs`` to ``folder/NAME.safetensors`` and its manifest entry -> entry."""
    cfg = zoo_config(name, scale)
    run, folder = run_dir(cfg, runs), Path(folder or weights_dir())
    state = load_checkpoint(run / CHECKPOINT)
    if state["step"] < cfg.train.steps:
        raise ValueError(f"{run} is at step {state['step']} of {cfg.train.steps}: finish it first (python -m "
                         f"afvae.zoo train {name} --runs {runs})")
    scorer, edits = scorer_for(cfg, cache), benchmark(cfg)
    fp16 = fp16_check(state, edits, scorer, scored(cfg))
    half = all(v["within"] for v in fp16.values())
    weights = {k: (v.half() if half and v.is_floating_point() else v).contiguous().clone()
               for k, v in evaluated_weights(state).items()}
    history = [r for r in read_history(run) if r["step"] % HISTORY_EVERY == 0 or r["step"] == cfg.train.steps]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    with atomic_path(path) as tmp:
        save_file({**weights, CENTRES: state["centres"].contiguous()}, str(tmp),
                  metadata={"name": name, "config_hash": cfg.hash(), "history": json.dumps(history)})
        tmp.chmod(0o644)
    entry = manifest_entry(name, cfg, run, path, half, fp16, state, cache)
    shipped, _ = model_from_state(load_state(entry, folder))  # the file as every consumer will read it
    scores = edit_scores(shipped, edits, scorer)  # once: the means and their intervals
    entry["metrics"] = {k: float(v.float().nanmean()) for k, v in scores.items()}
    entry["metrics_ci95"] = {k: list(interval(scores[k])) for k in scored(cfg)}
    entry["check"] = check_metrics(shipped, cfg)
    write_manifest({**manifest(folder), name: entry}, folder)
    return entry


def manifest_entry(name: str, cfg: Config, run: Path, path: Path, half: bool, fp16: dict, state: dict,
                   cache: str | Path = "results/cache") -> dict[str, Any]:
    """The manifest's record of the file ``path`` exported from ``run`` (metrics are added after; ``cache``: the
    feature net the FLOP count builds)."""
    from afvae.bench.quality import flops_per_image

    sittings = read_sittings(run)
    images = images_seen(cfg)
    return {
        "name": name, "file": path.name, "method": cfg.name if name in BASELINE_NAMES else "AF-VAE",
        "variant": cfg.name, "data": cfg.data.source, "config": cfg.to_dict(), "config_hash": cfg.hash(), "sha256": sha256(path),
        "bytes": path.stat().st_size, "dtype": "float16" if half else "float32", "fp16_check": fp16,
        "feature_net": state.get("feature_net", "none"), "images_seen": images,
        "train_tflop": flops_per_image(cfg, str(cache)) * images / 1e12,
        "wall_minutes": sum(s["seconds"] for s in sittings) / 60 if sittings else None,
        "machine": sorted({s["machine"] for s in sittings}), "trained_at": sorted({s["commit"] for s in sittings}),
        "exported_at": commit(), "curve": read_curve(run),
    }


def write_manifest(entries: dict[str, dict[str, Any]], folder: Path,
                   net_entries: dict[str, dict[str, Any]] | None = None) -> Path:
    """``folder/manifest.json``: the model entries in ``NAMES`` order (then the exported ``EXPERIMENTS``), the
    evaluation nets (``net_entries``, default: those it lists now), and the total size of every file."""
    models = [entries[n] for n in NAMES + tuple(EXPERIMENTS) if n in entries]
    shipped_nets = list((nets(folder) if net_entries is None else net_entries).values())
    body = {"about": "Reference models of afvae (python -m afvae.zoo) and the evaluation nets of their data; read "
                     "with afvae.shipped.",
            "total_bytes": sum(e["bytes"] for e in models + shipped_nets), "models": models, NETS: shipped_nets}
    return write_text(folder / MANIFEST, json.dumps(body, indent=1) + "\n")


def export_nets(cache: str | Path = "results/cache", folder: str | Path | None = None, scale: str = SCALE
                ) -> dict[str, dict[str, Any]]:
    """Ship the evaluation nets of the faces at ``scale`` (factor net, landmark net, held-out scorer; trained into
    ``cache`` first if missing) to ``folder/nets/`` and the manifest -> their entries, by cache file."""
    from afvae.features import factor_net_path, landmark_net_path, load_landmark_net
    from afvae.scorer import load_scorer, scorer_path

    folder, data = Path(folder or weights_dir()), zoo_config("full", scale).data
    entries = {}
    for path_of, load in ((factor_net_path, load_factor_net), (landmark_net_path, load_landmark_net),
                          (scorer_path, load_scorer)):
        load(data, cache)  # cached (or installed from weights/) -> the cache file exists
        path = path_of(data, cache)
        entries[path.name] = export_net(path, folder)
    write_manifest(manifest(folder), folder, entries)
    return entries


def long_curves(folder: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The shipped AF-VAE models that carry a quality curve: name -> manifest entry, in ``NAMES`` order."""
    return {n: e for n, e in manifest(folder).items() if n in AFVAE_NAMES and e.get("curve")}


def figure(folder: str | Path | None = None, bench: str | Path = "results/bench", figures: str | Path = "figures"
           ) -> Path | None:
    """``figures/quality_vs_images.png``: the edit benchmark against images seen, for the compact preset (the long
    models' recipe at 38.8 TFLOP, ``python -m afvae.bench quality_compact``), the default preset (``quality``) and
    each shipped AF-VAE model's long run (EMA weights; the full model's raw weights too)."""
    from afvae.plotting import plot_time_to_quality, save_figure

    curves: dict[str, list[dict]] = {}
    default = "default preset (73,216 images of as many people, half widths, the broadcast recipe)"
    for label, stem in (("compact preset (27,200 images of 180 people)", "quality_compact"), (default, "quality")):
        path = Path(bench) / f"{stem}.json"
        if path.exists():
            curves[label] = json.loads(path.read_text())["curve"]
    for name, entry in long_curves(folder).items():
        curves[f"{name}, long (EMA)"] = entry["curve"]
        if name != "full":  # the raw weights of the full model only
            continue
        raw = [{**r, **{k.removeprefix("raw_"): v for k, v in r.items() if k.startswith("raw_")}}
               for r in entry["curve"] if "raw_yaw_ssim" in r]
        if raw:
            curves[f"{name}, long (raw weights)"] = raw
    if not any("long" in k for k in curves):
        return None
    return save_figure(plot_time_to_quality(curves, x_keys=("images_seen",)), "quality_vs_images", figures)


def gap_figure(folder: str | Path | None = None, figures: str | Path = "figures", reference: str = "full"
               ) -> Path | None:
    """``figures/ablation_gaps.png``: each shipped Table 3 variant's advantage over the full model along its
    long run (EMA weights; ``plot_ablation_gaps``), from the compact budget on: do the ablation gaps grow or
    shrink with training?"""
    from afvae.plotting import QUALITY_PANELS, plot_ablation_gaps, save_figure

    shipped = long_curves(folder)
    if reference not in shipped or len(shipped) < 2:
        return None
    lo_hi = {m: shipped[reference]["metrics_ci95"][m] for m, *_ in QUALITY_PANELS}
    fig = plot_ablation_gaps({n: e["curve"] for n, e in shipped.items()}, reference,
                             {m: (hi - lo) / 2 for m, (lo, hi) in lo_hi.items()},
                             start=images_seen(get_config("compact")))
    return save_figure(fig, "ablation_gaps", figures)


def run(a: argparse.Namespace) -> None:
    """Do what the parsed arguments ``a`` say; errors as one line, exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        for name in a.names:
            if a.command == "status":
                print(status_line(status(name, a.runs, a.scale)), flush=True)
            elif a.command == "train":
                print(f"{name}: {train(name, a.runs, a.cache, a.scale, a.device)}", flush=True)
            elif run_dir(cfg := zoo_config(name, a.scale), a.runs).joinpath(CHECKPOINT).exists():  # export
                entry = export(name, a.runs, a.cache, a.weights, a.scale)
                key = scored(cfg)[0]
                print(f"{name}: {entry['file']} ({entry['dtype']}, {entry['bytes'] / 1e6:.1f} MB) "
                      f"{key} {entry['metrics'][key]:.3f}", flush=True)
        if a.command == "export":
            if a.scale == SCALE:  # the evaluation nets of the shipped faces' data
                for entry in export_nets(a.cache, a.weights).values():
                    print(f"{entry['kind']}: {entry['file']} ({entry['bytes'] / 1e6:.1f} MB)", flush=True)
            for path in filter(None, (figure(a.weights), gap_figure(a.weights))):
                print(f"figure: {path}")
    except (ValueError, OSError, FloatingPointError) as e:
        fail("python -m afvae.zoo", e, a.debug)


if __name__ == "__main__":
    run(ARGS)
