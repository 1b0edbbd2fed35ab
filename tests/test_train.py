"""Training loop: determinism, exact resume, NaN handling, checkpoints as data, DDP replicas."""
import json
import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from afvae import losses
from afvae.checkpoint import load_checkpoint
from afvae.checkpoint import load_model
from afvae.experiment import train_cached
from afvae.train import fit, train

pytestmark = pytest.mark.slow


def _params(run) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoint.pt")["model"]


def test_two_runs_identical(tiny_cfg, tmp_path):
    a = train(tiny_cfg, tmp_path / "a", progress=False)
    b = train(tiny_cfg, tmp_path / "b", progress=False)
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert a[0]["loss"] != a[-1]["loss"]


def test_resume_equals_uninterrupted(tiny_cfg, tmp_path):
    train(tiny_cfg, tmp_path / "full", progress=False)
    train(tiny_cfg, tmp_path / "cut", stop_at=3, progress=False)  # interrupted after step 3
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 3
    history = train(tiny_cfg, tmp_path / "cut", resume=True, progress=False)
    full, cut = _params(tmp_path / "full"), _params(tmp_path / "cut")
    assert full.keys() == cut.keys()
    assert all(torch.equal(full[k], cut[k]) for k in full)
    logged = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 7)) and history[-1]["step"] == 6


def test_nan_stops_and_keeps_last_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    real = losses.elbo_terms
    calls = {"n": 0}

    def poisoned(**kw):
        calls["n"] += 1
        terms = real(**kw)
        if calls["n"] == 5:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(losses, "elbo_terms", poisoned)
    with pytest.raises(FloatingPointError, match="full at step 4: non-finite loss"):
        train(tiny_cfg, tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 4


def test_checkpoint_is_data(tiny_cfg, tmp_path):
    run = train_cached(tiny_cfg, tmp_path, progress=False)
    model, cfg = load_model(run)
    assert cfg == tiny_cfg and model.prior.centres.shape[0] == tiny_cfg.model.n_focal
    assert train_cached(tiny_cfg, tmp_path, progress=False) == run  # cached: no retraining
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt is not a readable afvae checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def _ddp_worker(rank: int, port: int, cfg, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        model, _ = fit(cfg, out, progress=False)  # joins the gloo process group itself
        params = torch.cat([p.detach().flatten() for p in model.parameters()])
        gathered = [torch.zeros_like(params) for _ in range(2)]
        dist.all_gather(gathered, params)
        if rank == 0:
            torch.save({"r0": gathered[0], "r1": gathered[1]}, f"{out}/replicas.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_replicas_agree(tiny_cfg, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tiny_cfg.replace(train={"steps": 3, "batch_size": 8, "channels_last": False})
    mp.spawn(_ddp_worker, args=(port, cfg, str(tmp_path)), nprocs=2, join=True)
    rep = torch.load(tmp_path / "replicas.pt", weights_only=True)
    assert torch.equal(rep["r0"], rep["r1"])
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3


@pytest.mark.gpu
def test_cuda_bf16_channels_last(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(train={"device": "cuda", "amp": True, "channels_last": True})
    history = train(cfg, tmp_path, progress=False)
    assert all(math.isfinite(r["loss"]) for r in history) and history[-1]["loss"] < history[0]["loss"] * 1.5
    model, _ = load_model(tmp_path, device="cuda")
    assert next(model.parameters()).is_cuda
