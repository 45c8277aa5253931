"""``switchboard run``: the whole platform in the foreground, stopped cleanly by Ctrl-C.

It brings the local services up, starts the pipeline worker(s) and every web service as child
processes after seeding the demo workspace (``infra.demo_seed``), waits until each web service
answers through the gateway, prints the demo's credentials and the URL, and on Ctrl-C (or
SIGTERM) stops its children and then the services it started itself.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from types import FrameType
from typing import TYPE_CHECKING

from core.settings import SERVICES, Settings
from infra.stack import StartError, down, up

if TYPE_CHECKING:
    from infra.demo_seed import DemoWorkspace

READY_TIMEOUT = 60.0


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def web_service_states(settings: Settings) -> list[tuple[str, str, bool]]:
    """(service, address, answers /healthz through the gateway) for each web service."""
    return [
        (
            service,
            f"{settings.web_host}:{settings.service_port(service)}",
            _healthy(f"{settings.gateway_url}/_health/{service}"),
        )
        for service in SERVICES
    ]


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def run_platform(settings: Settings, *, workers: int = 1) -> int:
    began = time.monotonic()
    signal.signal(signal.SIGTERM, _raise_stop)
    started: list[str] = []
    children: list[subprocess.Popen[bytes]] = []
    code = 0
    try:
        started = up(settings)
        # Before the services start: a fraction of a second, and no index is made twice at once.
        demo = _seed_demo(settings)
        command = [sys.executable, "-m", "infra.cli"]
        for _ in range(workers):
            children.append(subprocess.Popen([*command, "worker"], start_new_session=True))
        children.append(subprocess.Popen([*command, "web", "all"], start_new_session=True))
        _wait_until_ready(settings, children)
        if isinstance(demo, str):
            print(f"\nwarning: no demo workspace: {demo}", file=sys.stderr, flush=True)
        else:
            print(_demo_lines(settings, demo), flush=True)
        print(
            f"\nSwitchboard is up in {time.monotonic() - began:.0f}s: {settings.gateway_url}\n"
            "Press Ctrl-C to stop everything.\n",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("a Switchboard process exited; stopping the rest", file=sys.stderr)
        code = 1
    except (KeyboardInterrupt, _Stop):
        print("\nstopping Switchboard…", flush=True)
    except StartError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_children(children)
        if started:
            down(settings, started)
    return code


def _seed_demo(settings: Settings) -> DemoWorkspace | str:
    """The demo workspace, or why it could not be made: the platform is useful without it."""
    try:
        from infra.demo_seed import seed_demo

        return asyncio.run(seed_demo(settings))
    except _Stop:
        raise
    except Exception as error:
        return textwrap.shorten(f"{type(error).__name__}: {error}", 240)


def _demo_lines(settings: Settings, demo: DemoWorkspace) -> str:
    from core.ai.llm import DEMO_LABEL
    from infra.demo_seed import demo_model, page_url

    model = demo_model(settings)
    if model == DEMO_LABEL:
        model += " (offline; SWITCHBOARD_LLM_BASE_URL and _MODEL name a real one)"
    return (
        f"\nDemo workspace ({'created now' if demo.created else 'from the first run'}):\n"
        f"  sign in:   {demo.email} / {demo.password}\n"
        f"  chat page: {page_url(settings)}\n"
        f"  model:     {model}"
    )


def _wait_until_ready(settings: Settings, children: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    pending = set(SERVICES)
    while pending:
        if any(child.poll() is not None for child in children):
            raise StartError("a Switchboard process exited during start-up (see its output above)")
        if time.monotonic() > deadline:
            raise StartError(f"not healthy behind the gateway: {', '.join(sorted(pending))}")
        pending = {s for s in pending if not _healthy(f"{settings.gateway_url}/_health/{s}")}
        time.sleep(0.3)


def _stop_children(children: list[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
