"""The quality benchmark (``afvae.bench.quality``) on the SSIM recipe (``quality_ssim``) with the data-dependent
initialisation of its weight-normalised convs (Salimans & Kingma, 2016), a 10 % warm-up and beta 1e-4
(``bench.quality.init_recipe``): the same 38.8 TFLOP, edits and scorers; its last point's edits drawn as
``figures/quality_init_edits.png`` (``python -m afvae.bench quality_init``)."""
from __future__ import annotations

from typing import Any

from afvae.bench.quality import figure, init_recipe, run as run_quality  # noqa: F401 (figure: the runner draws)


def run() -> dict[str, Any]:
    return run_quality(init_recipe(), show="quality_init_edits")
