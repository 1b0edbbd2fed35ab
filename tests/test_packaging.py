"""The two dependency lists (pyproject.toml, environment.yml) must agree."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict[str, str]:
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = proj["dependencies"] + proj["optional-dependencies"]["dev"]
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment() -> dict[str, str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = [line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")]
    return {_name(r): r.replace(" ", "") for r in reqs if not r.startswith("-e")}


def test_environment_matches_pyproject():
    py, env = _pyproject(), _environment()
    assert set(py) == set(env), f"only in pyproject: {set(py) - set(env)}; only in environment.yml: {set(env) - set(py)}"
    assert py == env, {k: (py[k], env[k]) for k in py if py[k] != env[k]}


def test_pins_admit_local_torch():
    py = _pyproject()
    assert "<2.15" in py["torch"] and "<0.30" in py["torchvision"]


def test_design_card_layout():
    for entry in ("afvae", "notebooks", "figures", "data", "tests", "environment.yml", "README.md",
                  "pyproject.toml", "Makefile", ".ci/run"):
        assert (ROOT / entry).exists(), entry
