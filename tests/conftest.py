"""Shared fixtures: a tiny config and a batch of synthetic faces; under pytest-xdist, each worker's share of the
cores and the longest test files first."""
import os

import pytest
import torch

from afvae.config import Config, get_config


@pytest.fixture
def tiny_cfg() -> Config:
    """Smoke preset, no feature network (the fastest config that trains for real)."""
    return get_config("smoke").replace(loss={"feature_net": "none"}, train={"steps": 6, "checkpoint_every": 2,
                                                                            "sample_every": 6, "log_every": 1})


@pytest.fixture(scope="session")
def batch() -> dict[str, torch.Tensor]:
    """Eight 32-px synthetic faces with their boundary maps and landmarks."""
    from afvae.data.datasets import build_dataset, collate

    ds = build_dataset(get_config("smoke").data, "train")
    return collate(ds, torch.arange(8))


# The longest files (each runs the pipeline at smoke scale, or trains evaluation nets), in the order xdist should
# start them (make test: --dist loadfile --no-loadscope-reorder), so that no worker begins one near the end.
LONGEST = ("test_pipeline.py", "test_data_sources.py", "test_evaluate.py", "test_data_hands.py")


def _workers() -> int:
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def pytest_configure(config):
    """Under xdist each worker gets its share of the cores (torch threads, and OMP_NUM_THREADS for the notebook
    kernels it starts), so that two workers do not run four threads on two cores."""
    if _workers() > 1:
        share = max(1, (os.cpu_count() or 1) // _workers())
        os.environ["OMP_NUM_THREADS"] = str(share)
        torch.set_num_threads(share)


def pytest_collection_modifyitems(config, items):
    """Under xdist, the ``LONGEST`` files first; tests marked ``gpu`` are skipped where no CUDA device exists (CI,
    laptops)."""
    if _workers() > 1:
        rank = {name: i for i, name in enumerate(LONGEST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST)))  # stable: the rest keep their order
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module (use with ``pytest.mark.usefixtures``); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
