"""One command-line convention: ``--help`` before torch is imported; bad input is one line on stderr, exit 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["afvae.train", "afvae.evaluate", "afvae.explore", "afvae.bench", "afvae.pipeline", "afvae.study"]


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
    (["-m", "afvae.bench", "nosuch"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(args, says):
    p = _run(*args)
    assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr
