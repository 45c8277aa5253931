"""Acks of the records a Faust stream skips are refused; an agent's own acks never are.

Driven through a real Faust stream, as an agent reads it (``stream.noack().events()``), with
records of the current consumer generation and one fetched in an older one, which Faust skips.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust.streams
import pytest
from faust._cython.streams import StreamIterator as CythonStreamIterator
from faust.events import Event
from faust.types import TP

from streams.faust_fixes import skips
from tests.unit.streams.faust_fixes.harness import FaustHarness, messages

TOPIC = "test.inbound"
TP0 = TP(TOPIC, 0)
GENERATION = 4


async def _agent_reads(harness: FaustHarness, generations: dict[int, int]) -> list[int]:
    """Offsets ``{offset: generation}`` through a real stream of the app, read and acked as
    an agent does; returns the offsets the agent saw. Faust's consumer is ``app.consumer``."""
    app = harness.app
    await harness.acking(TOPIC)
    app.consumer = harness.consumer()
    app.consumer_generation_id = GENERATION
    app.flow_control.resume()
    stream: Any = app.topic(TOPIC).stream()
    manual = stream.noack()
    seen: list[int] = []
    expected = sum(1 for g in generations.values() if g == GENERATION)

    async def agent() -> None:
        async for event in manual.events():
            seen.append(event.message.offset)
            await skips.ack(manual, event)
            if len(seen) == expected:
                return

    reading = asyncio.create_task(agent())
    for offset, generation in generations.items():
        [message] = messages(TP0, offset, generation=generation)
        message.incref()  # one stream reads it, as Faust's conductor counts
        await manual.channel.put(Event(app, message.key, message.value, [], message))
    await asyncio.wait_for(reading, 5)
    await stream.stop()
    return seen


def _commit(consumer: Any) -> int | None:
    """The offset Faust's next commit of the partition would write."""
    offset: int | None = consumer._new_offset(TP0)
    return offset


@pytest.fixture
def python_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust's pure-Python stream iterator: the one that acks what it skips."""
    monkeypatch.setattr(faust.streams, "_CStreamIterator", None)


@pytest.mark.usefixtures("python_streams")
async def test_a_record_faust_skips_is_not_committed(harness: FaustHarness) -> None:
    skips.install()
    skips.install()  # idempotent
    seen = await _agent_reads(harness, {1: GENERATION, 2: GENERATION - 1, 3: GENERATION})
    assert seen == [1, 3], "Faust skipped the record of the older generation"
    consumer: Any = harness.app.consumer
    assert consumer._acked[TP0] == [1, 3], "and its ack of it was refused"
    assert _commit(consumer) == 2, "so the commit stops short of it"


@pytest.mark.usefixtures("python_streams")
async def test_faust_alone_commits_past_a_skipped_record(harness: FaustHarness) -> None:
    seen = await _agent_reads(harness, {1: GENERATION, 2: GENERATION - 1, 3: GENERATION})
    assert seen == [1, 3]
    assert _commit(harness.app.consumer) == 4, "the bug skips.py works around"


async def test_faust_s_cython_streams_leave_a_skipped_record_unacked(
    harness: FaustHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This iterator inlines Consumer.ack, so the patch could not refuse an ack it made: it
    # must make none of a skipped record.
    monkeypatch.setattr(faust.streams, "_CStreamIterator", CythonStreamIterator)
    seen = await _agent_reads(harness, {1: GENERATION, 2: GENERATION - 1, 3: GENERATION})
    assert seen == [1, 3]
    assert _commit(harness.app.consumer) == 2


async def test_a_record_read_while_flow_is_paused_is_skipped(harness: FaustHarness) -> None:
    consumer = harness.consumer()
    [message] = messages(TP0, 1, generation=GENERATION)
    harness.app.consumer_generation_id = GENERATION
    harness.app.flow_control.resume()
    assert not skips.skipped(consumer, message)
    harness.app.flow_control.suspend()  # a rebalance has begun
    assert skips.skipped(consumer, message)


async def test_an_agent_s_own_ack_goes_through_a_rebalance(harness: FaustHarness) -> None:
    skips.install()
    consumer = harness.consumer()
    harness.app.consumer = consumer
    await harness.acking(TOPIC)
    harness.app.flow_control.suspend()
    first, second = messages(TP0, 1, 2, generation=GENERATION - 1)
    stream: Any = harness.app.topic(TOPIC).stream()
    stream = stream.noack()
    assert await skips.ack(stream, Event(harness.app, b"k", b"v", [], first))
    assert not await stream.ack(Event(harness.app, b"k", b"v", [], second)), "only for its ack"
    assert consumer._acked[TP0] == [1]
