"""The offset guard: a hole in a partition's offsets is rewound, never committed past.

Across a rebalance Faust can skip a record within one consumer generation, and its consumer
then commits past it (a gap in its read offsets counts as acked, and so may the skipped record);
the guard drops what follows the hole, forgets Faust's acks and gap from the hole on
(``Consumer._acked``, ``_acked_index``, ``_gap``), holds ``Consumer._read_offset`` open and
seeks back with ``seek_wait`` (docs/faust.md). No upstream issue found for the hole (the skip
comes from faust-streaming#223); without it this test fails:
tests/unit/streams/faust_fixes/test_continuity.py::test_faust_commits_no_further_than_the_hole
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: How long records may keep arriving past a hole after its rewind before the seek is repeated.
RESEEK_AFTER_S = 5.0


@dataclass
class _Rewind:
    latest: int  # the latest offset seen past the hole
    sought_at: float  # when the partition was last sought back to the hole


class OffsetContinuity:
    """Keeps each partition's records gap-free within one consumer generation.

    The contract's topics are neither compacted nor transactional, so the offsets of a partition
    the worker keeps arrive one after the other, and a hole means Faust skipped a record. The
    records after it are dropped unacked, Faust's acks and gap for the partition from the hole
    on are forgotten, its read offset is held open (``streams.faust_fixes.read_offsets``), and
    it is sought back to the hole.

    The refetched record can be skipped again (flow control is still paused, say): when the
    partition's offsets start over without it, it is rewound again, rather than waiting for a
    record that will not come. And when records keep arriving past the hole for
    ``RESEEK_AFTER_S`` after a seek, the seek is repeated.
    """

    def __init__(
        self, stage: str, consumer: Any, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stage = stage
        self._consumer = consumer
        self._clock = clock
        self._next: dict[Any, tuple[Any, int]] = {}  # tp -> (generation, next offset expected)
        self._rewinding: dict[Any, _Rewind] = {}

    async def admit(self, events: Sequence[Any]) -> list[Any]:
        admitted: list[Any] = []
        rewind: dict[Any, int] = {}
        for event in events:
            message = event.message
            tp, offset = message.tp, message.offset
            generation = getattr(message, "generation_id", None)
            expected = self._next.get(tp)
            if expected is not None and expected[0] == generation and offset > expected[1]:
                if self._refuse(tp, expected[1], offset, generation):
                    rewind[tp] = expected[1]
                continue
            if expected is None or expected[0] != generation or offset >= expected[1]:
                self._next[tp] = (generation, offset + 1)
            if self._rewinding.pop(tp, None) is not None:
                self._read_offsets().release(tp)
            admitted.append(event)
        for tp, offset in rewind.items():
            await self._rewind(tp, offset)
        return admitted

    def _refuse(self, tp: Any, hole: int, offset: int, generation: Any) -> bool:
        """Drop the record at ``offset``, past the ``hole``; whether to rewind to the hole: when
        the partition's offsets start over without it, or a seek has come to nothing for long."""
        now = self._clock()
        state = self._rewinding.get(tp)
        if state is None or offset <= state.latest:
            log.error(
                "%s: %s skipped from offset %d to %d in generation %s; rewinding%s",
                self._stage,
                tp,
                hole,
                offset,
                generation,
                "" if state is None else " again",
            )
        elif now - state.sought_at >= RESEEK_AFTER_S:
            log.error(
                "%s: %s still past offset %d (at %d) %.1f s after the rewind; seeking again",
                self._stage,
                tp,
                hole,
                offset,
                now - state.sought_at,
            )
        else:
            state.latest = offset
            return False
        self._rewinding[tp] = _Rewind(latest=offset, sought_at=now)
        return True

    async def _rewind(self, tp: Any, offset: int) -> None:
        self._forget_acks_from(tp, offset)
        self._consumer._gap.pop(tp, None)  # Faust has no public way to forget a gap
        self._read_offsets().hold(tp)
        try:
            # In the consumer's own thread, which owns the Kafka client; raises when the
            # partition has been revoked meanwhile, and then its next owner reads it.
            await self._consumer.seek_wait({tp: offset})
        except Exception as failed:  # repeated after RESEEK_AFTER_S, or moot once revoked
            log.warning("%s: seeking %s back to %d failed: %r", self._stage, tp, offset, failed)

    def _read_offsets(self) -> Any:
        offsets = self._consumer._read_offset
        if not hasattr(offsets, "hold"):
            raise RuntimeError(
                "the worker's consumer lacks streams.faust_fixes.read_offsets (install it)"
            )
        return offsets

    def _forget_acks_from(self, tp: Any, offset: int) -> None:
        """Take back any ack of the offsets from ``offset`` on. ``streams.faust_fixes.skips`` keeps
        Faust from acking the records it skips; this is the second line, since a commit past them
        would lose them if the worker died before the rewind brought them back. Nothing from
        ``offset`` on was admitted, so no ack here was ours."""
        acked = self._consumer._acked.get(tp)
        if acked:
            acked[:] = [o for o in acked if o < offset]
        index = self._consumer._acked_index.get(tp)
        if index:
            index.difference_update([o for o in index if o >= offset])
