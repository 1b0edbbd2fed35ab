"""The shipped weights: every file in weights/manifest.json loads, matches its checksum and its metrics; the
loader refuses a changed file; the run cache installs a shipped model instead of training it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from afvae import experiment, shipped, zoo
from afvae import weights_manifest as wm
from afvae.checkpoint import load_model, run_dir
from afvae.config import Config

TOLERANCE = 2e-3  # |recomputed - manifest| for the 64-pair check metrics (threads and BLAS may differ)
MAX_BYTES = 100e6
ENTRIES = wm.manifest(wm.WEIGHTS)


NETS = wm.nets(wm.WEIGHTS)


def test_shipped_total_size():
    files = list(wm.WEIGHTS.rglob("*.safetensors"))
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    listed = {e["file"] for e in [*ENTRIES.values(), *NETS.values()]}
    assert {p.relative_to(wm.WEIGHTS).as_posix() for p in files} == listed, "a file without a manifest entry"
    body = json.loads((wm.WEIGHTS / wm.MANIFEST).read_text())
    assert body["total_bytes"] == sum(p.stat().st_size for p in files)


@pytest.mark.parametrize("name", sorted(NETS))
def test_shipped_evaluation_net_installs_into_the_cache(name, tmp_path, monkeypatch):
    """Each shipped evaluation net matches its checksum, is the one its loader asks for with the shipped faces'
    data, and is read from the copy installed in the cache, exactly, instead of being trained."""
    from afvae import features, scorer

    entry = NETS[name]
    tensors = load_file(str(wm.WEIGHTS / entry["file"]))
    assert wm.sha256(wm.WEIGHTS / entry["file"]) == entry["sha256"]
    for module, train in ((features, "train_factor_net"), (features, "train_landmark_net"), (scorer, "train_scorer")):
        monkeypatch.setattr(module, train, lambda *a, **k: pytest.fail("trained instead of installed"))
    load = {"factor_net": features.load_factor_net, "landmark_net": features.load_landmark_net,
            "scorer_net": scorer.load_scorer}[entry["kind"]]
    net = load(zoo.zoo_config("full").data, tmp_path, progress=False)
    assert (tmp_path / name).exists() and net.meta["steps"] == entry["meta"]["steps"]
    for k, v in net.net.state_dict().items():
        assert torch.equal(v, tensors[wm.NET_PREFIX + k]), k


def test_net_export_round_trip_and_refusals(tmp_path, monkeypatch):
    """export_net -> install_net gives back the cache file's tensors and meta; a changed file is refused in one
    line; RETRAIN=1 ignores shipped nets."""
    from afvae.features import FactorNet

    net, cache = FactorNet(6, widths=(4, 8, 8, 8)), tmp_path / "cache" / "factor_net-abc.pt"
    cache.parent.mkdir()
    torch.save({"model": net.state_dict(), "mean": torch.arange(6.0), "std": torch.ones(6), "steps": 7}, cache)
    folder = tmp_path / "weights"
    entry = wm.export_net(cache, folder)
    zoo.write_manifest({}, folder, {entry["cache_file"]: entry})
    assert entry["file"] == "nets/factor_net-abc.safetensors" and entry["kind"] == "factor_net"
    out = tmp_path / "other" / cache.name
    assert wm.install_net(out, folder) and not wm.install_net(tmp_path / "other" / "unknown.pt", folder)
    got, want = torch.load(out, weights_only=True), torch.load(cache, weights_only=True)
    assert got["steps"] == 7 and torch.equal(got["mean"], want["mean"])
    assert all(torch.equal(got["model"][k], v) for k, v in want["model"].items())
    monkeypatch.setenv("AFVAE_RETRAIN", "1")
    assert not wm.install_net(tmp_path / "third" / cache.name, folder)
    monkeypatch.delenv("AFVAE_RETRAIN")
    path = folder / entry["file"]
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    with pytest.raises(wm.ShippedMismatch, match="factor_net-abc.safetensors: SHA-256"):
        wm.install_net(tmp_path / "fourth" / cache.name, folder)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_shipped_model_matches_manifest(name, tmp_path):
    entry = ENTRIES[name]
    path = wm.WEIGHTS / entry["file"]
    tensors = load_file(str(path))  # plain safetensors, no afvae code involved
    assert tensors and wm.sha256(path) == entry["sha256"]
    cfg = Config.from_dict(entry["config"])
    assert cfg.hash() == entry["config_hash"]
    run = shipped.install(cfg, tmp_path)
    model, saved = load_model(run)
    got = zoo.check_metrics(model, saved)
    for k, want in entry["check"].items():
        assert got[k] == pytest.approx(want, abs=TOLERANCE), k


@pytest.fixture(scope="module")
def smoke_weights(tmp_path_factory):
    """A smoke-scale full model, trained and exported into a weights folder of its own."""
    root = tmp_path_factory.mktemp("zoo")
    zoo.train("full", root / "runs", root / "cache", scale="smoke")
    zoo.export("full", root / "runs", root / "cache", root / "weights", scale="smoke")
    return root


def test_export_writes_a_verifiable_entry(smoke_weights):
    entry = wm.manifest(smoke_weights / "weights")["full"]
    assert entry["sha256"] == wm.sha256(smoke_weights / "weights" / "full.safetensors")
    assert entry["dtype"] in ("float16", "float32")
    assert entry["dtype"] == "float16" or not all(v["within"] for v in entry["fp16_check"].values())
    assert set(entry["check"]) == set(zoo.CHECKED) and entry["curve"][-1]["step"] == 30
    assert entry["images_seen"] == 30 * 16 and entry["train_tflop"] > 0


def test_install_matches_the_trained_model(smoke_weights, tmp_path):
    cfg = zoo.zoo_config("full", "smoke")
    run = shipped.install(cfg, tmp_path, smoke_weights / "weights")
    model, _ = load_model(run)
    trained, _ = load_model(run_dir(cfg, smoke_weights / "runs"))
    x, c = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 13, 32, 32)
    with torch.no_grad():  # fp16 storage: close, not equal
        assert torch.allclose(model.translate(x, c, c.flip(0)), trained.translate(x, c, c.flip(0)), atol=0.02)
    assert json.loads((run / "config.json").read_text())["name"] == "full"


def _copy(weights: Path, tmp_path: Path) -> Path:
    out = tmp_path / "weights"
    out.mkdir()
    for p in weights.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    return out


def test_changed_file_is_refused(smoke_weights, tmp_path):
    folder = _copy(smoke_weights / "weights", tmp_path)
    data = bytearray((folder / "full.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "full.safetensors").write_bytes(bytes(data))
    with pytest.raises(wm.ShippedMismatch, match="full.safetensors: SHA-256"):
        shipped.install(zoo.zoo_config("full", "smoke"), tmp_path / "runs", folder)


def test_changed_config_is_refused(smoke_weights, tmp_path):
    folder = _copy(smoke_weights / "weights", tmp_path)
    body = json.loads((folder / "manifest.json").read_text())
    body["models"][0]["config"]["loss"]["beta"] = 1.0  # the config no longer hashes to config_hash
    (folder / "manifest.json").write_text(json.dumps(body))
    with pytest.raises(wm.ShippedMismatch, match="hashes to"):
        shipped.load_state(wm.manifest(folder)["full"], folder)


def test_missing_file_says_how_to_regenerate(smoke_weights, tmp_path):
    folder = _copy(smoke_weights / "weights", tmp_path)
    (folder / "full.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="make weights"):
        shipped.install(zoo.zoo_config("full", "smoke"), tmp_path / "runs", folder)


def test_run_cache_installs_shipped_unless_retraining(smoke_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("AFVAE_WEIGHTS", str(smoke_weights / "weights"))
    cfg = zoo.zoo_config("full", "smoke")
    trained = []
    monkeypatch.setattr(experiment, "train", lambda *a, **k: trained.append(a))
    run = experiment.train_cached(cfg, tmp_path / "a" / "runs")
    assert not trained and (run / "checkpoint.pt").exists()
    assert torch.load(run / "checkpoint.pt", weights_only=True)["shipped"] == "full.safetensors"
    monkeypatch.setenv("AFVAE_RETRAIN", "1")
    experiment.train_cached(cfg, tmp_path / "b" / "runs")
    assert len(trained) == 1


def test_shipped_run_cannot_be_resumed(smoke_weights, tmp_path):
    from afvae.train import train

    cfg = zoo.zoo_config("full", "smoke")
    run = shipped.install(cfg, tmp_path, smoke_weights / "weights")
    with pytest.raises(ValueError, match="cannot be resumed exactly"):
        train(cfg.replace(train={"steps": 40}), run, resume=True, progress=False, cache_root=smoke_weights / "cache")


def test_reference_uses_the_shipped_full_model_when_none_is_trained(smoke_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("AFVAE_WEIGHTS", str(smoke_weights / "weights"))
    shipped_cfg = zoo.zoo_config("full", "smoke")  # stands in for the long preset's full model
    monkeypatch.setattr(experiment, "get_config", lambda scale, variant="full": shipped_cfg)
    trained = []
    monkeypatch.setattr(experiment, "train", lambda *a, **k: trained.append(a))
    local = shipped_cfg.replace(train={"steps": 31})  # nothing cached, nothing shipped
    _, cfg, run = experiment.reference(local, tmp_path)
    assert cfg.hash() == shipped_cfg.hash() and not trained
    monkeypatch.setattr(experiment, "trained", lambda cfg, results, progress: (None, cfg, None))
    ablation = local.replace(name="no_kl", model={"kl": False})
    assert experiment.reference(ablation, tmp_path / "b")[1] is ablation  # never replaced by the full model
    monkeypatch.setenv("AFVAE_RETRAIN", "1")
    assert experiment.reference(local, tmp_path / "c")[1] is local


def test_sittings_add_up_across_a_resume(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    zoo.record_sitting(run, {"from_step": 0, "machine": "m1", "commit": "a", "t0": 0.0}, 850)
    zoo.record_sitting(run, {"from_step": 0, "machine": "m1", "commit": "a", "t0": 0.0}, 1700)  # same sitting, later
    zoo.record_sitting(run, {"from_step": 850, "machine": "m2", "commit": "b", "t0": 0.0}, 2550)  # resumed at 850
    rows = [json.loads(line) for line in (run / zoo.SITTINGS).read_text().splitlines()]
    assert [(r["from_step"], r["to_step"], r["machine"]) for r in rows] == [(0, 850, "m1"), (850, 2550, "m2")]


def test_status_reads_where_a_run_stands_from_its_files(tmp_path):
    cfg = zoo.zoo_config("StarGAN", "smoke")
    run = run_dir(cfg, tmp_path)
    assert zoo.status("StarGAN", tmp_path, "smoke")["step"] == 0
    assert "no checkpoint" in zoo.status_line(zoo.status("StarGAN", tmp_path, "smoke"))
    run.mkdir(parents=True)
    zoo.record_sitting(run, {"from_step": 0, "machine": "m", "commit": "a", "t0": 0.0}, 10)
    rows = [json.loads(line) for line in (run / zoo.SITTINGS).read_text().splitlines()]
    (run / zoo.SITTINGS).write_text(json.dumps({**rows[0], "seconds": 100.0}) + "\n"
                                    + json.dumps({**rows[0], "from_step": 10, "to_step": 20, "seconds": 30.0}) + "\n")
    (run / zoo.CURVE).write_text(json.dumps({"step": 20, "yaw_ssim": 0.5, "identity_sim": 0.6}) + "\n")
    st = zoo.status("StarGAN", tmp_path, "smoke")
    assert (st["step"], st["steps"], st["sittings"], st["seconds"]) == (20, cfg.train.steps, 2, 130.0)
    assert st["seconds_per_step"] == 3.0  # the last sitting's rate
    assert st["seconds_to_go"] == 3.0 * (cfg.train.steps - 20)
    assert st["scores"] == {"yaw_ssim": 0.5, "identity_sim": 0.6} and st["scored_step"] == 20
    line = zoo.status_line(st)
    assert f"step 20 of {cfg.train.steps}" in line and "3.00 s a step" in line and "yaw_ssim 0.500" in line


def test_training_records_its_sitting(smoke_weights):
    rows = (zoo.run_dir(zoo.zoo_config("full", "smoke"), smoke_weights / "runs") / zoo.SITTINGS).read_text()
    row = json.loads(rows.splitlines()[-1])
    assert row["to_step"] == 30 and row["seconds"] > 0 and row["machine"] and row["commit"]


@pytest.mark.parametrize("name", sorted(zoo.SUBJECTS))
def test_subject_models_are_notebook_12s(name):
    """The shipped hands and cats models have notebook 12's config, so its run cache installs them."""
    for scale in ("default", "long"):  # the scales whose notebook 12 uses the shipped models (zoo.subject_scale)
        cfg = experiment.config(zoo.subject_scale(scale), "full", zoo.SUBJECTS[name], 0)
        assert zoo.zoo_config(name).hash() == cfg.hash()
    assert zoo.scored(zoo.zoo_config(name)) == zoo.SWAP_SCORED and zoo.scored(zoo.zoo_config("full")) == zoo.SCORED


def test_device_moves_a_run_without_renaming_it(monkeypatch):
    """``zoo train --device`` trains the same run folder on another machine, and a copied tree (no git) names
    its commit with AFVAE_COMMIT."""
    a = zoo.parser().parse_args(["train", "no_kl", "--runs", "r", "--device", "cuda", "--scale", "smoke"])
    assert (a.device, a.scale) == ("cuda", "smoke")
    cfg = zoo.zoo_config("no_kl", "smoke")
    assert cfg.replace(train={"device": "cuda"}).hash() == cfg.hash()
    monkeypatch.setattr(zoo.subprocess, "run", lambda *_, **__: (_ for _ in ()).throw(OSError("no git")))
    monkeypatch.setenv("AFVAE_COMMIT", "abc123")
    assert zoo.commit() == "abc123"


def test_ablation_gaps_are_advantages_over_the_full_model(tmp_path):
    from afvae.plotting import QUALITY_PANELS, plot_ablation_gaps

    full = [{"images_seen": n, "yaw_ssim": 0.7, "expr_changed_l1": 0.06, "identity_sim": 0.8, "landmark_nme": 0.08}
            for n in (100, 200, 400)]
    better = [{**r, "yaw_ssim": 0.72, "expr_changed_l1": 0.05, "identity_sim": 0.79, "landmark_nme": 0.07} for r in full]
    fig = plot_ablation_gaps({"full": full, "v": better}, "full", {m: 0.01 for m, *_ in QUALITY_PANELS}, start=200)
    gaps = {ax.get_title().split(":")[0]: ax.get_lines()[-1].get_data() for ax in fig.axes[:len(QUALITY_PANELS)]}
    assert list(gaps["yaw_ssim"][0]) == [200, 400]  # from ``start`` on
    assert gaps["yaw_ssim"][1] == pytest.approx([0.02, 0.02]) and gaps["identity_sim"][1] == pytest.approx([-0.01] * 2)
    assert gaps["expr_changed_l1"][1] == pytest.approx([0.01] * 2)  # lower is better: a smaller error is ahead
    assert gaps["landmark_nme"][1] == pytest.approx([0.01] * 2)
    assert zoo.gap_figure(figures=tmp_path) == tmp_path / "ablation_gaps.png"  # the shipped variants' curves


def test_the_long_scale_finds_every_model_it_needs_in_weights(tmp_path):
    """``make paper SCALE=long`` trains nothing: the Table 3 notebooks' runs, Fig. 7's and the tutorial's models
    are shipped; the beta sweep (notebook 14) is not, so the pipeline skips it there, naming what is missing,
    as it skips Table 1 (notebook 09) until every GAN baseline is shipped. Notebook 06's optional row is left
    out there when unshipped."""
    from afvae import pipeline, pool, tutorial

    stems = [p.stem for p in pipeline.notebooks()]
    skipped = pool.unshipped(stems, "long", results=tmp_path)
    assert "14_prior_beta" in skipped and "9 of its runs" in skipped["14_prior_beta"]
    assert set(skipped) <= {"14_prior_beta", "09_comparison"}
    # a baseline counts as shipped only at the current recipe's config hash
    assert ("09_comparison" in skipped) == any(shipped.entry_for(zoo.zoo_config(n)) is None for n in zoo.BASELINE_NAMES)
    cfgs = pool.needed(set(stems) - set(skipped), "long")  # Table 3 (and Table 1 once shipped)
    cfgs += [experiment.config(zoo.SUBJECT_SCALE, "full", source) for source in zoo.SUBJECTS.values()]  # 12
    cfgs += [tutorial.tiny_config("long", prior, beta) for prior, beta in zoo.TUTORIAL.values()]  # 11
    assert len(cfgs) >= 7 + 2 + 4 and experiment.trains_nothing("long") and not experiment.trains_nothing("default")
    assert [c.name for c in cfgs if shipped.entry_for(c) is None] == []
    assert all(shipped.entry_for(experiment.config("long", v)) for v in zoo.AFVAE_NAMES)


@pytest.mark.parametrize("name", sorted(zoo.TUTORIAL))
def test_tutorial_models_are_notebook_11s(name):
    """The shipped tutorial models have notebook 11's configs at every scale but smoke, so it installs them."""
    from afvae import tutorial

    for scale in ("default", "long"):
        assert zoo.zoo_config(name).hash() == tutorial.tiny_config(scale, *zoo.TUTORIAL[name]).hash()
    assert zoo.zoo_config(name, "smoke").hash() == tutorial.tiny_config("smoke", *zoo.TUTORIAL[name]).hash()
    assert zoo.scored(zoo.zoo_config(name)) == zoo.SWAP_SCORED


def test_an_experiment_is_the_full_model_on_fresh_identities_and_never_trained_unnamed():
    from afvae.config import get_config

    for scale in ("smoke", "long"):
        cfg, full = zoo.zoo_config("full_fresh", scale), get_config(scale, "full")
        assert cfg.replace(data={"train_images": 0}) == full and cfg.hash() != full.hash()
        assert cfg.data.train_images * 4 == cfg.train.steps * cfg.train.batch_size
    assert "full_fresh" not in zoo.NAMES and zoo.parser().parse_args(["train", "--runs", "r"]).names == list(zoo.NAMES)
