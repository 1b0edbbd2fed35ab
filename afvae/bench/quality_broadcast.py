"""The quality benchmark (``afvae.bench.quality``) on ``bench.quality.broadcast_recipe``: the default preset at batch
8 over the same 73,216 images at peak 2e-3, the broadcast recipe as the screen first found it; the same 38.7 TFLOP,
edits and scorers; its last point's edits drawn as ``figures/quality_broadcast_edits.png``
(``python -m afvae.bench quality_broadcast``)."""
from __future__ import annotations

from typing import Any

from afvae.bench.quality import broadcast_recipe, figure, run as run_quality  # noqa: F401 (figure: the runner draws)


def run() -> dict[str, Any]:
    return run_quality(broadcast_recipe(), show="quality_broadcast_edits")
