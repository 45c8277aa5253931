from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from core.mail import Mailer, SmtpServer
from core.settings import Settings


def test_smtp_urls() -> None:
    assert SmtpServer.parse("smtp://mail.example.test:2525") == SmtpServer(
        "mail.example.test", 2525, tls=False, username=None, password=None
    )
    assert SmtpServer.parse("smtps://a%40b:p%3Ass@mail.example.test") == SmtpServer(
        "mail.example.test", 465, tls=True, username="a@b", password="p:ss"
    )
    with pytest.raises(ValueError, match="smtp://"):
        SmtpServer.parse("http://mail.example.test")


async def test_without_a_mail_server_the_mail_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="core.mail")
    await Mailer(Settings(mail_url=None)).send("ann@example.test", "Hello", "the link: x")
    assert "ann@example.test" in caplog.text
    assert "the link: x" in caplog.text


def test_a_message_has_the_configured_sender() -> None:
    settings = Settings(mail_url=SecretStr("smtp://127.0.0.1:1"), mail_from="Ops <ops@x.test>")
    message = Mailer(settings).message("ann@example.test", "Subject", "Body")
    assert message["From"] == "Ops <ops@x.test>"
    assert message["To"] == "ann@example.test"
    assert message.get_content().strip() == "Body"


async def test_off_the_local_stack_an_unsent_mail_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="core.mail")
    remote = Settings(mail_url=None, redis_url="redis://redis.internal:6379/0")
    await Mailer(remote).send("ann@example.test", "Reset", "the link: secret-token")
    assert "SWITCHBOARD_MAIL_URL" in caplog.text
    assert "secret-token" not in caplog.text
