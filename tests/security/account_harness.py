"""What the account probes share: the users service in this process, reached from a loopback
address of the probe's choosing (every 127.x.y.z is this host), and accounts made directly in
the store (so that making them costs no sign-up from any address)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.security.passwords import hash_password
from core.settings import Settings
from web import users
from web.accounts import IDENTITY

Client = TestClient[web.Request, web.Application]
PASSWORD = "correct horse battery"
WRONG = "wrong horse battery"


def loopback() -> str:
    """A loopback address of its own (never 127.0.0.1), so a probe's throttle counts are its own."""
    rng = random.SystemRandom()
    return f"127.{rng.randrange(1, 255)}.{rng.randrange(0, 256)}.{rng.randrange(2, 255)}"


def documentation_address() -> str:
    """A fresh public-looking client address, as a proxy would forward it."""
    rng = random.SystemRandom()
    return f"198.51.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"


def email() -> str:
    return f"probe-{uuid.uuid4().hex[:12]}@example.test"


@asynccontextmanager
async def users_service(settings: Settings, source: str | None = None) -> AsyncIterator[Client]:
    """The users service on a real port; the client connects from ``source`` if given."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
    async with TestClient(TestServer(users.create_app(settings)), connector=connector) as client:
        yield client


async def account(client: Client, password: str = PASSWORD) -> str:
    """A new workspace owner's email."""
    address = email()
    await client.app[IDENTITY].register(
        email=address, name="Owner", password_hash=await hash_password(password),
        workspace_name="Probe",
    )  # fmt: skip
    return address


async def login(
    client: Client, user_email: str, password: str, forwarded_for: str | None = None
) -> Any:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await client.post(
        "/api/auth/login", json={"email": user_email, "password": password}, headers=headers
    )
