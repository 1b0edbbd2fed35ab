"""The quality benchmark (``afvae.bench.quality``) on the default recipe trained on fresh identities: the same
27,200 training images, each of its own identity (``data.train_images``), instead of 3.8 passes over the 7,200
images of 180 identities. Same edits, same scorers (fitted to the population), same compute."""
from __future__ import annotations

from typing import Any

from afvae.bench.quality import fresh_recipe, figure, run as run_quality  # noqa: F401 (figure: the runner draws)


def run() -> dict[str, Any]:
    return run_quality(fresh_recipe())
