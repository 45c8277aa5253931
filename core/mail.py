"""Outgoing mail: SMTP when ``Settings.mail_url`` is set, the log otherwise.

The standard library's ``smtplib`` blocks, so each message is sent in a thread. Without a mail
server on the local stack the message is logged at warning level, so that a reset link shows on
the terminal of ``switchboard run``. Off the local stack a deployment sets
``SWITCHBOARD_MAIL_URL``; until it does, the log names each unsent mail but never holds its
text, since anyone who reads the logs could use a reset link.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

from core.security.default_secrets import on_local_stack
from core.settings import Settings

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        """``smtp://[user:password@]host[:port]``, or ``smtps://`` for TLS from the start."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("mail_url must be smtp://host:port or smtps://host:port")
        tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if tls else 25),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class Mailer:
    def __init__(self, settings: Settings) -> None:
        url = settings.mail_url.get_secret_value() if settings.mail_url else None
        self._server = SmtpServer.parse(url) if url else None
        self._sender = settings.mail_from
        self._log_text = on_local_stack(settings)

    def message(self, to: str, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="switchboard")
        message.set_content(body)
        return message

    async def send(self, to: str, subject: str, body: str) -> None:
        message = self.message(to, subject, body)
        if self._server is None:
            if self._log_text:
                log.warning("mail (no mail server configured) to %s: %s\n%s", to, subject, body)
            else:
                log.error("mail to %s not sent (%s): set SWITCHBOARD_MAIL_URL", to, subject)
            return
        await asyncio.to_thread(_deliver, self._server, message)


def _deliver(server: SmtpServer, message: EmailMessage) -> None:
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if server.tls:
        smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=TIMEOUT_S, context=context)
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=TIMEOUT_S)
    with smtp:
        smtp.ehlo()
        if not server.tls and smtp.has_extn("starttls"):
            smtp.starttls(context=context)
            smtp.ehlo()
        if server.username is not None:
            smtp.login(server.username, server.password or "")
        smtp.send_message(message)
