"""Faust's buffer of table-changelog records, drained a batch at a time.

Faust's ``ProducerBuffer._handle_pending`` produces the queued changelog records one per turn
of the event loop, and past 100 queued Faust holds back every incoming record, so under load
the worker fell behind; this one hands everything queued to the producer at each wake-up, in
order (docs/faust.md). Upstream: faust-streaming#173 ("producer buffer full"); without it this
test fails: tests/unit/streams/faust_fixes/test_changelog.py::test_one_wake_up_sends_all_queued
"""

from __future__ import annotations

import functools
from typing import Any

from faust.transport.producer import ProducerBuffer
from mode.services import ServiceTask

_INSTALLED = "_switchboard_batch_drain"


async def _drain_pending(buffer: Any) -> None:
    """Faust's ``ProducerBuffer._handle_pending``, taking all that is queued at each wake-up."""
    pending = buffer.pending
    while not buffer.should_stop:
        await buffer._send_pending(await pending.get())
        while not pending.empty():
            await buffer._send_pending(pending.get_nowait())
        buffer.message_sent.set()


def install() -> None:
    """Give Faust's producer buffer the batch drain; idempotent. Call before the worker starts."""
    if getattr(ProducerBuffer, _INSTALLED, False):
        return
    original = ProducerBuffer.__dict__["_handle_pending"]

    @functools.wraps(original.fun)  # streams.faust_fixes.check reads the original through it
    async def _handle_pending(self: Any) -> None:
        await _drain_pending(self)

    ProducerBuffer._handle_pending = ServiceTask(_handle_pending)  # type: ignore[method-assign]
    setattr(ProducerBuffer, _INSTALLED, True)
