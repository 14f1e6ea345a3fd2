"""Open a page in headless Chromium (Debian's `chromium`, driven by Playwright from pip), to check and
screenshot what a person would see. Playwright's own browser download is never used: it needs a network."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dllg.errors import DllgError

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM_NAMES = ("chromium", "chromium-browser")
VIEWPORT = {"width": 1000, "height": 800}


def find_chromium() -> str | None:
    """The system Chromium's path, or None."""
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def missing_browser() -> str | None:
    """Why a page cannot be opened here (one line with the fix), or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[browser]' (make test does)"
    if find_chromium() is None:
        return "no chromium on PATH: apt-get install chromium (make chromium does)"
    return None


@contextmanager
def open_page(path: str | Path) -> Iterator[Page]:
    """The local HTML file `path`, loaded in a fresh headless Chromium page."""
    reason = missing_browser()
    if reason is not None:
        raise DllgError(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses to start its sandbox as root (the dev machines and CI run as root)
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(Path(path).resolve().as_uri())
            if errors:  # a script that failed leaves a page that only looks right
                raise DllgError(f"{path} raised in the browser: {errors[0]}")
            yield page
        finally:
            browser.close()


def screenshot(html_path: str | Path, png_path: str | Path) -> Path:
    """A full-page PNG of the HTML file; the PNG's path."""
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with open_page(html_path) as page:
        page.screenshot(path=str(png_path), full_page=True)
    return png_path
