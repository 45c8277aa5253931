"""Bring the local services up, take them down, and report their state.

Starting is idempotent: a service that already answers its health check is left alone, whoever
started it. Stopping only touches processes this project started (found by their pid files).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from core.security.default_secrets import default_secrets, on_local_stack
from core.security.local_secrets import secrets_file
from core.settings import Settings
from infra.secrets_file import ensure_secrets_file
from infra.services import SERVICE_CLASSES, InstallError, LocalService, all_services


class StartError(RuntimeError):
    """A service did not become healthy; the message carries the end of its log."""


@dataclass(frozen=True)
class ServiceState:
    name: str
    address: str
    healthy: bool
    pid: int | None
    installed: bool

    def describe(self) -> str:
        if self.healthy:
            owner = f"pid {self.pid}" if self.pid else "not started by Switchboard"
            return f"up ({owner})"
        if self.pid:
            return f"starting or unhealthy (pid {self.pid})"
        return "down" if self.installed else "down (not installed yet)"


def _say(message: str) -> None:
    print(message, flush=True)


def select(settings: Settings, names: Iterable[str] = ()) -> list[LocalService]:
    wanted = list(names)
    unknown = [name for name in wanted if name not in SERVICE_CLASSES]
    if unknown:
        raise ValueError(
            f"unknown service(s): {', '.join(unknown)}; known: {', '.join(SERVICE_CLASSES)}"
        )
    services = all_services(settings)
    return [service for service in services if not wanted or service.name in wanted]


def ensure_up(service: LocalService, step: str = "") -> bool:
    """Install if needed, then start and wait until healthy. Returns True if it started it.

    A server of ours that answers but cannot serve these settings (S3 started with other keys)
    is restarted with them; one that Switchboard did not start is refused, never stopped.
    """
    label = f"{step}{service.name}"

    def progress(message: str) -> None:
        _say(f"{label}: {message}")

    if service.healthy():
        progress(f"already up on {service.address}")
        return False
    conflict = service.conflict()
    if conflict and service.process.pid() is not None:
        progress(f"{conflict}; restarting it")
        service.process.stop()
        conflict = service.conflict()  # still answering: what we stopped was not it
    if conflict:
        raise StartError(
            f"{service.name} on {service.address} {conflict}, and Switchboard did not start it: "
            "stop it, or give the settings its keys"
        )
    if not service.installed():
        began = time.monotonic()
        service.install(progress)
        progress(f"installed in {time.monotonic() - began:.0f}s")
    service.prepare(progress)
    if service.process.pid() is None:
        progress(f"starting on {service.address}")
        service.process.spawn(service.argv(), env=service.env())
    deadline = time.monotonic() + service.start_timeout
    while not service.healthy():
        if service.process.exited():
            raise StartError(
                f"{service.name} exited during start-up; end of {service.process.log_file}:\n"
                + service.process.log_tail()
            )
        if time.monotonic() > deadline:
            service.process.stop()
            raise StartError(
                f"{service.name} was not healthy after {service.start_timeout:.0f}s; "
                f"end of {service.process.log_file}:\n" + service.process.log_tail()
            )
        time.sleep(0.25)
    service.after_start(progress)
    progress("healthy")
    return True


def up(settings: Settings, names: Iterable[str] = ()) -> list[str]:
    """Start the named services (all by default). Returns the names it started itself."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_local_secrets(settings)
    services = select(settings, names)
    started = []
    for index, service in enumerate(services, start=1):
        try:
            if ensure_up(service, step=f"[{index}/{len(services)}] "):
                started.append(service.name)
        except InstallError as error:
            raise StartError(f"{service.name} could not be installed: {error}") from error
    return started


def ensure_local_secrets(settings: Settings) -> None:
    """Make the local stack's secrets if missing, and refuse settings read before they were.

    ``switchboard`` commands make the file before reading their settings; a caller that read
    them first (pytest on a fresh checkout) would start S3 with the published default.
    """
    path = secrets_file(settings.state_dir)
    if on_local_stack(settings) and ensure_secrets_file(path) and default_secrets(settings):
        raise StartError(
            f"the local stack's secrets were generated just now in {path}, after these settings "
            "were read with the published defaults; run the command again"
        )


def down(settings: Settings, names: Iterable[str] = ()) -> list[str]:
    """Stop the named services (all by default), gateway first. Returns what it stopped."""
    stopped = []
    for service in reversed(select(settings, names)):
        if service.process.stop():
            _say(f"{service.name}: stopped")
            stopped.append(service.name)
    return stopped


def status(settings: Settings) -> list[ServiceState]:
    return [
        ServiceState(
            name=service.name,
            address=service.address,
            healthy=service.healthy(),
            pid=service.process.pid(),
            installed=service.installed(),
        )
        for service in all_services(settings)
    ]
