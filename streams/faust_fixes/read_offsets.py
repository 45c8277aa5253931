"""Faust's read offsets, which a rewind can hold open for a partition.

Faust's consumer remembers the last offset it handed to the streams for each partition, and
drops any fetched record below it (so a seek does not hand a record over twice) and marks any
jump above it as a gap that counts as acked when it commits. A seek resets that offset, but the
records fetched before the seek are still being handed over, and each one moves it forward
again: the records the seek fetches anew are then dropped as already read. That is how a rewind
of ``messages.outbound`` once came to nothing: the worker refused every later record of the
partition, waiting for one Faust kept dropping, and 89 answers were never delivered.

While a partition is held, its read offset reads as unknown: Faust hands over every record it
fetches, in fetch order, and marks no gap, and the rewinding guard sorts the stale records out.
"""

from __future__ import annotations

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

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._read_offset = ReadOffsets()

    Consumer.__init__ = __init__  # type: ignore[method-assign]
    setattr(Consumer, _INSTALLED, True)
