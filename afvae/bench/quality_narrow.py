"""The quality benchmark (``afvae.bench.quality``) on the default recipe at half its widths, trained at the same
training FLOPs on as many images as they buy, each of a new identity (``narrow_recipe``): the same 38.8 TFLOP
spent on 76,752 images of a model with a quarter of the convolutions' FLOPs, instead of 27,200 images of 180
people. Same edits, same scorers."""
from __future__ import annotations

from typing import Any

from afvae.bench.quality import figure, narrow_recipe, run as run_quality  # noqa: F401 (figure: the runner draws)


def run() -> dict[str, Any]:
    return run_quality(narrow_recipe())
