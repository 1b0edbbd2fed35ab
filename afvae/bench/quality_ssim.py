"""The quality benchmark (``afvae.bench.quality``) on the half-width fresh-identity recipe with a peak learning
rate of 3e-3, a 1 - SSIM reconstruction term at weight 0.3 and feature matching at 0.3 (``ssim_recipe``): the same
38.8 TFLOP, the same edits, the same scorers; its last edits drawn in ``figures/quality_edits_ssim.png``."""
from __future__ import annotations

from typing import Any

from afvae.bench.quality import figure, ssim_recipe, run as run_quality  # noqa: F401 (figure: the runner draws)


def run() -> dict[str, Any]:
    return run_quality(ssim_recipe(), show="quality_edits_ssim")
