"""A guard against records a Faust stream skips (and acks) across a rebalance."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


class OffsetContinuity:
    """Keeps each partition's records gap-free within one consumer generation.

    The contract's topics are neither compacted nor transactional, so the offsets of a partition
    the worker keeps arrive one after the other. Across a rebalance faust-streaming 0.15.3 can
    skip a record anyway, and ack it: its stream drops (as "skipped") and acks any record that
    reaches it while flow control is paused or that carries an older generation (seen here:
    offset 45,711 went missing between 45,710 and 45,712 of the same new generation; once,
    under repeated SIGKILLs, 26 records of one partition were never processed).
    So a hole is refused: the records after it are dropped unacked, Faust's gap
    for the partition is forgotten, and the partition is rewound to the first missing offset.
    The record refetched after a rewind can be skipped again (flow control is still paused, say):
    when the partition's offsets start over without it, it is rewound again, rather than
    waiting for a record that will not come.
    """

    def __init__(self, stage: str, consumer: Any) -> None:
        self._stage = stage
        self._consumer = consumer
        self._next: dict[Any, tuple[Any, int]] = {}  # tp -> (generation, next offset expected)
        self._rewinding: dict[Any, int] = {}  # partition -> latest offset seen past its hole

    async def admit(self, events: Sequence[Any]) -> list[Any]:
        admitted: list[Any] = []
        rewind: dict[Any, int] = {}
        for event in events:
            message = event.message
            tp, offset = message.tp, message.offset
            generation = getattr(message, "generation_id", None)
            expected = self._next.get(tp)
            if expected is not None and expected[0] == generation and offset > expected[1]:
                # Records fetched before the rewind keep arriving until the missing one does;
                # offsets that start over without it mean it was skipped once more.
                latest = self._rewinding.get(tp)
                if latest is None or offset <= latest:
                    rewind[tp] = expected[1]
                    log.error(
                        "%s: %s skipped from offset %d to %d in generation %s; rewinding%s",
                        self._stage,
                        tp,
                        expected[1],
                        offset,
                        generation,
                        "" if latest is None else " again",
                    )
                self._rewinding[tp] = offset
                continue
            if expected is None or expected[0] != generation or offset >= expected[1]:
                self._next[tp] = (generation, offset + 1)
            self._rewinding.pop(tp, None)
            admitted.append(event)
        for tp, offset in rewind.items():
            self._forget_acks_from(tp, offset)
            self._consumer._gap.pop(tp, None)  # Faust has no public way to forget a gap
            await self._consumer.seek(tp, offset)
        return admitted

    def _forget_acks_from(self, tp: Any, offset: int) -> None:
        """Take back Faust's acks of the offsets from ``offset`` on: it acked the records it
        skipped, and a commit past them would lose them if the worker died before the rewind
        brought them back. Nothing from ``offset`` on was admitted, so no ack here was ours."""
        acked = self._consumer._acked.get(tp)
        if acked:
            acked[:] = [o for o in acked if o < offset]
        index = self._consumer._acked_index.get(tp)
        if index:
            index.difference_update([o for o in index if o >= offset])
