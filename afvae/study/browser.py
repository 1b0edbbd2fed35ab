"""Drive the study page in a real headless Chromium (Playwright): the README screenshot and the browser test.

The browser itself comes from ``afvae.browser`` (Playwright + the system's Chromium).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from afvae.atomic import atomic_path
from afvae.browser import headless_page
from afvae.study.server import running


def wait_ready(page: Any, timeout_ms: float = 10_000) -> str:
    """Wait until the page shows a trial with its images loaded (or the end); returns the trial id or ''.

    Waits with a selector, not a JavaScript predicate: the page's CSP forbids the eval that needs.
    """
    page.locator("body[data-ready]:not([data-ready='']), #done:not([hidden])").first.wait_for(
        state="attached", timeout=timeout_ms)
    return page.locator("body").get_attribute("data-ready") or ""


def screenshot(study_dir: str | Path, out: str | Path, *, kind: str = "pair", participant: str = "demo") -> Path:
    """Screenshot the page at its first ``kind`` trial (fool | pair) into ``out`` (PNG), answers kept in a
    temporary file so the study's own answers.csv is untouched."""
    if kind not in ("fool", "pair"):
        raise ValueError(f"kind must be 'fool' or 'pair', got {kind!r}")
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp, running(study_dir, answers=Path(tmp) / "answers.csv") as server:
        recorder = server.recorder
        while kind == "pair" and (trial := recorder.state(participant)["trial"]) and trial["kind"] == "fool":
            recorder.answer(participant, trial["id"], "real")  # skip to the comparisons
        with headless_page() as page:
            page.goto(f"{server.url}?p={participant}")
            wait_ready(page)
            with atomic_path(out) as tmp_png:
                page.screenshot(path=str(tmp_png), full_page=True)
    return out
