"""``switchboard run``: the whole platform in the foreground, stopped cleanly by Ctrl-C.

It brings the local services up, starts the pipeline worker(s) and every web service as child
processes after seeding the demo workspace (``infra.demo_seed``), waits until each web service
answers through the gateway, prints the demo's credentials and the URL, and on Ctrl-C (or
SIGTERM) stops its children and then the services it started itself. The children's output
goes to their log files, and only their warnings and errors to the terminal (``infra.children``).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from core.settings import SERVICES, Settings
from infra import children as child_processes
from infra.children import Child
from infra.services import Layout
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
    children: list[Child] = []
    code = 0
    try:
        started = up(settings)
        # Before the services start: a fraction of a second, and no index is made twice at once.
        demo = _seed_demo(settings)
        _start_children(settings, workers, children)
        _wait_until_ready(settings, children)
        if isinstance(demo, str):
            print(f"\nwarning: no demo workspace: {demo}", file=sys.stderr, flush=True)
        else:
            print(_demo_lines(settings, demo), flush=True)
        print(
            f"\nSwitchboard is up in {time.monotonic() - began:.0f}s: {settings.gateway_url}\n"
            f"Logs: {_shown(settings.state_dir / 'logs')}/ (`make logs` follows them). "
            "Press Ctrl-C to stop everything.\n",
            flush=True,
        )
        while not any(child.exited() for child in children):
            time.sleep(0.5)
        gone = next(child for child in children if child.exited())
        print(f"error: {_exit_report(gone)}\nstopping the rest", file=sys.stderr, flush=True)
        code = 1
    except (KeyboardInterrupt, _Stop):
        print("\nstopping Switchboard…", flush=True)
    except StartError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child_processes.stop(children)
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


def _start_children(settings: Settings, workers: int, children: list[Child]) -> None:
    """The worker(s) and the web services, each announced with its pid and its log file."""
    command = [sys.executable, "-m", "infra.cli"]
    logs = Layout(settings.state_dir)
    for number in range(1, workers + 1):
        label = f"worker-{number}"
        child = child_processes.start(label, [*command, "worker"], logs.log(label), sys.stderr)
        children.append(child)
        print(f"{label}: started (pid {child.process.pid}), log in {_shown(child.log_file)}")
    child = child_processes.start("web", [*command, "web", "all"], logs.log("web"), sys.stderr)
    children.append(child)
    first, last = settings.service_port(SERVICES[0]), settings.service_port(SERVICES[-1])
    print(
        f"web: {len(SERVICES)} services on {settings.web_host}:{first}-{last} started "
        f"(pid {child.process.pid}), log in {_shown(child.log_file)}",
        flush=True,
    )


def _wait_until_ready(settings: Settings, children: list[Child]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    pending = set(SERVICES)
    while pending:
        gone = [child for child in children if child.exited()]
        if gone:
            raise StartError(f"during start-up, {_exit_report(gone[0])}")
        if time.monotonic() > deadline:
            raise StartError(f"not healthy behind the gateway: {', '.join(sorted(pending))}")
        pending = {s for s in pending if not _healthy(f"{settings.gateway_url}/_health/{s}")}
        time.sleep(0.3)


def _exit_report(child: Child) -> str:
    return (
        f"{child.label} exited with status {child.process.returncode}; "
        f"end of {_shown(child.log_file)}:\n{child.log_tail()}"
    )


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it, as a person would type it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
