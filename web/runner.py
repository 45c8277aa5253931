"""Serve one web service, or all of them in one process, each on its own port.

Each service keeps its own port whether it runs alone or with the others, so the gateway's
routes stay the same either way.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from collections.abc import Callable, Sequence

from aiohttp import web

from core.settings import SERVICES, Settings
from web import log_lines

log = logging.getLogger(__name__)

AppFactory = Callable[[Settings], web.Application]


def app_factory(service: str) -> AppFactory:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; choose from {', '.join(SERVICES)} or all")
    module = importlib.import_module(f"web.{service}")
    factory: AppFactory = module.create_app
    return factory


async def serve(settings: Settings, services: Sequence[str]) -> None:
    """Serve ``services`` until SIGINT or SIGTERM, then close every client cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runners: list[web.AppRunner] = []
    try:
        for service in services:
            runner = web.AppRunner(app_factory(service)(settings), access_log=None)
            await runner.setup()
            runners.append(runner)
            port = settings.service_port(service)
            await web.TCPSite(runner, settings.web_host, port).start()
            log.info("%s listening on http://%s:%d", service, settings.web_host, port)
        print(f"web: {', '.join(services)} ready", flush=True)
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def run(settings: Settings, services: Sequence[str]) -> None:
    # Requests' text reaches log records (paths, a library's warning about a bad packet): no
    # client may write a line of the services' log that passes for a record.
    log_lines.install()
    asyncio.run(serve(settings, services))
