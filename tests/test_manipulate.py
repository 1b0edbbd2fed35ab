"""``python -m afvae.manipulate``: a PNG for each kind of target, and one clear line for each kind of bad input."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from afvae import manipulate, zoo


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("manipulate")
    return str(zoo.train("full", root / "runs", root / "cache", scale="smoke"))


def _main(*argv: str) -> None:
    manipulate.run(manipulate.parser().parse_args(list(argv)))


def _landmarks(tmp_path, n: int, low: float = 4, high: float = 27) -> str:
    path = tmp_path / f"lm{n}.npy"
    np.save(path, np.random.default_rng(0).uniform(low, high, (n, 2)).astype(np.float32))
    return str(path)


@pytest.mark.parametrize("target, panels", [(["--yaw", "30"], 4), (["--expression", "smile"], 4),
                                            (["--landmarks", "LM"], 3)])
def test_writes_source_target_result(run, tmp_path, target, panels):
    target = [_landmarks(tmp_path, 68) if t == "LM" else t for t in target]
    out = tmp_path / "out.png"
    _main("synthetic:2", *target, "--run", run, "-o", str(out))
    width, height = Image.open(out).size
    # source | target boundary | result (| truth): about 0.78 heights of width a panel
    assert abs(width / height - (0.15 + 0.78 * panels)) < 0.3


def test_pose_changes_the_output(run):
    import torch
    from afvae.checkpoint import load_model

    model, cfg = load_model(run)
    face = manipulate.source_face("synthetic:2", cfg, None)
    a = manipulate.parser().parse_args(["synthetic:2", "--yaw", "-40"])
    b = manipulate.parser().parse_args(["synthetic:2", "--yaw", "40"])
    (ca, ta), (cb, tb) = manipulate.target_of(a, face, cfg), manipulate.target_of(b, face, cfg)
    assert not torch.equal(ca, cb) and not torch.equal(ta, tb)


@pytest.mark.parametrize("argv, says", [
    (["synthetic:2"], "give one target"),
    (["synthetic:2", "--yaw", "3", "--landmarks", "x.npy"], "give one target"),
    (["synthetic:999", "--yaw", "3"], "the test split has"),
    (["synthetic:2", "--expression", "grin"], "choose one of"),
    (["synthetic:2", "--landmarks", "LM5"], "5 points, but the model reads the face68 schema"),
    (["synthetic:2", "--landmarks", "FAR"], "outside the model's 32 x 32 frame"),
    (["BIG", "--landmarks", "LM"], "the model reads aligned 32 x 32 faces"),
    (["nosuch.png", "--yaw", "3"], "neither synthetic:N"),
])
def test_bad_input_is_one_line(run, tmp_path, capsys, argv, says):
    big = tmp_path / "big.png"
    Image.new("RGB", (100, 80)).save(big)
    files = {"LM5": _landmarks(tmp_path, 5), "LM": _landmarks(tmp_path, 68), "BIG": str(big),
             "FAR": _landmarks(tmp_path, 68, 40, 90)}
    with pytest.raises(SystemExit) as e:
        _main(*[files.get(v, v) for v in argv], "--run", run, "-o", str(tmp_path / "o.png"))
    err = capsys.readouterr().err
    assert e.value.code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_a_shipped_model_is_chosen_by_name_and_an_unknown_name_is_one_line(tmp_path, capsys):
    assert manipulate.parser().parse_args(["synthetic:2", "--yaw", "3"]).model is None  # the shipped full model
    with pytest.raises(SystemExit):  # a run folder or a shipped model, not both
        manipulate.parser().parse_args(["synthetic:2", "--yaw", "3", "--run", "r", "--model", "full"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        _main("synthetic:2", "--yaw", "3", "--model", "nosuch", "-o", str(tmp_path / "o.png"))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "ships no model 'nosuch'" in err and len(err.strip().splitlines()) == 1, err
