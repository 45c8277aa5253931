"""The fixtures of the tests that run against the real local services (integration, security).

One plugin (registered in tests/conftest.py), so a session running both directories shares one
set: the services, one ``switchboard web all``. Each directory's conftest makes the services
autouse for its tests; unit tests never ask for them. The session fixture starts every service
that is not already up, with the same infra code as `make up`, and stops at the end only what it
started. Under `make test` (`switchboard test`) they are up before pytest starts (their progress
shown on the terminal), so it starts and stops nothing; run directly, pytest starts them here.
Nothing is skipped for a missing service: if one cannot start, the session errors with that
service's log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from core.clients.cache import new_redis
from core.clients.database import Document, database, new_mongo_client
from core.settings import SERVICES, Settings
from infra.stack import down, up
from streams.admin import create_topics
from tests.integration.socket_harness import SocketService, socket_service


@pytest.fixture(scope="session")
def local_services(settings: Settings) -> Iterator[None]:
    started = up(settings)
    # The contract's topics, as a worker creates them at start: services that produce (the
    # REST API) are tested without one.
    asyncio.run(create_topics(settings))
    yield
    if started:
        down(settings, started)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def web_all(settings: Settings, local_services: None) -> Iterator[subprocess.Popen[bytes]]:
    """Every web service in one `switchboard web all` process, as `make run` starts them."""
    busy = [s for s in SERVICES if _answers(f"{settings.service_url(s)}/healthz")]
    assert not busy, f"another process already serves {busy}; stop it (e.g. a running `make run`)"
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "web", "all"],
        env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "warning"},
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not all(_answers(f"{settings.service_url(s)}/healthz") for s in SERVICES):
        assert process.poll() is None, "switchboard web all exited during start-up"
        assert time.monotonic() < deadline, "web services did not answer /healthz within 30s"
        time.sleep(0.2)
    yield process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncDatabase[Document]]:
    mongo = new_mongo_client(settings)
    yield database(mongo, settings)
    await mongo.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = new_redis(settings)
    yield client
    await client.aclose()


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[SocketService]:
    """A socket service on a real port, in this process (tests/integration/socket_harness.py)."""
    async with socket_service(settings) as running:
        yield running
