"""Drive the study page in a real headless Chromium (Playwright): the README screenshot and the browser test.

Playwright is a ``dev`` dependency and the browser is the system's (Debian: ``apt-get install chromium``), or
the file named by ``$AFVAE_CHROMIUM``; nothing is downloaded.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from afvae.atomic import atomic_path
from afvae.study.server import running

CHROMIUM_ENV = "AFVAE_CHROMIUM"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def find_chromium() -> str | None:
    """Path of a Chromium executable: ``$AFVAE_CHROMIUM``, else chromium / chromium-browser on PATH, else None."""
    given = os.environ.get(CHROMIUM_ENV)
    if given:
        return given if Path(given).is_file() else None
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


@contextlib.contextmanager
def headless_page(width: int = 820, height: int = 760) -> Iterator[Any]:
    """A Playwright page in headless Chromium; RuntimeError saying what to install when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise RuntimeError("the browser tools need playwright: pip install -e '.[dev]'") from e
    exe = find_chromium()
    if exe is None:
        raise RuntimeError(f"no Chromium found: apt-get install chromium, or set ${CHROMIUM_ENV} to its path")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            yield context.new_page()  # more tabs of the same browser: page.context.new_page()
        finally:
            browser.close()


def wait_ready(page: Any, timeout_ms: float = 10_000) -> str:
    """Wait until the page shows a trial with its images loaded (or the end); returns the trial id or ''."""
    page.wait_for_function("document.body.dataset.ready || document.getElementById('done').hidden === false",
                           timeout=timeout_ms)
    return page.evaluate("document.body.dataset.ready || ''")


def screenshot(study_dir: str | Path, out: str | Path, *, kind: str = "pair", participant: str = "demo") -> Path:
    """Screenshot the page at its first ``kind`` trial (fool | pair) into ``out`` (PNG), answers kept in a
    temporary file so the study's own answers.csv is untouched."""
    if kind not in ("fool", "pair"):
        raise ValueError(f"kind must be 'fool' or 'pair', got {kind!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
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
