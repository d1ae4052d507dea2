"""Headless Chromium for the end-to-end page tests: the Debian packages chromium + chromium-driver and selenium (pip,
pinned by constraints.txt), installed when missing (never skipped), with progress printed and install errors shown."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager

from e2e_support import REPO

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1000,1400",
)


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    print("browser setup:", " ".join(argv), flush=True)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        output = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{output}")


def ensure_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths, installing the Debian packages and selenium first when missing."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):  # `make test` runs the same script first, with its progress on the terminal
        _run([str(REPO / "scripts" / "ensure-browser.sh")], {**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _run([sys.executable, "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt"), "selenium"])
    assert chromium and driver, "chromium / chromedriver are still missing after apt-get install"
    print(f"browser: {chromium}, driver: {driver}", flush=True)
    return chromium, driver


@contextmanager
def chromium_driver():
    binary, driver_path = ensure_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="sv-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
