"""Headless Chromium through Playwright, for the study's browser test and the README screenshots.

Playwright is a ``dev`` dependency and the browser is the system's (Debian: ``apt-get install chromium``), or
the file named by ``$AFVAE_CHROMIUM``; nothing is downloaded.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

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
def headless_page(width: int = 820, height: int = 760, executable: str | None = None) -> Iterator[Any]:
    """A Playwright page in headless Chromium (``executable``, else ``find_chromium()``); RuntimeError saying
    what to install when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise RuntimeError("the browser tools need playwright: pip install -e '.[dev]'") from e
    exe = executable or find_chromium()
    if exe is None:
        raise RuntimeError(f"no Chromium found: apt-get install chromium, or set ${CHROMIUM_ENV} to its path")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            yield context.new_page()  # more tabs of the same browser: page.context.new_page()
        finally:
            browser.close()
