"""The quality benchmark (``afvae.bench.quality``) on the recipe before the time-to-quality work, for the
before / after curves of ``figures/time_to_quality.png``."""
from __future__ import annotations

from typing import Any

from afvae.bench.quality import before_recipe, figure, run as run_quality  # noqa: F401 (figure: the runner draws)


def run() -> dict[str, Any]:
    return run_quality(before_recipe())
