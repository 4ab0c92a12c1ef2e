"""Headless Chromium from Debian's packages (`chromium`, `chromium-driver`), driven by Selenium.

Nothing is downloaded at test time: `make test` installs the two packages with apt-get when they
are missing (`make browser`), and the driver is Debian's own, matching the browser's version.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
"""Where browser tests leave their screenshots (kept by CI, ignored by git)."""


def require_chromium() -> None:
    """Fail (not skip) with the way out when the browser or its driver is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: run `make browser` (apt-get install chromium"
            " chromium-driver), which `make test` does by itself",
            pytrace=False,
        )


@contextmanager
def chromium(width: int = 1280, height: int = 1500) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile, quit (and its profile removed) on exit."""
    require_chromium()
    profile = tempfile.mkdtemp(prefix="clicktrack-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
