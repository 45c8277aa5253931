"""JSON from outside, with its nesting depth bounded before it is parsed.

Python's ``json`` recurses once per nested array or object, so a body of a few thousand ``[``
raises ``RecursionError`` inside the parser (a crash where a client error was due). ``loads``
first counts brackets outside strings and refuses past ``MAX_DEPTH`` with ``NestingTooDeep``, a
``ValueError`` as every other malformed document is. The module has ``loads`` and ``dumps``, so
it can stand in for the ``json`` module where a library takes one (python-socketio's ``json=``).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

#: Deepest nesting accepted: far past any body or event the API defines (a tool's JSON schema
#: is the deepest, a dozen levels), far short of the parser's recursion limit (about 1,000).
MAX_DEPTH = 64

_HEAD_BYTES = 8192
_BRACKETS_AND_QUOTES = b'"[]{}'
_OTHER_BYTES = bytes(b for b in range(256) if b not in _BRACKETS_AND_QUOTES)
_STRING_WITH_BRACKETS = re.compile(rb'"[^"]*"')
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1

dumps = json.dumps


class NestingTooDeep(ValueError):
    """The document nests arrays and objects deeper than allowed."""


def nesting_depth(text: str | bytes) -> int:
    """How deep ``text`` (str, or UTF-8) nests arrays and objects, counting brackets outside
    strings.

    Exact for valid JSON; for invalid JSON, exact up to where a parser stops, so a parser never
    goes deeper than this says. Byte operations in C, then one sum over the brackets.
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    # Escaped backslashes and quotes go first (backslashes pair up left to right, as in a
    # parser), so every quote left opens or closes a string. UTF-8 never has these bytes
    # inside a multi-byte character.
    raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = raw.translate(None, _OTHER_BYTES)
    # Two adjacent quotes delimit nothing left, so dropping them keeps every other byte on the
    # same side of a string boundary; what is left of strings holds brackets, and goes too.
    brackets = _STRING_WITH_BRACKETS.sub(b"", kept.replace(b'""', b""))
    brackets = brackets.partition(b'"')[0]  # a string left open: a parser stops there
    return max(accumulate(map(_STEP.__getitem__, brackets), initial=0))


def check_depth(text: str | bytes, limit: int = MAX_DEPTH) -> None:
    """Raise ``NestingTooDeep`` if ``text`` (str, or UTF-8) nests deeper than ``limit``."""
    if not _openers_exceed(text, limit):
        return
    # No text added after a prefix makes it nest less: a deep start is refused unread.
    if nesting_depth(text[:_HEAD_BYTES]) > limit or nesting_depth(text) > limit:
        raise NestingTooDeep(f"the JSON nests deeper than {limit} arrays or objects")


def _openers_exceed(text: str | bytes, limit: int) -> bool:
    """Whether ``text`` has more than ``limit`` of ``[`` and ``{``: with fewer it cannot nest
    past the limit, and the common body skips the scan. ``find`` is memchr, faster than
    ``count`` by fifty times on a megabyte."""
    openers = (b"[", b"{") if isinstance(text, bytes) else ("[", "{")
    seen = 0
    for opener in openers:
        at = text.find(opener)  # type: ignore[arg-type]  # str with str, bytes with bytes
        while at != -1:
            seen += 1
            if seen > limit:
                return True
            at = text.find(opener, at + 1)  # type: ignore[arg-type]
    return False


def loads(data: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH, **kwargs: Any) -> Any:
    """``json.loads``, refusing a document nested deeper than ``max_depth`` before parsing it.

    Bytes in UTF-16 or -32 (which ``json.loads`` accepts too) are decoded first, so the depth
    is counted on exactly the text the parser reads.
    """
    text: str | bytes = bytes(data) if isinstance(data, bytearray) else data
    if isinstance(text, bytes):
        encoding = json.detect_encoding(text)
        if encoding != "utf-8":
            text = text.decode(encoding, "surrogatepass")
    check_depth(text, max_depth)
    return json.loads(text, **kwargs)
