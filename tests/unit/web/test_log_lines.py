"""A record is one line at column 0 whatever its message holds; what follows it is indented."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from web.log_lines import CONTINUATION, OneLineFormatter, install, printable

FORGED = "GET /v1/x\n2026-01-01 00:00:00,000 ERROR web.users: fake log line\r\x1b[2K\u2028done"


def test_printable_escapes_what_breaks_or_rewrites_a_line() -> None:
    assert printable(FORGED) == (
        "GET /v1/x\\x0a2026-01-01 00:00:00,000 ERROR web.users: fake log line"
        "\\x0d\\x1b[2K\\u2028done"
    )
    assert printable("plain /api/ü?q=1 \\x0a") == "plain /api/ü?q=1 \\x0a"
    assert printable(printable(FORGED)) == printable(FORGED)  # escaping twice changes nothing


def _formatted(record: logging.LogRecord) -> str:
    return OneLineFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s")).format(record)


def test_a_message_with_line_breaks_stays_one_line() -> None:
    record = logging.LogRecord("web.errors", logging.ERROR, __file__, 1, "on %s", (FORGED,), None)
    text = _formatted(record)
    assert not {"\n", "\r", "\x1b"} & set(text)
    assert text.startswith("ERROR web.errors: on GET /v1/x\\x0a2026-01-01")
    assert record.getMessage() == f"on {FORGED}"  # the record itself is left as it came


def test_a_traceback_follows_indented_even_with_a_forged_exception_message() -> None:
    try:
        raise ValueError(f"bad path {FORGED}")
    except ValueError:
        record = logging.LogRecord(
            "web.errors",
            logging.ERROR,
            __file__,
            1,
            "failed",
            (),
            exc_info=sys.exc_info(),
        )
    first, *rest = _formatted(record).split("\n")
    assert first == "ERROR web.errors: failed"
    assert rest[0] == CONTINUATION + "Traceback (most recent call last):"
    assert all(line.startswith(CONTINUATION) for line in rest)
    # The forged "record" is there, on a line of the traceback, which no record starts with.
    assert (
        f"{CONTINUATION}2026-01-01 00:00:00,000 ERROR web.users: fake log line\\x0d"
        in "\n".join(rest)
    )


def test_install_wraps_each_handler_once(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("tests.log_lines")
    monkeypatch.setattr(logger, "propagate", False)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    monkeypatch.setattr(logger, "handlers", [handler])
    install(logger)
    install(logger)
    assert isinstance(handler.formatter, OneLineFormatter)
    assert not isinstance(handler.formatter.inner, OneLineFormatter)
    logger.warning("path %s", "/v1/x\nfake log line")
    assert stream.getvalue() == "WARNING path /v1/x\\x0afake log line\n"
