"""Benchmarks: ``python -m afvae.bench NAME`` runs ``afvae.bench.NAME.run()``.

Each benchmark module has ``run() -> dict[str, float | int | str]``; the runner prints
``key: value`` lines and writes the flat dict to ``results/bench/NAME.json``, then calls the module's
``figure(bench_dir)`` when it has one.
Speed targets are shown here, never asserted by timed tests.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
from pathlib import Path
from typing import Any

from afvae.atomic import write_text


def available() -> list[str]:
    """Names of the benchmark modules in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: the CPU (``afvae.hardware.describe``), torch's threads, the GPU."""
    import torch  # here, not at the top: ``python -m afvae.bench --help`` answers before torch loads

    from afvae import hardware

    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **hardware.describe(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def write_results(name: str, results: dict[str, Any], out_dir: str | Path = "results/bench") -> Path:
    """Atomically write ``results`` as JSON to ``out_dir/name.json``."""
    return write_text(Path(out_dir) / f"{name}.json", json.dumps(results, indent=2, sort_keys=True) + "\n")


def main(name: str, out_dir: str | Path = "results/bench") -> dict[str, Any]:
    """Run benchmark ``name``, print ``key: value`` lines, write its JSON."""
    if name not in available():
        raise ValueError(f"unknown benchmark {name!r}; available: {', '.join(available())}")
    module = importlib.import_module(f"afvae.bench.{name}")
    results = {**module.run(), **machine_info()}
    for key, value in results.items():
        print(f"{key}: {value}")
    print(f"written: {write_results(name, results, out_dir)}")
    if hasattr(module, "figure"):  # a benchmark that also draws from its results
        print(f"figure: {module.figure(out_dir)}")
    return results
