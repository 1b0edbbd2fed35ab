"""``make paper``: execute the numbered notebooks with papermill, in order, and write a manifest.

    python -m afvae.pipeline --scale default --data synthetic [--seeds 3] [--only 00_data 02_train]

Executed copies go to ``results/executed/``, figures to ``figures/``, tables and headline numbers to
``results/``; ``results/manifest.json`` records scale, commit, seeds, versions (and the hash of the lock they were
installed from), device and wall times. ``--seeds N`` trains every Table 3 variant with N training seeds and
passes ``N_SEEDS`` to the notebooks that declare it, which then report 95 % intervals over seeds. The terminal gets one line per notebook with its wall time, and the
kernel's stderr as it comes: the progress bars of training and evaluation, and any warning.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata as md
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from afvae.atomic import write_text
from afvae.config import PRESETS, SHIPPED_SCALE, VARIANTS
from afvae.data.synthetic import render_cache
from afvae.preflight import SYNTHETIC_ONLY, minimum_folder, shortfalls

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"  # the repository's, from any working folder
PER_VARIANT = {"02_train"}  # executed once per ablation variant (Table 3)
POOL_KEY = "train_pool"  # the training pool's entry in the manifest's wall_seconds (not a notebook)
# the notebooks whose runs are trained up front, several at once (afvae.pool.STEMS, which imports torch)
POOLED = {"02_train", "03_ablation", "05_weight_norm", "09_comparison", "14_prior_beta"}
# The last notebook's own runs (the beta sweep's beyond Table 3's): trained in the background, JOBS at a time,
# while the notebooks before it run. It waits for them; so does 06, which reads one of them (beta 1e-3), or it
# trains that one itself and the pool waits (experiment.train_cached).
BACKGROUND = {"14_prior_beta"}
BACKGROUND_KEY = "train_background"  # their wall seconds in the manifest, from the pool's end to the last one's
# Beside the background runs (one single-threaded worker per core) a notebook's kernel gets one thread: with more,
# its OpenMP threads would wait on each other for cores the workers hold, and the machine would do less work.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
SHARED_KEY = "single_threaded"  # the manifest's list of the notebooks that ran beside the background runs
LOCK = Path(__file__).resolve().parents[1] / "requirements" / "runtime.lock"
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


def runs_of(nb: Path, base: dict[str, Any], n_seeds: int = 1) -> list[dict[str, Any]]:
    """Parameter sets for one notebook: one run, or for the training notebook one per variant and training seed
    (``SEED``, ``SEED + 1``, ...); ``N_SEEDS`` only where the notebook's parameters cell declares it."""
    if nb.stem in PER_VARIANT:
        return [{**base, "VARIANT": v, "SEED": base["SEED"] + s} for s in range(n_seeds) for v in VARIANTS]
    return [{**base, "N_SEEDS": n_seeds} if "N_SEEDS" in declared(nb) else base]


def parameters_source(nb: Path) -> str:
    """The source of a notebook's ``parameters`` cell ("" when it has none)."""
    cells = json.loads(nb.read_text())["cells"]
    return "".join(next((c["source"] for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), []))


def declared(nb: Path) -> set[str]:
    """The names a notebook's ``parameters`` cell assigns."""
    return set(re.findall(r"^([A-Za-z_]\w*)\s*=", parameters_source(nb), re.MULTILINE))


def run_key(nb: Path, params: dict[str, Any], base_seed: int) -> str:
    """The manifest's name of one notebook run: ``02_train-full``, ``02_train-full-seed1`` for later seeds."""
    if "VARIANT" not in params:
        return nb.stem
    extra = params["SEED"] - base_seed
    return f"{nb.stem}-{params['VARIANT']}" + (f"-seed{extra}" if extra else "")


# tqdm bars drawn as text on the kernel's stderr, which reaches the terminal, rather than as widgets no one sees
_TEXT_BARS = "import tqdm.auto, tqdm.std; tqdm.auto.tqdm = tqdm.std.tqdm"


class _Echo:
    """papermill's ``stderr_file``: the kernel's stderr, passed to ours after a line break that ends the
    notebook's status line (``used`` says whether one was needed)."""

    def __init__(self) -> None:
        self.used = False

    def write(self, text: str) -> int:
        if not self.used:
            print(flush=True)
            self.used = True
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _kernel_options() -> dict[str, Any]:
    """papermill's kernel options for a quiet terminal: CurveZMQ keys from the kernel manager (so the kernel's TCP
    is encrypted and ipykernel has nothing to warn about), text progress bars, carriage returns folded in the
    executed copies, and no interrupt before shutdown (papermill shuts down an idle kernel; jupyter_client's
    SIGINT can land while it finishes its last reply, which it then logs as an error)."""
    from jupyter_client import AsyncKernelManager
    from traitlets.config import Config

    class Manager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return {"config": Config({"KernelManager": {"transport_encryption": "required"}}), "kernel_manager_class": Manager,
            "extra_arguments": [f"--IPKernelApp.exec_lines={_TEXT_BARS}"], "coalesce_streams": True}


def execute(nb: Path, params: dict[str, Any], echo: _Echo | None = None, key: str | None = None) -> float:
    """Run one notebook with papermill, its stderr (progress bars, warnings) to ``echo``; returns wall seconds.
    A failure names notebook and cell."""
    import papermill as pm

    executed = Path(params["RESULTS"]) / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    key = key or nb.stem
    suffix = key[len(nb.stem):]
    out = executed / f"{key}.ipynb"
    echo = echo or _Echo()
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, progress_bar=False, cwd=".", log_output=False,
                            stderr_file=echo, **_kernel_options())
    except pm.PapermillExecutionError as e:
        echo.write("")
        raise SystemExit(
            f"notebook {nb.name}{suffix} failed in cell {e.exec_count} ({e.ename}: {e.evalue}); "
            f"the executed copy with the traceback is {out}"
        ) from None
    return time.perf_counter() - t0


@contextlib.contextmanager
def kernel_threads(n: int | None) -> Iterator[None]:
    """Notebook kernels started inside get ``n`` torch and BLAS threads (``THREAD_VARS``; None: their default);
    the variables are restored after."""
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    if n is not None:
        os.environ.update(dict.fromkeys(THREAD_VARS, str(n)))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def manifest(scale: str, data: str, seed: int, times: dict[str, float], t_total: float,
             results: Path, n_seeds: int = 1) -> dict[str, Any]:
    """What produced these results."""
    import torch

    from afvae import hardware

    headline = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("[0-9][0-9]_*.json"))}
    return {
        "scale": scale,
        "data": data,
        "seed": seed,
        "n_seeds": n_seeds,
        "commit": _git_commit(),
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in PACKAGES},
        "lock": lock_record(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu: {hardware.summary()}",
        "threads": torch.get_num_threads(),
        "matmul_gflops": round(hardware.matmul_gflops(seconds=1.0), 1),  # this CPU's speed, at those threads
        "wall_seconds": {**{k: round(v, 1) for k, v in times.items()}, "total": round(t_total, 1)},
        "headline": headline,
    }


def notebooks_ran(result: dict[str, Any]) -> set[str]:
    """The notebooks a manifest timed: its ``wall_seconds`` keys less the run suffixes, ``total`` and the
    training pool's ``train_pool`` and ``train_background``."""
    return {k.split("-")[0] for k in result["wall_seconds"]} - {"total", POOL_KEY, BACKGROUND_KEY}


def lock_pins(path: Path) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of a requirements (lock) file."""
    return dict(re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", path.read_text(), re.MULTILINE))


def lock_record(path: Path = LOCK) -> dict[str, Any]:
    """The lock ``make setup`` installs from: its sha256, and every package it pins that is installed at another
    version (``{}`` after a locked install; ``make setup UNLOCKED=1`` resolves anew)."""
    if not path.is_file():
        return {"file": path.name, "sha256": None, "not_as_locked": None}
    installed = {name: (_version(name), pinned) for name, pinned in sorted(lock_pins(path).items())}
    return {"file": f"{path.parent.name}/{path.name}", "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "not_as_locked": {name: have for name, (have, pinned) in installed.items() if have != pinned}}


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
    when scale, data, seed and seed count match; ``total`` becomes their sum and ``partial_runs`` counts the merges."""
    if not path.exists():
        return result
    old = json.loads(path.read_text())
    same = {"scale": None, "data": None, "seed": None, "n_seeds": 1}  # key -> its value when absent (older manifests)
    if any(old.get(k, absent) != result.get(k, absent) for k, absent in same.items()):
        return result
    times = {k: v for k, v in old["wall_seconds"].items() if k != "total"} | result["wall_seconds"]
    times.pop("total")
    times["total"] = round(sum(times.values()), 1)
    return {**result, "wall_seconds": times, "partial_runs": old.get("partial_runs", 1) + 1}


def preflight(scale: str, data: str, stems: list[str]) -> dict[str, str]:
    """Every notebook's data needs, checked before the first one runs: prints each notebook that cannot run
    and why (all at once), with the smallest folder that runs them all; exits 2 when none can run.

    Returns the skipped notebooks -> reason.
    """
    try:
        skipped = shortfalls(scale, data, stems)
    except (OSError, ValueError) as e:
        raise SystemExit(f"--data {data!r}: {e}") from None
    nothing = len(skipped) == len(stems)
    stream = sys.stderr if nothing else sys.stdout
    for stem, why in skipped.items():
        print(f"[pre-flight] {stem} skipped: {why}", file=stream)
    if set(skipped) - SYNTHETIC_ONLY:
        print(f"[pre-flight] every notebook runs at {scale} scale on {minimum_folder(scale)}", file=stream, flush=True)
    if nothing:
        print(f"no notebook can run on {data} at {scale} scale: prepare a larger folder", file=sys.stderr)
        raise SystemExit(2)
    return skipped


def pooled_runs(stems: list[str], scale: str, data: str, seed: int, n_seeds: int) -> tuple[list, list]:
    """The runs the notebooks ``stems`` need (``afvae.pool.needed``): those to train before the first of them, and
    those that only ``BACKGROUND``'s notebooks read, to train while the others run."""
    from afvae import pool  # imports torch: after the pre-flight has spoken
    from afvae.checkpoint import run_dir

    front = pool.needed([s for s in stems if s not in BACKGROUND], scale, data, seed, n_seeds)
    names = {run_dir(c, "").name for c in front}
    return front, [c for c in pool.needed(stems, scale, data, seed, n_seeds) if run_dir(c, "").name not in names]


class Background(threading.Thread):
    """``afvae.pool.train_all`` of ``cfgs`` in a thread (its workers are processes), while notebooks run."""

    def __init__(self, cfgs: list, root: Path, jobs: int | None) -> None:
        super().__init__(name="afvae-background-runs", daemon=True)
        self.cfgs, self.root, self.jobs = cfgs, root, jobs
        self.trained: dict[str, float] = {}
        self.error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        from afvae import pool

        t0 = time.perf_counter()
        try:
            self.trained = pool.train_all(self.cfgs, self.root, self.jobs, progress=False, scorers=False)
        except BaseException as e:  # noqa: BLE001 (re-raised in the main thread by ``wait``)
            self.error = e
        self.seconds = time.perf_counter() - t0

    def wait(self, t0: float) -> dict[str, float]:
        """Block until the runs are trained -> name -> wall seconds of each; a failure exits with its message."""
        if self.is_alive():
            print(f"[{time.perf_counter() - t0:7.1f} s] waiting for the {len(self.cfgs)} runs training in the "
                  "background ...", flush=True)
        self.join()
        if self.error is not None:
            raise SystemExit(str(self.error))
        print(f"[{time.perf_counter() - t0:7.1f} s] {len(self.trained)} background runs trained in "
              f"{self.seconds:.1f} s", flush=True)
        return {k: round(v, 1) for k, v in self.trained.items()}


def train_up_front(cfgs: list, results: Path, jobs: int | None, t0: float) -> dict[str, Any]:
    """Train ``cfgs`` (``pooled_runs``), ``jobs`` at a time (``afvae.pool``), before the first notebook that needs
    them runs -> {"seconds": wall seconds, "runs": {"jobs", "seconds" per run trained}}."""
    from afvae import pool  # imports torch: after the pre-flight has spoken

    jobs = jobs or pool.default_jobs(cfgs)
    print(f"[{time.perf_counter() - t0:7.1f} s] training the notebooks' {len(cfgs)} runs, {jobs} at a time "
          "(finished and shipped ones are skipped)", flush=True)
    t1 = time.perf_counter()
    try:
        trained = pool.train_all(cfgs, results / "runs", jobs)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    seconds = time.perf_counter() - t1
    print(f"[{time.perf_counter() - t0:7.1f} s] {len(trained)} runs trained in {seconds:.1f} s", flush=True)
    return {"seconds": seconds, "runs": {"jobs": jobs, "seconds": {k: round(v, 1) for k, v in trained.items()}}}


def run(scale: str, data: str = "synthetic", seed: int = 0, only: list[str] | None = None,
        out: str | Path = ".", retrain: bool = False, n_seeds: int = 1, jobs: int | None = None) -> dict[str, Any]:
    """Execute every notebook in order at ``scale``, writing under ``out`` (figures/, results/); notebooks
    the data cannot serve (``preflight``) are skipped and listed in the manifest's ``skipped``. Models the
    repository ships (``weights/``) are used as they are, unless ``retrain``. ``n_seeds``: training seeds per
    Table 3 variant (1: no intervals). Before the first notebook that trains, every run the selected notebooks
    need is trained ``jobs`` at a time (``train_up_front``; default: one single-threaded worker per core). At
    ``SHIPPED_SCALE`` (``long``) nothing is trained unless ``retrain``: notebooks with runs that ``weights/``
    does not ship are skipped (``afvae.pool.unshipped``). The notebooks and training workers share one render
    of each image set through ``results/cache/renders`` (``$AFVAE_RENDER_CACHE``, unless already set)."""
    out = Path(out).resolve()
    os.environ["AFVAE_RETRAIN"] = "1" if retrain else "0"  # read by afvae.experiment in the notebooks' kernels
    before = os.environ.get(render_cache.ENV)
    os.environ[render_cache.ENV] = before or str(out / "results" / "cache" / "renders")  # inherited by kernels
    try:
        return _run(scale, data, seed, only, out, retrain, n_seeds, jobs)
    finally:
        if before is None:
            del os.environ[render_cache.ENV]


def _run(scale: str, data: str, seed: int, only: list[str] | None, out: Path, retrain: bool, n_seeds: int,
         jobs: int | None) -> dict[str, Any]:
    """``run``'s body, with its environment set."""
    results = out / "results"
    base = {"SCALE": scale, "DATA": data, "SEED": seed, "FIGURES": str(out / "figures"), "RESULTS": str(results)}
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    selected = notebooks(only)
    skipped = preflight(scale, data, [nb.stem for nb in selected])
    if data != "synthetic":
        from afvae.data.datasets import folder_schema  # imports torch: after the pre-flight has spoken

        try:
            folder_schema(data)  # an unknown keypoint schema fails here, before any notebook runs
        except (OSError, ValueError) as e:
            raise SystemExit(f"--data {data!r}: {e}") from None
    if scale == SHIPPED_SCALE and not retrain:  # trains nothing: notebooks with unshipped runs are skipped
        from afvae import pool  # imports torch: after the pre-flight has spoken

        missing = pool.unshipped([nb.stem for nb in selected if nb.stem not in skipped], scale, data, seed, n_seeds,
                                 results)
        for stem, why in missing.items():
            print(f"[pre-flight] {stem} skipped: {why}", flush=True)
        skipped |= missing
    pooled: dict[str, Any] = {}
    background: Background | None = None
    shared: list[str] = []  # notebooks run beside the background runs, single-threaded
    for nb in selected:
        if nb.stem in skipped:
            continue
        if not pooled and nb.stem in POOLED:
            front, back = pooled_runs([p.stem for p in selected if p.stem not in skipped], scale, data, seed,
                                      n_seeds)
            pooled = train_up_front(front, results, jobs, t0)
            times[POOL_KEY] = pooled["seconds"]
            if back:
                background = Background(back, results / "runs", jobs)
                background.start()
        if nb.stem in BACKGROUND and background is not None:
            pooled["runs"]["seconds"] |= background.wait(t0)
            times[BACKGROUND_KEY] = background.seconds
            background = None
        for params in runs_of(nb, base, n_seeds):
            key = run_key(nb, params, seed)
            beside = background is not None and background.is_alive()  # its workers hold the cores
            print(f"[{time.perf_counter() - t0:7.1f} s] {key}{' (1 thread)' * beside} ...", end="", flush=True)
            echo = _Echo()
            with kernel_threads(1 if beside else None):
                times[key] = execute(nb, params, echo, key)
            shared += [key] * beside
            again = f"[{time.perf_counter() - t0:7.1f} s] {key}" if echo.used else ""
            print(f"{again} done in {times[key]:.1f} s", flush=True)
    result = manifest(scale, data, seed, times, time.perf_counter() - t0, results, n_seeds) | {
        "skipped": skipped, "retrain": retrain, POOL_KEY: pooled.get("runs"), SHARED_KEY: shared}
    path = results / "manifest.json"
    if only:
        result = _merged(result, path)
    write_text(path, json.dumps(result, indent=2) + "\n")
    print(f"{len(times.keys() - {POOL_KEY, BACKGROUND_KEY})} notebook runs done in {time.perf_counter() - t0:.0f} s; manifest: {path}")
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m afvae.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", default="default", choices=sorted(PRESETS))
    p.add_argument("--data", default="synthetic", help="'synthetic' or a prepared data folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="training seeds per Table 3 variant (3: 95 %% intervals)")
    p.add_argument("--only", nargs="*", help="notebook stems to run (default: all)")
    p.add_argument("--out", default=".", help="root for figures/ and results/ (default: the repository)")
    p.add_argument("--retrain", action="store_true", help="train every model, even those weights/ ships")
    p.add_argument("--jobs", type=int, help="runs trained at once before the notebooks (default: one per CPU core, "
                   "1 on a GPU)")
    a = p.parse_args(argv)
    if a.data != "synthetic" and not Path(a.data).is_dir():
        raise SystemExit(f"--data {a.data!r}: no such folder; use 'synthetic' or a folder made by "
                         "python -m afvae.data.real.prepare")
    if a.seeds < 1:
        raise SystemExit(f"--seeds {a.seeds}: give at least 1 (3 for intervals)")
    if a.scale == SHIPPED_SCALE and a.seeds > 1 and not a.retrain:
        raise SystemExit(f"--scale {a.scale} --seeds {a.seeds}: weights/ ships one training seed per model; use "
                         "--seeds 1, or --retrain to train the others")
    if a.jobs is not None and a.jobs < 1:
        raise SystemExit(f"--jobs {a.jobs}: give at least 1")
    run(a.scale, a.data, a.seed, a.only, a.out, a.retrain, a.seeds, a.jobs)


if __name__ == "__main__":
    sys.exit(main())
