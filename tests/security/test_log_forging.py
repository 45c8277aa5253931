"""A client writing its own line into a service's log: a path with ``%0A`` (a line feed) and
the text of a fake record after it, on requests that are logged (one that fails in a handler,
one refused as nested too deeply) and one that is not. The service runs as ``switchboard web``
runs it, its log read from its stderr: no line of it starts with the client's text."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from core.settings import SERVICES, Settings
from tests.integration.api_harness import new_tenant

SERVICE = "conversations"
FORGED = "fake log line"
FORGED_PATH = "x%0D%0A" + FORGED.replace(" ", "%20")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def logged_service(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The conversations service alone on a port of its own, its stderr to a file."""
    port = _free_port()
    log_file = tmp_path / "service.log"
    env = {
        **os.environ,
        "SWITCHBOARD_WEB_BASE_PORT": str(port - SERVICES.index(SERVICE)),
        "SWITCHBOARD_LOG_LEVEL": "info",
    }
    with log_file.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "web", SERVICE],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"{url}/healthz"):
            assert process.poll() is None, log_file.read_text()
            assert time.monotonic() < deadline, "the service did not answer within 30 s"
            time.sleep(0.2)
        yield url, log_file
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


async def test_a_line_feed_in_a_path_writes_no_line_of_its_own(
    settings: Settings, logged_service: tuple[str, Path]
) -> None:
    url, log_file = logged_service
    tenant = new_tenant(settings)
    deep_cursor = base64.urlsafe_b64encode(b"[" * 2000).decode().rstrip("=")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/v1/{FORGED_PATH}") as response:
            assert response.status == 404
        # Requests the service logs: a cursor and a body the handlers cannot parse.
        async with http.get(
            f"{url}/api/conversations/{FORGED_PATH}/messages?cursor={deep_cursor}",
            headers=tenant.headers,
        ):
            pass
        async with http.post(
            f"{url}/api/conversations/{FORGED_PATH}/reply",
            data="[" * 100_000,
            headers={**tenant.headers, "Content-Type": "application/json"},
        ):
            pass
    # Each record is written (and flushed) before its request is answered.
    lines = log_file.read_text(errors="replace").splitlines()
    assert not [line for line in lines if line.startswith(FORGED)], lines
    # And the request was logged, its path escaped.
    assert any(f"{SERVICE}/x\\x0d\\x0a{FORGED}" in line for line in lines), lines
