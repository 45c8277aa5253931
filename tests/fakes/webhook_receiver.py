"""A tenant's Standard Webhooks receiver (standardwebhooks.com), for tests of the API channel.

Strict as a careful receiver is: every request must carry ``webhook-id``, ``webhook-timestamp``
and a ``webhook-signature`` that matches the raw body under the secret, with a timestamp within
five minutes of now, and a JSON body; anything else is refused (401, or 400 for a body that is
not JSON) and recorded. The check is written here from the specification rather than imported
from ``core.channels.standard_webhooks``, so it checks that code instead of agreeing with it.
It can go down, answering 503 or refusing connections, to test the sender's retries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 5 * 60


@dataclass(frozen=True)
class Received:
    """An accepted request, in arrival order."""

    id: str
    timestamp: int
    body: Any  # the parsed JSON
    raw: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Refused:
    status: int
    reason: str
    raw: bytes
    headers: Mapping[str, str]


class SignatureRefused(Exception):
    """Why a request is not the sender's."""


def verify(
    secret: str, headers: Mapping[str, str], raw: bytes, now: float, tolerance_s: float
) -> tuple[str, int]:
    """The message id and timestamp of a request signed with ``secret``, else SignatureRefused.

    The signed content is ``{id}.{timestamp}.{body}``, HMAC-SHA256 keyed with the base64-decoded
    secret; the header holds space-separated ``v1,<base64>`` signatures, any one of which may
    match (several are sent while a secret is rotated); other versions are ignored.
    """
    message_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not message_id or not stamp or not signatures:
        raise SignatureRefused("webhook-id, webhook-timestamp or webhook-signature is missing")
    if not stamp.isascii() or not stamp.isdigit():
        raise SignatureRefused("webhook-timestamp is not whole seconds")
    timestamp = int(stamp)
    if now - timestamp > tolerance_s:
        raise SignatureRefused("webhook-timestamp is too old")
    if timestamp - now > tolerance_s:
        raise SignatureRefused("webhook-timestamp is too new")
    signed = message_id.encode() + b"." + stamp.encode() + b"." + raw
    expected = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    for signature in signatures.split(" "):
        version, _, encoded = signature.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        if hmac.compare_digest(given, expected):
            return message_id, timestamp
    raise SignatureRefused("no v1 signature matches the body")


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a Standard Webhooks secret is written whsec_<base64>")
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


class WebhookReceiver:
    """``async with WebhookReceiver(secret) as receiver:`` listens at ``receiver.url``.

    ``received`` holds accepted requests and ``refused`` the others, both in arrival order;
    ``attempts`` counts every request that reached it, including those answered 503 while down.
    ``clock`` gives the wall-clock seconds timestamps are checked against.
    """

    def __init__(
        self,
        secret: str,
        *,
        path: str = "/webhooks/switchboard",
        status: int = 200,
        tolerance_s: float = TOLERANCE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _key(secret)  # a malformed secret is the test's mistake: say so at once
        if not 200 <= status < 300:
            raise ValueError("an accepting receiver answers 2xx; use down() for failures")
        self.secret = secret
        self.path = path
        self.status = status
        self.tolerance_s = tolerance_s
        self.received: list[Received] = []
        self.refused: list[Refused] = []
        self.attempts = 0
        self._clock = clock
        self._answering_503 = False
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port = 0

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("WebhookReceiver is not running")
        return f"http://127.0.0.1:{self._port}{self.path}"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("WebhookReceiver is already running")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await self._listen()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def down(self, *, refuse_connections: bool = False) -> None:
        """Answer every request 503, or with ``refuse_connections`` stop listening and drop
        open connections, so a sender sees its connection refused."""
        if not refuse_connections:
            self._answering_503 = True
            return
        if self._runner is None or self._site is None:
            return
        await self._site.stop()
        self._site = None
        server = self._runner.server
        for connection in server.connections if server is not None else []:
            connection.force_close()

    async def up(self) -> None:
        """Accept again, on the same port."""
        self._answering_503 = False
        if self._runner is not None and self._site is None:
            await self._listen(self._port)

    async def _listen(self, port: int = 0) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await self._site.start()

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        raw = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        if self._answering_503:
            return web.Response(status=503, text="receiver is down")
        if request.method != "POST" or request.path != self.path:
            return self._refuse(404, f"no route {request.method} {request.path}", raw, headers)
        try:
            message_id, timestamp = verify(
                self.secret, headers, raw, self._clock(), self.tolerance_s
            )
        except SignatureRefused as refused:
            return self._refuse(401, str(refused), raw, headers)
        try:
            body = json.loads(raw)
        except ValueError:
            return self._refuse(400, "the body is not JSON", raw, headers)
        self.received.append(Received(message_id, timestamp, body, raw, headers))
        return web.Response(status=self.status)

    def _refuse(
        self, status: int, reason: str, raw: bytes, headers: Mapping[str, str]
    ) -> web.Response:
        self.refused.append(Refused(status, reason, raw, headers))
        return web.json_response({"error": reason}, status=status)
