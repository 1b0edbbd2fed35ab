"""``make paper``: execute the numbered notebooks with papermill, in order, and write a manifest.

    python -m afvae.pipeline --scale default --data synthetic [--only 00_data 02_train]

Executed copies go to ``results/executed/``, figures to ``figures/``, tables and headline numbers to
``results/``; ``results/manifest.json`` records scale, commit, seeds, versions, device and wall times.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from afvae.atomic import write_text
from afvae.config import PRESETS, VARIANTS

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"  # the repository's, from any working folder
PER_VARIANT = {"02_train"}  # executed once per ablation variant (Table 3)
SYNTHETIC_ONLY = {"07_manipulation", "08_identity"}  # need the renderer's ground truth
PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "papermill", "torch-fidelity", "face-alignment")


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks ``NN_topic.ipynb`` in run order, optionally filtered by stem."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise SystemExit(f"no notebooks in {NOTEBOOKS}: run the pipeline from a clone of the repository")
    if only:
        missing = set(only) - {p.stem for p in found}
        if missing:
            raise SystemExit(f"no such notebook(s): {sorted(missing)}; have {[p.stem for p in found]}")
        found = [p for p in found if p.stem in only]
    return found


def runs_of(nb: Path, base: dict[str, Any]) -> list[dict[str, Any]]:
    """Parameter sets for one notebook: one run, or one per variant for the training notebook."""
    if nb.stem in PER_VARIANT:
        return [{**base, "VARIANT": v} for v in VARIANTS]
    return [base]


def execute(nb: Path, params: dict[str, Any]) -> float:
    """Run one notebook with papermill; returns wall seconds. A failure names notebook and cell."""
    import papermill as pm

    executed = Path(params["RESULTS"]) / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    suffix = f"-{params['VARIANT']}" if "VARIANT" in params else ""
    out = executed / f"{nb.stem}{suffix}.ipynb"
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, progress_bar=False, cwd=".", log_output=False)
    except pm.PapermillExecutionError as e:
        raise SystemExit(
            f"notebook {nb.name}{suffix} failed in cell {e.exec_count} ({e.ename}: {e.evalue}); "
            f"the executed copy with the traceback is {out}"
        ) from None
    return time.perf_counter() - t0


def manifest(scale: str, data: str, seed: int, times: dict[str, float], t_total: float,
             results: Path) -> dict[str, Any]:
    """What produced these results."""
    import torch

    headline = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("[0-9][0-9]_*.json"))}
    return {
        "scale": scale,
        "data": data,
        "seed": seed,
        "commit": _git_commit(),
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in PACKAGES},
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()})",
        "threads": torch.get_num_threads(),
        "wall_seconds": {**{k: round(v, 1) for k, v in times.items()}, "total": round(t_total, 1)},
        "headline": headline,
    }


def _version(pkg: str) -> str:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _merged(result: dict[str, Any], path: Path) -> dict[str, Any]:
    """A partial run (``--only``) keeps the wall times the manifest at ``path`` holds for the other notebooks
    when scale, data and seed match; ``total`` becomes their sum and ``partial_runs`` counts the merges."""
    if not path.exists():
        return result
    old = json.loads(path.read_text())
    if any(old.get(k) != result[k] for k in ("scale", "data", "seed")):
        return result
    times = {k: v for k, v in old["wall_seconds"].items() if k != "total"} | result["wall_seconds"]
    times.pop("total")
    times["total"] = round(sum(times.values()), 1)
    return {**result, "wall_seconds": times, "partial_runs": old.get("partial_runs", 1) + 1}


def run(scale: str, data: str = "synthetic", seed: int = 0, only: list[str] | None = None,
        out: str | Path = ".") -> dict[str, Any]:
    """Execute every notebook in order at ``scale``, writing under ``out`` (figures/, results/)."""
    out = Path(out).resolve()
    results = out / "results"
    base = {"SCALE": scale, "DATA": data, "SEED": seed, "FIGURES": str(out / "figures"), "RESULTS": str(results)}
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    for nb in notebooks(only):
        if data != "synthetic" and nb.stem in SYNTHETIC_ONLY:
            print(f"[{time.perf_counter() - t0:7.1f} s] {nb.stem} skipped: it needs synthetic ground truth", flush=True)
            continue
        for params in runs_of(nb, base):
            key = nb.stem + (f"-{params['VARIANT']}" if "VARIANT" in params else "")
            print(f"[{time.perf_counter() - t0:7.1f} s] {key} ...", flush=True)
            times[key] = execute(nb, params)
            print(f"[{time.perf_counter() - t0:7.1f} s] {key} done in {times[key]:.1f} s", flush=True)
    result = manifest(scale, data, seed, times, time.perf_counter() - t0, results)
    path = results / "manifest.json"
    if only:
        result = _merged(result, path)
    write_text(path, json.dumps(result, indent=2) + "\n")
    print(f"{len(times)} notebook runs done in {time.perf_counter() - t0:.0f} s; manifest: {path}")
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m afvae.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", default="default", choices=sorted(PRESETS))
    p.add_argument("--data", default="synthetic", help="'synthetic' or a prepared data folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", help="notebook stems to run (default: all)")
    p.add_argument("--out", default=".", help="root for figures/ and results/ (default: the repository)")
    a = p.parse_args(argv)
    if a.data != "synthetic":
        if not Path(a.data).is_dir():
            raise SystemExit(f"--data {a.data!r}: no such folder; use 'synthetic' or a folder made by afvae.prepare")
        from afvae.data.datasets import folder_schema

        try:
            folder_schema(a.data)  # a folder without (valid) meta.json fails here, before any notebook runs
        except (OSError, ValueError) as e:
            raise SystemExit(f"--data {a.data!r}: {e}") from None
    run(a.scale, a.data, a.seed, a.only, a.out)


if __name__ == "__main__":
    sys.exit(main())
