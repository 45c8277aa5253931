"""The inline hand-off: same outcome as Faust's ``wait_first``, without a task when it can."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.transport.consumer import Consumer

from streams.faust_fixes import intake


class FakeConsumer:
    """What the patched ``wait_first`` reads of Faust's consumer, and the original it falls
    back on (recorded, so a test sees which path ran)."""

    def __init__(self) -> None:
        self.suspend_flow = asyncio.Event()
        self.should_stop = False
        self.fell_back: list[tuple[Any, ...]] = []

    async def original(self, *coros: Any, timeout: Any = None) -> Any:  # noqa: ASYNC109 (Faust's)
        self.fell_back.append(coros)
        tasks = [asyncio.ensure_future(c) for c in coros]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return [t.result() for t in done]


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> Any:
    consumer = FakeConsumer()
    monkeypatch.setattr(Consumer, "wait_first", FakeConsumer.original)
    monkeypatch.setattr(Consumer, intake._INSTALLED, False, raising=False)
    intake.install()
    wait_first = Consumer.wait_first
    return consumer, wait_first


async def test_a_hand_off_that_does_not_wait_runs_inline(patched: Any) -> None:
    consumer, wait_first = patched
    delivered: list[str] = []

    async def callback() -> str:
        delivered.append("record")
        return "ok"

    flag = consumer.suspend_flow.wait()
    result = await wait_first(consumer, callback(), flag)
    assert delivered == ["record"]
    assert result.results == ["ok"]
    assert consumer.fell_back == []  # no task, no fallback
    assert flag.cr_frame is None  # the unused flag coroutine was closed, not left pending


async def test_a_hand_off_that_waits_finishes_under_the_original(patched: Any) -> None:
    consumer, wait_first = patched
    room = asyncio.Event()
    steps: list[str] = []

    async def callback() -> str:
        steps.append("start")
        await room.wait()  # a full stream buffer
        await asyncio.sleep(0)
        steps.append("end")
        return "put"

    asyncio.get_running_loop().call_later(0.01, room.set)
    results = await wait_first(consumer, callback(), consumer.suspend_flow.wait())
    assert steps == ["start", "end"]
    assert results == ["put"]
    assert len(consumer.fell_back) == 1


async def test_a_waiting_hand_off_is_interrupted_by_a_rebalance(patched: Any) -> None:
    consumer, wait_first = patched
    cancelled = asyncio.Event()

    async def callback() -> None:
        try:
            await asyncio.Event().wait()  # never room
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.get_running_loop().call_later(0.01, consumer.suspend_flow.set)
    results = await wait_first(consumer, callback(), consumer.suspend_flow.wait())
    assert results == [True]  # the suspend flag won
    await asyncio.wait_for(cancelled.wait(), 1)  # and the hand-off was told


async def test_while_flow_is_suspended_the_original_runs(patched: Any) -> None:
    consumer, wait_first = patched
    consumer.suspend_flow.set()

    async def callback() -> str:
        return "ok"

    await wait_first(consumer, callback(), consumer.suspend_flow.wait())
    assert len(consumer.fell_back) == 1


async def test_an_error_in_the_hand_off_propagates(patched: Any) -> None:
    consumer, wait_first = patched

    async def callback() -> None:
        raise ValueError("undecodable")

    with pytest.raises(ValueError, match="undecodable"):
        await wait_first(consumer, callback(), consumer.suspend_flow.wait())
