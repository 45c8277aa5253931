from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from agents.runtime.keyed import InOrderAcks, KeyedRunner


@dataclass
class Message:
    offset: int
    tp: str = "agent.requests/0"
    generation_id: int = 1


@dataclass
class Event:
    key: str
    message: Message
    delay_s: float = 0.0


@dataclass
class Recorder:
    handled: list[tuple[str, int]] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    running: int = 0
    most_running: int = 0

    async def handle(self, event: Event) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(event.delay_s)
            if event.key == "boom":
                raise RuntimeError("a bug")
            self.handled.append((event.key, event.message.offset))
        finally:
            self.running -= 1

    async def ack(self, event: Any) -> None:
        self.acked.append(event.message.offset)


async def test_keys_run_side_by_side_and_in_order_within_a_key() -> None:
    recorder = Recorder()
    runner = KeyedRunner(recorder.handle, recorder.ack, max_in_flight=100)
    events = [Event(f"c{n % 10}", Message(n), delay_s=0.05) for n in range(50)]
    for event in events:
        await runner.submit(event.key, event)
    await runner.drain()
    assert recorder.most_running == 10, "ten lanes at once, not one"
    for key in {e.key for e in events}:
        offsets = [o for k, o in recorder.handled if k == key]
        assert offsets == sorted(offsets)
    assert recorder.acked == list(range(50)), "acks leave in offset order"


async def test_a_slow_record_holds_back_acks_but_not_other_keys() -> None:
    recorder = Recorder()
    runner = KeyedRunner(recorder.handle, recorder.ack, max_in_flight=10)
    await runner.submit("slow", Event("slow", Message(0), delay_s=0.3))
    for n in range(1, 6):
        await runner.submit(f"fast{n}", Event(f"fast{n}", Message(n)))
    await asyncio.sleep(0.1)
    assert [o for _, o in recorder.handled] == [1, 2, 3, 4, 5]
    assert recorder.acked == [], "nothing is acked past the unfinished record"
    await runner.drain()
    assert recorder.acked == [0, 1, 2, 3, 4, 5]


async def test_in_flight_records_are_bounded() -> None:
    recorder = Recorder()
    runner = KeyedRunner(recorder.handle, recorder.ack, max_in_flight=3)
    submitting = asyncio.ensure_future(
        asyncio.gather(
            *(runner.submit(f"c{n}", Event(f"c{n}", Message(n), delay_s=0.05)) for n in range(9))
        )
    )
    await asyncio.sleep(0.01)
    assert runner.in_flight == 3
    await submitting
    await runner.drain()
    assert recorder.most_running == 3
    assert sorted(recorder.acked) == list(range(9))


async def test_a_failing_key_stops_alone_and_stays_unacked() -> None:
    recorder = Recorder()
    runner = KeyedRunner(recorder.handle, recorder.ack, max_in_flight=10)
    await runner.submit("boom", Event("boom", Message(0)))
    await runner.submit("boom", Event("boom", Message(1)))
    await runner.submit("fine", Event("fine", Message(2)))
    await runner.drain()
    assert recorder.handled == [("fine", 2)]
    assert recorder.acked == []
    assert runner.in_flight == 3


async def test_acks_are_per_partition_and_generation() -> None:
    acked: list[tuple[str, int]] = []

    async def ack(event: Any) -> None:
        acked.append((event.message.tp, event.message.offset))

    acks = InOrderAcks(ack)
    first, second = Event("a", Message(5)), Event("b", Message(6))
    other = Event("c", Message(1, tp="agent.requests/1"))
    for event in (first, second, other):
        acks.track(event)
    await acks.done(second)
    await acks.done(other)
    assert acked == [("agent.requests/1", 1)]
    await acks.done(first)
    assert acked[1:] == [("agent.requests/0", 5), ("agent.requests/0", 6)]
    assert acks.unacked == 0
