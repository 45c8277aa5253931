"""Held read offsets, against Faust's own fetch loop (``Consumer._drain_messages``)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer

from streams.contract import MESSAGES_OUTBOUND
from streams.faust_fixes import read_offsets
from streams.faust_fixes.read_offsets import ReadOffsets

TP = "messages.outbound/1"


def _raise(*args: Any) -> None:
    raise AssertionError(args)


class Fetching:
    """What Faust's fetch loop reads of its consumer. It fetches ``fetches`` one after the
    other; handing over offset ``seek_at`` seeks the partition back to ``seek_to`` the way the
    offset guard does (hold, then Faust's ``seek_wait``)."""

    consumer_stopped_errors = ()

    def __init__(self, offsets: Any, fetches: list[list[int]], seek_at: int, seek_to: int) -> None:
        self._read_offset = offsets
        self._fetches: Iterator[list[int]] = iter(fetches)
        self._stopped = asyncio.Event()
        self._commit_every = None
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
        self.should_stop = False
        self.suspend_flow = asyncio.Event()
        self.seek_at, self.seek_to = seek_at, seek_to
        self.handed: list[int] = []
        self.gaps: list[tuple[int, int]] = []
        self.log = SimpleNamespace(dev=lambda *args: None, exception=_raise)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[str, Any]]:  # noqa: ASYNC109 (Faust's)
        batch = next(self._fetches, None)
        if batch is None:
            self._stopped.set()
            return
        for offset in batch:
            yield (
                TP,
                SimpleNamespace(offset=offset, topic=MESSAGES_OUTBOUND, key=b"k", value=b"v"),
            )

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)

    async def _add_gap(self, tp: str, first: int, last: int) -> None:
        self.gaps.append((first, last))

    async def callback(self, message: Any) -> None:
        self.handed.append(message.offset)
        if message.offset == self.seek_at:
            if isinstance(self._read_offset, ReadOffsets):
                self._read_offset.hold(TP)
            self._read_offset[TP] = self.seek_to

    async def wait_first(self, *coros: Any) -> None:
        await coros[0]
        for other in coros[1:]:
            other.close()


async def _drain(offsets: Any) -> Fetching:
    # Fetched before the seek: 12-14 went missing, the guard sees 15 and seeks back to 12,
    # while 16 and 17 are still being handed over. The next fetch starts again at 12.
    consumer = Fetching(offsets, [[10, 11, 15, 16, 17], [12, 13, 14, 15, 16, 17, 18]], 15, 12)
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    await Consumer._drain_messages(consumer, fetcher)  # type: ignore[arg-type]
    return consumer


async def test_faust_alone_drops_the_records_a_rewind_fetches_again() -> None:
    consumer = await _drain(defaultdict(lambda: None))
    # The bug this module works around: 12-16 fetched again are dropped as already read.
    assert consumer.handed == [10, 11, 15, 16, 17, 17, 18]
    assert consumer.gaps == [(12, 15)]


async def test_a_held_partition_gets_every_record_fetched_again_and_no_gap() -> None:
    consumer = await _drain(ReadOffsets())
    assert consumer.handed == [10, 11, 15, 16, 17, 12, 13, 14, 15, 16, 17, 18]
    assert consumer.gaps == [(12, 15)], "only the hole itself, before the hold"


def test_holding_reads_as_unknown_and_a_revoke_ends_the_hold() -> None:
    offsets = ReadOffsets()
    offsets[TP] = 7
    offsets.hold(TP)
    assert offsets[TP] is None
    assert offsets.get(TP) == 7
    offsets.release(TP)
    assert offsets[TP] == 7
    offsets.hold(TP)
    assert offsets.pop(TP) == 7  # Faust pops a revoked partition
    assert not offsets.held(TP)
    assert offsets["other/0"] is None


def test_install_gives_each_new_consumer_held_read_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    def plain_init(self: Any) -> None:
        self._read_offset = defaultdict(lambda: None)

    monkeypatch.setattr(Consumer, "__init__", plain_init)
    monkeypatch.setattr(Consumer, read_offsets._INSTALLED, False, raising=False)
    read_offsets.install()
    read_offsets.install()
    consumer = SimpleNamespace()
    Consumer.__init__(consumer)  # type: ignore[arg-type,call-arg]
    assert isinstance(consumer._read_offset, ReadOffsets)
