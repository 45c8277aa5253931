"""A mail server for tests: speaks enough SMTP for ``smtplib`` and keeps every message.

Strict: a command out of order (``RCPT`` before ``MAIL``, ``DATA`` without a recipient) or one
it does not know is answered 503/502 and recorded in ``errors``, so a test cannot pass on a
conversation a real server would refuse.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Self, cast


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        return cast(str, self.message.get_content())


@dataclass
class SmtpServer:
    """``async with SmtpServer() as smtp:`` listens on ``smtp.url``; mail lands in ``received``."""

    received: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _port: int = 0
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self._port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        """The first ``count`` messages, once they have arrived."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.received) >= count), timeout_s
            )
        return self.received[:count]

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        sender: str | None = None
        recipients: list[str] = []
        reply("220 fake-smtp ready")
        while line := (await reader.readline()).decode().rstrip("\r\n"):
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                reply("250 fake-smtp")
            elif verb == "MAIL" and line.upper().startswith("MAIL FROM:"):
                sender, recipients = line[10:].strip(), []
                reply("250 ok")
            elif verb == "RCPT" and sender is not None:
                recipients.append(line[8:].strip().strip("<>"))
                reply("250 ok")
            elif verb == "DATA" and recipients:
                reply("354 go ahead")
                data = await reader.readuntil(b"\r\n.\r\n")
                await self._keep(sender or "", recipients, data[: -len(b".\r\n")])
                sender, recipients = None, []
                reply("250 queued")
            elif verb == "RSET":
                sender, recipients = None, []
                reply("250 ok")
            elif verb == "NOOP":
                reply("250 ok")
            elif verb == "QUIT":
                reply("221 bye")
                break
            else:
                self.errors.append(line)
                reply("503 bad sequence" if verb in ("MAIL", "RCPT", "DATA") else "502 unknown")
            await writer.drain()
        await writer.drain()
        writer.close()

    async def _keep(self, sender: str, recipients: list[str], data: bytes) -> None:
        unstuffed = data.replace(b"\r\n..", b"\r\n.")
        message = message_from_bytes(unstuffed, policy=policy.default)
        async with self._arrived:
            self.received.append(Received(sender, recipients, message))
            self._arrived.notify_all()
