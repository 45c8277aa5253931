"""`switchboard run` (what `make run` starts): all healthy behind the gateway, the demo
workspace's owner can sign in with the credentials it prints, its chat page embeds the widget,
and Ctrl-C leaves no process behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from core.settings import SERVICES, Settings
from infra.stack import status
from tests.browser_support import launched_chromium


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _ignore_nothing() -> None:
    # As in a terminal: Ctrl-C's SIGINT is delivered, not inherited as ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _printed(lines: list[str], label: str) -> str:
    """The value of an indented ``label: value`` line of the demo workspace's block."""
    found = [line.split(":", 1)[1].strip() for line in lines if line.startswith(f"  {label}:")]
    assert found, f"no {label!r} line in:\n" + "".join(lines[-40:])
    return found[-1]


def _check_demo(settings: Settings, lines: list[str]) -> None:
    assert any(line.startswith("Demo workspace (") for line in lines), "".join(lines[-40:])
    email, password = _printed(lines, "sign in").split(" / ")
    page = _printed(lines, "chat page")
    assert page == f"{settings.gateway_url}/demo/"

    login = urllib.request.Request(
        f"{settings.gateway_url}/api/auth/login",
        data=json.dumps({"email": email, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(login, timeout=10) as response:
        assert response.status == 200
        assert json.load(response)["token_type"] == "Bearer"

    with urllib.request.urlopen(page, timeout=5) as response:
        html = response.read().decode()
    assert html.count("<script") == 1
    assert '<script src="/widget.js" data-key="pk_' in html
    asyncio.run(_chat_on(page))


async def _chat_on(page_url: str) -> None:
    """What a newcomer does next: open the demo page, say hello, get the demo model's answer."""
    async with launched_chromium() as browser:
        page = await browser.new_page()
        await page.goto(page_url)
        await page.get_by_role("button", name="Open chat").click()
        box = page.get_by_role("textbox", name="Message")
        await box.fill("hello")
        await box.press("Enter")
        answer = page.locator("[data-sb=message][data-role=bot]:not([data-streaming])")
        await answer.first.wait_for(timeout=60_000)
        assert (await answer.first.text_content() or "").startswith("[demo model] You said: hello")


def test_run_then_ctrl_c(settings: Settings) -> None:
    up_before = {state.name for state in status(settings) if state.healthy}
    with subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_ignore_nothing,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as run:
        assert run.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 600  # a first run installs everything
        for line in run.stdout:
            lines.append(line)
            if "Switchboard is up" in line:
                break
            assert time.monotonic() < deadline, "".join(lines[-40:])
        # The up line itself, not the demo's chat page line, which names the gateway too.
        assert settings.gateway_url in lines[-1], "".join(lines[-40:])

        try:
            for service in SERVICES:
                url = f"{settings.gateway_url}/_health/{service}"
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert response.status == 200
            _check_demo(settings, lines)
        except BaseException:
            os.killpg(run.pid, signal.SIGINT)  # or leaving the `with` waits for it forever
            run.communicate(timeout=120)
            raise

        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C in the terminal signals the whole group
        rest, _ = run.communicate(timeout=120)
        assert run.returncode == 0, "".join(lines[-20:]) + rest

    for service in SERVICES:
        assert _port_free(settings.service_port(service)), f"{service} still listening"
    still_up = {state.name for state in status(settings) if state.healthy or state.pid}
    assert still_up <= up_before, f"left running after Ctrl-C: {still_up - up_before}"
