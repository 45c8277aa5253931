"""Faust's read offsets, which the offset guard holds open while it rewinds a partition.

Faust's fetch loop drops every record below a partition's read offset, and the records fetched
before a seek, still being handed over, move that offset past the records the seek fetches
again, so Faust drops them; while a partition is held (``ReadOffsets.hold``, in
``Consumer._read_offset``), its read offset reads as unknown and every fetched record is handed
over (docs/faust.md). No upstream issue found; without it this test fails:
tests/unit/streams/faust_fixes/test_read_offsets.py::test_a_rewind_gets_every_record_fetched_again
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Hashable
from typing import Any

from faust.transport.consumer import Consumer

_INSTALLED = "_switchboard_read_offsets"


class ReadOffsets(defaultdict[Any, int | None]):
    """Faust's ``Consumer._read_offset``, where a held partition's offset reads as unknown."""

    def __init__(self) -> None:
        super().__init__(lambda: None)
        self._held: set[Hashable] = set()

    def hold(self, tp: Hashable) -> None:
        self._held.add(tp)

    def release(self, tp: Hashable) -> None:
        self._held.discard(tp)

    def held(self, tp: Hashable) -> bool:
        return tp in self._held

    def __getitem__(self, tp: Any) -> int | None:
        if tp in self._held:
            return None
        return super().__getitem__(tp)

    def pop(self, tp: Any, *default: Any) -> Any:
        """Faust pops a revoked partition: its hold goes with it."""
        self._held.discard(tp)
        return super().pop(tp, *default)


def install() -> None:
    """Give each Faust consumer created from now on held-open read offsets; idempotent.

    Faust's fetch loop binds the dict's methods when it starts, so the dict is replaced as the
    consumer is created, before anything fetches.
    """
    if getattr(Consumer, _INSTALLED, False):
        return
    original = Consumer.__init__

    @functools.wraps(original)  # streams.faust_fixes.check reads the original through it
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._read_offset = ReadOffsets()

    Consumer.__init__ = __init__  # type: ignore[method-assign]
    setattr(Consumer, _INSTALLED, True)
