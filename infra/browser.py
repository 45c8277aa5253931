"""Debian's Chromium for the browser tests: Playwright drives it, and never downloads a browser."""

from __future__ import annotations

import shutil
from pathlib import Path

from infra.services import InstallError, Progress, apt_install

CHROMIUM = Path("/usr/bin/chromium")


def find_chromium() -> Path | None:
    """The Chromium executable on this machine, if there is one."""
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None


def ensure_chromium(progress: Progress) -> Path:
    """Install Debian's ``chromium`` package unless it is there; return the executable."""
    found = find_chromium()
    if found is not None:
        return found
    apt_install("chromium", progress)
    found = find_chromium()
    if found is None:
        raise InstallError("the chromium package installed no /usr/bin/chromium")
    return found
