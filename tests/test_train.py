"""Training loop: determinism, exact resume, NaN handling, checkpoints as data, DDP replicas."""
import json
import math
import os
import re
import socket

import pytest
import torch
import torch.multiprocessing as mp

from afvae import hardware, losses
from afvae.checkpoint import load_checkpoint
from afvae.checkpoint import load_model
from afvae.config import VARIANTS
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
    with open(tmp_path / "cut" / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')  # killed while logging
    history = train(tiny_cfg, tmp_path / "cut", resume=True, progress=False)
    full, cut = _params(tmp_path / "full"), _params(tmp_path / "cut")
    assert full.keys() == cut.keys()
    assert all(torch.equal(full[k], cut[k]) for k in full)
    logged = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 7)) and history[-1]["step"] == 6


def test_recipe_resume_equals_uninterrupted(tiny_cfg, tmp_path):
    """Warm-up, decay and the EMA of the weights are restored exactly, and evaluation uses the EMA."""
    cfg = tiny_cfg.replace(train={"warmup": 0.3, "decay": "cosine", "ema": 0.9})
    train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "cut", stop_at=2, progress=False)
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    full, cut = (load_checkpoint(tmp_path / r / "checkpoint.pt") for r in ("full", "cut"))
    for a, b in ((full["model"], cut["model"]), (full["states"]["ema"], cut["states"]["ema"])):
        assert all(torch.equal(a[k], b[k]) for k in a)
    model, _ = load_model(tmp_path / "full")
    ema = {k.removeprefix("module."): v for k, v in full["states"]["ema"].items() if k != "n_averaged"}
    raw = model.state_dict()
    assert all(torch.equal(raw[k], ema[k]) for k in raw)  # the EMA weights, not the last ones
    assert any(not torch.equal(ema[k], full["model"][k]) for k in ema)


def test_lr_factor_schedules(tiny_cfg):
    from afvae.methods import lr_factor

    tc = tiny_cfg.replace(train={"steps": 100, "warmup": 0.1, "decay": "linear"}).train
    assert [lr_factor(s, tc) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, tc) == 1.0 and lr_factor(55, tc) == pytest.approx(0.5) and lr_factor(99, tc) > 0
    cos = tc.__class__(**{**tc.__dict__, "decay": "cosine"})
    assert lr_factor(55, cos) == pytest.approx(0.5) and lr_factor(32, cos) > lr_factor(32, tc)
    assert lr_factor(50, tc.__class__(**{**tc.__dict__, "decay": "constant", "warmup": 0.0})) == 1.0


def test_rerun_without_resume_or_overwrite_is_refused(tiny_cfg, tmp_path):
    train(tiny_cfg, tmp_path, stop_at=2, progress=False)
    logged = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(ValueError, match="already holds a run.*--resume.*--overwrite"):
        train(tiny_cfg, tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2  # untouched
    assert (tmp_path / "metrics.jsonl").read_bytes() == logged
    train(tiny_cfg, tmp_path, overwrite=True, stop_at=1, progress=False)  # starts over, on purpose
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 1
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1]
    assert [p.name for p in (tmp_path / "samples").iterdir()] == ["step_000001.png"]  # none of the old run's


def test_resume_with_another_config_is_refused(tiny_cfg, tmp_path):
    train(tiny_cfg, tmp_path, stop_at=2, progress=False)
    no_kl = tiny_cfg.replace(name="no_kl", model={"kl": False})  # the same shapes: the weights would load
    with pytest.raises(ValueError, match=r"different config \(name: 'full' -> 'no_kl', model.kl: True -> False\)"):
        train(no_kl, tmp_path, resume=True, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 2 and state["config"]["name"] == "full"
    assert json.loads((tmp_path / "config.json").read_text())["name"] == "full"
    longer = tiny_cfg.replace(train={"steps": 8, "log_every": 2, "device": "cpu"})  # a resume may change these
    assert train(longer, tmp_path, resume=True, stop_at=3, progress=False)[-1]["step"] == 3


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
    with pytest.raises(FloatingPointError, match=r"full at step 4: non-finite loss .*checkpoint.pt from step 2"):
        train(tiny_cfg, tmp_path, progress=False)
    # the step-4 checkpoint is the one whose parameters gave the NaN: the step-2 one is kept
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2
    assert sorted(p.name for p in tmp_path.glob("checkpoint*")) == ["checkpoint.pt"]


def test_non_finite_parameters_are_never_checkpointed(tiny_cfg, tmp_path, monkeypatch):
    real, calls = torch.optim.Adam.step, {"n": 0}

    def poisoned(self, *args, **kw):  # the last update leaves a NaN weight behind a finite loss
        out = real(self, *args, **kw)
        calls["n"] += 1
        if calls["n"] == tiny_cfg.train.steps:
            self.param_groups[0]["params"][0].data.fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", poisoned)
    with pytest.raises(FloatingPointError, match="at step 6: non-finite parameters; kept .* from step 4"):
        train(tiny_cfg, tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_nan_stop_keeps_a_checkpoint_that_trains_on_at_a_lower_lr(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(train={"lr": 100.0, "checkpoint_every": 1})  # diverges within a few steps
    with pytest.raises(FloatingPointError, match="non-finite loss") as stop:
        train(cfg, tmp_path, progress=False)
    failed = int(re.search(r"at step (\d+)", str(stop.value)).group(1))
    kept = load_checkpoint(tmp_path / "checkpoint.pt")
    assert failed >= 2 and kept["step"] == failed - 1 and f"from step {kept['step']}" in str(stop.value)
    assert "--resume --lr 10 " in str(stop.value)
    lower = cfg.replace(train={"lr": 1e-4})
    history = train(lower, tmp_path, resume=True, progress=False)  # the advice works: lower lr, resume
    assert history[-1]["step"] == 6 and all(math.isfinite(r["loss"]) for r in history)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["states"]["model"]["param_groups"][0]["lr"] == 1e-4 and state["config"]["train"]["lr"] == 1e-4
    assert json.loads((tmp_path / "config.json").read_text())["train"]["lr"] == 1e-4
    assert [r["lr"] for r in history] == [100.0] * kept["step"] + [1e-4] * (6 - kept["step"])  # what ran


def test_nan_stop_before_any_good_checkpoint_says_so(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(train={"lr": 100.0, "checkpoint_every": 5})
    with pytest.raises(FloatingPointError, match="no checkpoint was kept") as stop:
        train(cfg, tmp_path, progress=False)
    assert "is kept" not in str(stop.value) and not list(tmp_path.glob("checkpoint*"))


def test_collapse_stop_keeps_the_checkpoint_from_before_it(tiny_cfg, tmp_path, monkeypatch):
    """A run whose output saturates (white: L1 above a grey image's, the loss finite) stops after
    ``CollapseWatch.STEPS`` such steps, drops the checkpoint on trial and keeps the one from before the collapse."""
    from afvae import model as networks
    from afvae.train import CollapseWatch

    real, calls = networks.Decoder.forward, {"n": 0}

    def saturating(self, *args, **kw):  # the training forward pass of step index 3 onwards gives white
        out = real(self, *args, **kw)
        calls["n"] += 1
        return torch.ones_like(out) + 0 * out if calls["n"] > 3 else out

    monkeypatch.setattr(networks.Decoder, "forward", saturating)
    monkeypatch.setattr(CollapseWatch, "STEPS", 2)
    with pytest.raises(FloatingPointError, match=r"at step 4: collapsed: its L1 \(.*\) has stayed above a grey "
                                                 r"image's .* since step 3; kept .* from step 2, from before step 3"):
        train(tiny_cfg, tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2 and not list(tmp_path.glob("*pending*"))


def test_collapse_watch_counts_steps_in_a_row_above_grey():
    from afvae.train import CollapseWatch

    watch = CollapseWatch()
    above = [watch.collapsed(s, 0.9, 0.4) for s in range(CollapseWatch.STEPS - 1)]
    assert not any(above) and watch.since == 0
    assert not watch.collapsed(CollapseWatch.STEPS - 1, 0.3, 0.4) and watch.since is None  # below: starts over
    assert not any(watch.collapsed(s, 0.9, 0.4) for s in range(200, 200 + CollapseWatch.STEPS - 1))
    assert watch.collapsed(200 + CollapseWatch.STEPS - 1, 0.9, 0.4) and "since step 200" in watch.what


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


@pytest.mark.parametrize("variant", ["full", "no_kl"])  # no_kl: its unused prior must not be trainable under DDP
def test_ddp_replicas_agree(tiny_cfg, tmp_path, variant):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tiny_cfg.replace(name=variant, **VARIANTS[variant], train={"steps": 3, "batch_size": 8,
                                                                      "channels_last": False})
    mp.spawn(_ddp_worker, args=(port, cfg, str(tmp_path)), nprocs=2, join=True)
    rep = torch.load(tmp_path / "replicas.pt", weights_only=True)
    assert torch.equal(rep["r0"], rep["r1"])
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3


def test_cpu_bf16_resumes_exactly_and_is_fp32_where_emulated(tiny_cfg, tmp_path, monkeypatch):
    """``train.amp`` on CPU: bf16 forward passes where the CPU has bf16 in hardware, resumed exactly; float32,
    the same run to the bit, where it would be emulated."""
    cfg = tiny_cfg.replace(train={"amp": True})
    fp32 = [r["loss"] for r in train(tiny_cfg, tmp_path / "fp32", progress=False)]
    if hardware.native_bf16("cpu"):
        bf16 = [r["loss"] for r in train(cfg, tmp_path / "full", progress=False)]
        assert bf16 != fp32 and all(math.isfinite(v) for v in bf16)
        assert abs(bf16[-1] - fp32[-1]) < 0.05 * fp32[-1]  # the same training, to bf16's precision
        train(cfg, tmp_path / "cut", stop_at=3, progress=False)
        train(cfg, tmp_path / "cut", resume=True, progress=False)
        full, cut = _params(tmp_path / "full"), _params(tmp_path / "cut")
        assert all(torch.equal(full[k], cut[k]) for k in full)
    monkeypatch.setattr(hardware, "native_bf16", lambda device: False)
    assert [r["loss"] for r in train(cfg, tmp_path / "emulated", progress=False)] == fp32


@pytest.mark.gpu
def test_cuda_bf16_channels_last(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(train={"device": "cuda", "amp": True, "channels_last": True})
    history = train(cfg, tmp_path, progress=False)
    assert all(math.isfinite(r["loss"]) for r in history) and history[-1]["loss"] < history[0]["loss"] * 1.5
    model, _ = load_model(tmp_path, device="cuda")
    assert next(model.parameters()).is_cuda


def test_data_init_sets_the_start_resumes_exactly_and_keys_the_run(tiny_cfg, tmp_path):
    """train.data_init changes the starting weights (and so the run's hash); a resumed run does not redo it."""
    cfg = tiny_cfg.replace(train={"data_init": 8})
    assert cfg.hash() != tiny_cfg.hash() and tiny_cfg.replace(train={"data_init": 0}).hash() == tiny_cfg.hash()
    plain = train(tiny_cfg, tmp_path / "plain", progress=False)
    full = train(cfg, tmp_path / "full", progress=False)
    assert plain[0]["loss"] != full[0]["loss"]
    train(cfg, tmp_path / "cut", stop_at=3, progress=False)
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    a, b = _params(tmp_path / "full"), _params(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
