"""One command-line convention: ``--help`` before torch is imported; bad input is one line on stderr, exit 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["afvae.train", "afvae.evaluate", "afvae.explore", "afvae.bench", "afvae.pipeline", "afvae.study",
            "afvae.data.synthetic", "afvae.data.real.prepare", "afvae.zoo", "afvae.manipulate"]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_does_not_import_torch(command):
    p = _run("-X", "importtime", "-m", command, "--help")
    assert p.returncode == 0 and "usage: python -m" in p.stdout
    imported = {line.split("|")[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported, f"{command} --help imports torch"


@pytest.mark.parametrize("args, says", [
    (["-m", "afvae.train", "nosuch"], "neither a preset"),
    (["-m", "afvae.train", "smoke", "--steps", "many"], "invalid int value"),
    (["-m", "afvae.evaluate", "missing-run/checkpoint.pt"], "no checkpoint at"),
    (["-m", "afvae.evaluate", "missing-run", "--n", "0"], "--n: must be >= 1, got 0"),
    (["-m", "afvae.bench", "nosuch"], "invalid choice"),
    (["-m", "afvae.data.real.prepare", "nosuch", "--root", ".", "--out", "x"], "invalid choice: 'nosuch'"),
])
def test_bad_input_is_one_line_and_exit_2(args, says):
    p = _run(*args)
    assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr


def test_training_into_a_used_folder_needs_resume_or_overwrite(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"an earlier run")
    p = _run("-m", "afvae.train", "smoke", "--out", str(tmp_path))
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.splitlines()) == 1
    assert "already holds a run" in p.stderr and "--resume" in p.stderr and "--overwrite" in p.stderr
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"an earlier run"


def _config_file(tmp_path: Path, change: dict) -> str:
    """The smoke preset as a config JSON, with ``change`` ({section: {field: value}} or a whole section) on top."""
    from afvae.config import get_config

    d = get_config("smoke").to_dict()
    for section, fields in change.items():
        d[section] = {**d[section], **fields} if isinstance(fields, dict) else fields
    (tmp_path / "config.json").write_text(json.dumps(d))
    return str(tmp_path / "config.json")


NO_FEATURES = {"loss": {"feature_net": "none"}}
BAD_TRAINING = {  # what the command line gets -> what the one line must say
    "steps 0": (["smoke", "--steps", "0"], "train.steps must be >= 1, got 0"),
    "steps -5": (["smoke", "--steps", "-5"], "train.steps must be >= 1, got -5"),
    "lr 0": (["smoke", "--lr", "0"], "train.lr must be > 0, got 0.0"),
    "device gpu": (["smoke", "--device", "gpu"], "train.device must be cpu, cuda, cuda:N or mps, got 'gpu'"),
    "batch 0": ({"train": {"batch_size": 0}}, "train.batch_size must be >= 1, got 0"),
    "checkpoint_every 0": ({"train": {"checkpoint_every": 0}}, "train.checkpoint_every must be >= 1, got 0"),
    "norm layer": ({"model": {"norm": "layer"}}, "model.norm must be one of 'weight', 'batch', 'none'"),
    "size != resolution": ({"data": {"size": 64}}, "data.size (64) must equal model.resolution (32)"),
    "lr a word": ({"train": {"lr": "fast"}}, "train.lr must be a number, got 'fast'"),
    "section not an object": ({"train": 5}, "section train must be an object"),
    "batch > training set": ({**NO_FEATURES, "train": {"batch_size": 100_000}}, "larger than the training set"),
    "no such data": (["smoke", "--data", "no/such/folder"], "no/such/folder"),
    "out is a file": (["smoke", "--out", "{tmp}/config.json"], "config.json"),
    "cuda without CUDA": (["smoke", "--device", "cuda"], "torch sees no CUDA device here; train with --device cpu"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAINING))
def test_bad_training_input_is_one_line_and_exit_2(case, tmp_path, capsys):
    from afvae import train

    given, says = BAD_TRAINING[case]
    if case == "cuda without CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = [a.format(tmp=tmp_path) for a in given] if isinstance(given, list) else [_config_file(tmp_path, given)]
    if isinstance(given, list):
        _config_file(tmp_path, {})
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as e:
        train.main(argv)  # in process: any exception but SystemExit would be the traceback a user sees
    err = capsys.readouterr().err
    assert e.value.code == 2 and says in err and err.startswith("python -m afvae.train: "), err
    assert len(err.strip().splitlines()) == 1, err


def test_debug_shows_the_traceback():
    p = _run("-m", "afvae.train", "smoke", "--steps", "0", "--debug")
    assert p.returncode != 0 and "Traceback" in p.stderr and "train.steps must be >= 1, got 0" in p.stderr


def test_pipeline_finds_its_notebooks_from_any_folder(tmp_path, monkeypatch):
    from afvae import pipeline

    monkeypatch.chdir(tmp_path)  # outside the repository
    found = pipeline.notebooks()
    assert found and found[0].name == "00_data.ipynb" and all(p.is_file() for p in found)
    assert [p.stem for p in pipeline.notebooks(["02_train"])] == ["02_train"]


def test_pipeline_seeds_train_every_variant_per_seed_and_reach_the_notebooks_that_ask():
    from afvae import pipeline
    from afvae.config import VARIANTS

    base = {"SCALE": "smoke", "SEED": 5}
    [train] = pipeline.notebooks(["02_train"])
    runs = pipeline.runs_of(train, base, n_seeds=3)
    assert len(runs) == 3 * len(VARIANTS) and {r["SEED"] for r in runs} == {5, 6, 7}
    assert [pipeline.run_key(train, r, 5) for r in runs[:1] + runs[-1:]] == ["02_train-full", f"02_train-{list(VARIANTS)[-1]}-seed2"]
    assert "N_SEEDS" not in runs[0]  # 02_train trains one seed per run
    for stem in ("03_ablation", "05_weight_norm"):
        [nb] = pipeline.notebooks([stem])
        assert "N_SEEDS" in pipeline.declared(nb) and pipeline.runs_of(nb, base, 3) == [base | {"N_SEEDS": 3}]
    [other] = pipeline.notebooks(["06_interpolation"])
    assert pipeline.runs_of(other, base, 3) == [base] and "SEED" in pipeline.declared(other)


def test_every_notebook_parameter_parses_for_papermill():
    import nbformat
    from papermill.translators import PythonTranslator

    from afvae import pipeline

    for nb in pipeline.notebooks():
        cells = [c for c in nbformat.read(nb, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
        assert len(cells) == 1, f"{nb.name}: one parameters cell"
        parsed = {p.name for p in PythonTranslator.inspect(cells[0])}
        assert parsed == pipeline.declared(nb) and {"SCALE", "SEED"} <= parsed, nb.name  # an unparsed line is lost


def test_explorer_without_its_browser_is_one_line(tmp_path):
    p = _run("-m", "afvae.explore", "--screenshot", str(tmp_path / "x.png"), "--chromium", "/no/such/chromium")
    assert p.returncode == 2 and "Traceback" not in p.stderr and "/no/such/chromium" in p.stderr.splitlines()[-1]
