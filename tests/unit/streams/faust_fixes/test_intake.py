"""The inline hand-off on Faust's own consumer: Faust's outcome, without a task when it can."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP

from streams.faust_fixes import intake
from tests.unit.streams.faust_fixes.harness import FaustHarness, messages

TP0 = TP("test.inbound", 0)


@pytest.fixture
def consumer(harness: FaustHarness) -> Any:
    intake.install()
    intake.install()  # idempotent
    return harness.consumer()


async def test_fetched_records_are_handed_over_inline(harness: FaustHarness) -> None:
    intake.install()
    handed: list[tuple[int, asyncio.Task[Any] | None]] = []

    async def callback(message: Any) -> None:
        handed.append((message.offset, asyncio.current_task()))

    consumer = harness.consumer(callback)
    await harness.drain(consumer, [messages(TP0, 10, 11, 12), messages(TP0, 13)])
    assert [offset for offset, _ in handed] == [10, 11, 12, 13]
    fetch_loop = asyncio.current_task()
    # Faust's own wait_first runs each hand-off as a task of its own, beside three more.
    assert all(task is fetch_loop for _, task in handed), "each ran in Faust's fetch loop"


async def test_a_hand_off_that_waits_finishes_under_faust_s_wait_first(consumer: Any) -> None:
    room = asyncio.Event()
    steps: list[tuple[str, asyncio.Task[Any] | None]] = []

    async def callback() -> str:
        steps.append(("start", asyncio.current_task()))
        await room.wait()  # a full stream buffer
        await asyncio.sleep(0)
        steps.append(("end", asyncio.current_task()))
        return "put"

    asyncio.get_running_loop().call_soon(room.set)
    results = await consumer.wait_first(callback(), consumer.suspend_flow.wait())
    assert results.results == ["put"]
    assert not results.stopped
    [(_, started_in), (_, ended_in)] = steps
    assert started_in is asyncio.current_task(), "it starts inline"
    assert ended_in is not started_in, "and goes on as a task of Faust's wait_first"


async def test_a_waiting_hand_off_is_interrupted_by_a_rebalance(consumer: Any) -> None:
    cancelled = asyncio.Event()

    async def callback() -> None:
        try:
            await asyncio.Event().wait()  # never room
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.get_running_loop().call_soon(consumer.suspend_flow.set)
    results = await consumer.wait_first(callback(), consumer.suspend_flow.wait())
    assert results.results == [True], "the suspend flag won"
    await asyncio.wait_for(cancelled.wait(), 5)  # and the hand-off was told


async def test_while_flow_is_suspended_faust_s_wait_first_runs(consumer: Any) -> None:
    consumer.suspend_flow.set()
    ran_in: list[asyncio.Task[Any] | None] = []

    async def callback() -> str:
        ran_in.append(asyncio.current_task())
        return "ok"

    await consumer.wait_first(callback(), consumer.suspend_flow.wait())
    assert ran_in != [asyncio.current_task()]


async def test_an_error_in_the_hand_off_propagates(consumer: Any) -> None:
    async def callback() -> None:
        raise ValueError("undecodable")

    with pytest.raises(ValueError, match="undecodable"):
        await consumer.wait_first(callback(), consumer.suspend_flow.wait())


async def test_the_unused_suspend_flag_is_closed_not_left_pending(consumer: Any) -> None:
    async def callback() -> None:
        return None

    flag = consumer.suspend_flow.wait()
    await consumer.wait_first(callback(), flag)
    assert flag.cr_frame is None, "closed: no 'never awaited' warning"
