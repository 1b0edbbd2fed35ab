"""Shared fixtures: a tiny config and a batch of synthetic faces."""
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


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped where no CUDA device exists (CI, laptops)."""
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
