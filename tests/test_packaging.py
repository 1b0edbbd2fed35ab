"""The dependency lists (pyproject.toml, requirements/*.lock, environment.yml) must agree."""
import hashlib
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from afvae import pipeline

ROOT = Path(__file__).resolve().parents[1]
LOCKS = {"runtime": ROOT / "requirements" / "runtime.lock", "dev": ROOT / "requirements" / "dev.lock"}


def _name(req: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(req).name).lower()


def _pyproject(kind: str = "dev") -> dict[str, str]:
    """``name -> requirement`` of pyproject.toml: the runtime dependencies, plus the dev extras for ``dev``."""
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = proj["dependencies"] + (proj["optional-dependencies"]["dev"] if kind == "dev" else [])
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment() -> dict[str, str]:
    """``name -> requirement`` of environment.yml's pip section, without the project itself."""
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    return {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-e")}


def _entries(text: str) -> dict[str, list[str]]:
    """``name -> [sha256, ...]`` of each ``name==version`` entry of a hashed lock."""
    entries = re.findall(r"^([a-z0-9][a-z0-9._-]*)==\S+((?: \\\n +--hash=sha256:[0-9a-f]{64})+)", text, re.MULTILINE)
    return {name: re.findall(r"[0-9a-f]{64}", hashes) for name, hashes in entries}


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_lock_satisfies_pyproject(kind):
    pins, wanted = pipeline.lock_pins(LOCKS[kind]), _pyproject(kind)
    assert set(wanted) <= set(pins), f"requirements/{kind}.lock lacks {set(wanted) - set(pins)}: run `make lock`"
    bad = {n: (r, pins[n]) for n, r in wanted.items() if not Requirement(r).specifier.contains(pins[n], prereleases=True)}
    assert not bad, f"requirements/{kind}.lock pins outside pyproject.toml's ranges {bad}: run `make lock`"


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_every_locked_package_has_hashes(kind):
    text = LOCKS[kind].read_text()
    hashed = _entries(text)
    assert set(hashed) == set(pipeline.lock_pins(LOCKS[kind])) and all(hashed.values())
    assert "\n-e " not in text and "file://" not in text  # nothing that --require-hashes refuses


def test_dev_lock_extends_runtime_lock():
    runtime, dev = pipeline.lock_pins(LOCKS["runtime"]), pipeline.lock_pins(LOCKS["dev"])
    assert {n: dev.get(n) for n in runtime} == runtime, "runtime.lock and dev.lock disagree: run `make lock`"
    assert set(dev) - set(runtime) >= {"pytest", "playwright"}  # the test extras stay out of `make paper`
    assert not {"pytest", "playwright"} & set(runtime)


def test_environment_matches_pyproject_and_lock():
    py, env, pins = _pyproject(), _environment(), pipeline.lock_pins(LOCKS["dev"])
    assert set(py) == set(env), f"only in pyproject: {set(py) - set(env)}; only in environment.yml: {set(env) - set(py)}"
    want = {n: f"{n}=={pins[n]}" for n in py}
    assert env == want, f"environment.yml should pin { {n: want[n] for n in want if env[n] != want[n]} }"
    python = next(d for d in yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
                  if isinstance(d, str) and d.startswith("python"))
    assert python == "python=3.11"  # the Python the locks are made for (Makefile: --python-version 3.11)


def test_pins_admit_local_torch():
    py = _pyproject()
    assert "<2.15" in py["torch"] and "<0.30" in py["torchvision"]


def test_pyproject_license_is_spdx():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert proj["license"] == "MIT" and not any("License ::" in c for c in proj.get("classifiers", []))


def test_manifest_records_the_lock(tmp_path):
    lock = tmp_path / "runtime.lock"
    have = pipeline._version("numpy")
    lock.write_text(f"numpy=={have} \\\n    --hash=sha256:{'0' * 64}\ntqdm==0.0.1 \\\n    --hash=sha256:{'1' * 64}\n")
    record = pipeline.lock_record(lock)
    assert record["sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert record["not_as_locked"] == {"tqdm": pipeline._version("tqdm")}  # numpy is as locked, tqdm is not
    saved = pipeline.manifest("smoke", "synthetic", 0, {}, 0.0, tmp_path)
    assert saved["lock"]["file"] == "requirements/runtime.lock"
    assert saved["lock"]["sha256"] == hashlib.sha256(LOCKS["runtime"].read_bytes()).hexdigest()


def test_design_card_layout():
    for entry in ("afvae", "notebooks", "figures", "data", "tests", "environment.yml", "README.md",
                  "pyproject.toml", "Makefile", ".ci/run", "requirements/runtime.lock", "requirements/dev.lock"):
        assert (ROOT / entry).exists(), entry
