"""The quality benchmark (``afvae.bench.quality``) on ``bench.quality.ssim_recipe``: the default preset before the
data-dependent initialisation and z's broadcast (half widths, fresh identities, peak 3e-3, a 1 - SSIM term at 0.3,
feature matching at 0.3); the same 38.8 TFLOP, edits and scorers; its last point's edits drawn as
``figures/quality_ssim_edits.png`` (``python -m afvae.bench quality_ssim``)."""
from __future__ import annotations

from typing import Any

from afvae.bench.quality import figure, run as run_quality, ssim_recipe  # noqa: F401 (figure: the runner draws)


def run() -> dict[str, Any]:
    return run_quality(ssim_recipe(), show="quality_ssim_edits")
