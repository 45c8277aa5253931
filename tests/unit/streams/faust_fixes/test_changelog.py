"""The changelog buffer's drain: everything queued goes at each wake-up, in order."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from faust.transport.producer import ProducerBuffer
from mode.services import ServiceTask

from streams.faust_fixes import changelog


class FakeBuffer:
    """What the drain reads of Faust's ``ProducerBuffer``; each send takes a turn of the loop,
    like Faust's ``publish_message``."""

    def __init__(self) -> None:
        self.pending: asyncio.Queue[int] = asyncio.Queue()
        self.message_sent = asyncio.Event()
        self.should_stop = False
        self.sent: list[int] = []

    async def _send_pending(self, item: int) -> None:
        await asyncio.sleep(0)
        self.sent.append(item)


async def test_one_wake_up_sends_everything_queued_in_order() -> None:
    buffer = FakeBuffer()
    for item in range(150):  # more than Faust's 100, past which it holds intake back
        buffer.pending.put_nowait(item)
    drain = asyncio.create_task(changelog._drain_pending(buffer))
    try:
        await asyncio.wait_for(buffer.message_sent.wait(), timeout=5)
        assert buffer.sent == list(range(150))
        assert buffer.pending.empty()
        buffer.message_sent.clear()
        buffer.pending.put_nowait(150)  # a later record still goes, on the next wake-up
        await asyncio.wait_for(buffer.message_sent.wait(), timeout=5)
        assert buffer.sent[-1] == 150
    finally:
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain


def test_install_replaces_the_background_task_once() -> None:
    changelog.install()
    installed: Any = ProducerBuffer.__dict__["_handle_pending"]
    assert isinstance(installed, ServiceTask)
    assert installed.fun is changelog._drain_pending
    changelog.install()
    assert ProducerBuffer.__dict__["_handle_pending"] is installed
