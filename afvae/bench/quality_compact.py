"""The quality benchmark (``afvae.bench.quality``) on the compact preset, the default before the SSIM recipe: the
same 38.8 TFLOP, the same edits, the same scorers (``python -m afvae.bench quality_compact``)."""
from __future__ import annotations

from typing import Any

from afvae.bench.quality import figure, run as run_quality  # noqa: F401 (figure: the runner draws)
from afvae.config import get_config


def run() -> dict[str, Any]:
    return run_quality(get_config("compact"))
