"""The browser the plugin's tests drive: Debian's headless Chromium, through
Playwright for Python (its own browser download cannot work here), one for the
session; and the folder their screenshots go to."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

SCREENSHOTS_ENV = "ML_WORKER_SCREENSHOTS"
# Headless, as root (no sandbox), and nothing that reaches past this machine.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

_screenshots: list[Path] = []


@pytest.fixture(scope="session")
async def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "chromium not found: install Debian's package (apt-get install chromium);"
            " ./ml-worker test does"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where screenshots go: ``ML_WORKER_SCREENSHOTS`` when set, else a folder of
    the session's temporary ones (printed at the end of the run)."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    _screenshots.append(path)
    return path


def pytest_terminal_summary(terminalreporter) -> None:
    for path in _screenshots:
        terminalreporter.write_line(f"plugin screenshots: {path}")
