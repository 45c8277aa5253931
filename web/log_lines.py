"""Log records a client cannot forge: one line each, control characters escaped.

Request paths, headers and socket payloads reach log messages (a failed request's line, a
library's warning about a bad packet). A CR or LF in one would start a line that reads as a
record of its own, one that ``switchboard run`` might even show as an error; an ANSI escape
could rewrite the terminal. ``printable`` escapes such characters as ``repr`` does;
``OneLineFormatter`` applies it to every record's message and indents every line after the
first (a traceback), so only a real record ever starts a line at column 0.
"""

from __future__ import annotations

import copy
import logging
import re

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the bidirectional
# overrides and isolates (which reorder what a terminal shows).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: What starts each line after a record's first, so that none can pass for a record.
CONTINUATION = "  "


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control or line-breaking character escaped (``\\n`` as ``\\x0a``)."""
    return _UNSAFE.sub(_escape, text)


class OneLineFormatter(logging.Formatter):
    """Formats as ``inner`` does, then makes the record unforgeable: its message escaped, and
    each further line (a traceback, stack information) escaped and indented."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        safe = copy.copy(record)  # other handlers still format the record as it came
        safe.msg, safe.args = printable(record.getMessage()), None
        first, *rest = self.inner.format(safe).split("\n")
        return "\n".join([printable(first), *(CONTINUATION + printable(line) for line in rest)])


def install(logger: logging.Logger | None = None) -> None:
    """Wrap the formatter of each handler of ``logger`` (the root logger) in a
    ``OneLineFormatter``; with no handler, that of logging's last-resort handler."""
    target = logger or logging.getLogger()
    handlers = target.handlers or ([logging.lastResort] if logging.lastResort else [])
    for handler in handlers:
        if not isinstance(handler.formatter, OneLineFormatter):
            handler.setFormatter(OneLineFormatter(handler.formatter))
