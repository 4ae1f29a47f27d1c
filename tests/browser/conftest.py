"""The browser for the browser tests: Debian's Chromium, driven by Playwright.

Playwright for Python is pointed at a system browser; no browser is ever downloaded
(``playwright install`` is never run). The browser is ``OUTBOX_TEST_CHROMIUM`` when
set, else the first of ``chromium``, ``chromium-browser``, ``google-chrome`` on the
PATH. Without one the browser tests skip with the command that installs it, except
under CI, where tests/conftest.py turns that skip into a failure (``.ci/run``
installs Debian's ``chromium``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import Browser, sync_playwright

#: Names a Chromium goes by on the PATH, in the order they are looked for.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Flags for a headless browser as root on a machine without a network or a sandbox.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
INSTALL_HINT = "apt-get update && apt-get install -y chromium, or OUTBOX_TEST_CHROMIUM=/path/to/chromium"


def find_chromium() -> tuple[Path | None, str]:
    """The browser to drive, or None and why there is none."""
    explicit = os.environ.get("OUTBOX_TEST_CHROMIUM", "").strip()
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path, ""
        return None, f"OUTBOX_TEST_CHROMIUM={explicit} is not an executable file"
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found), ""
    return None, f"no Chromium on the PATH ({', '.join(CHROMIUM_NAMES)})"


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    path, why = find_chromium()
    if path is None:
        pytest.skip(f"browser tests need a Chromium: {why} ({INSTALL_HINT})")
    return path


@pytest.fixture
def browser(chromium_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the
    # test (setting up rows, checking them) are plain sync code, and the server
    # answers the browser from its own thread or process.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
            # Under Playwright's loop the ORM calls of the test ran on connections of
            # their own (asgiref scopes them by context): close them, or the test
            # database cannot be dropped at the end of the run.
            connections.close_all()
