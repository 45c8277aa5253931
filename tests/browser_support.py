"""A real browser for the tests: Debian's Chromium driven by Playwright (no browser download).

async with launched_chromium() as browser:
    page = await browser.new_page()
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, async_playwright

from infra.browser import ensure_chromium


def _say(message: str) -> None:
    print(f"chromium: {message}", flush=True)


@asynccontextmanager
async def launched_chromium(*, headless: bool = True) -> AsyncIterator[Browser]:
    """Install Chromium if needed, launch it headless, and close it afterwards."""
    executable = await asyncio.to_thread(ensure_chromium, _say)  # apt, on a first run
    # Chromium refuses to run as root inside its sandbox; CI and these machines run as root.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(executable), headless=headless, args=args
        )
        try:
            yield browser
        finally:
            await browser.close()
