"""The records a Faust stream skips stay unacked, so that no commit passes over them.

Faust's pure-Python stream iterator acks each record it skips across a rebalance (flow control
paused, or an older consumer generation), which lets a commit pass a record nobody processed;
this ``Consumer.ack`` refuses those acks unless they come through ``ack`` below, so the record
is fetched again (its Cython iterator, used when built, does not ack them: docs/faust.md). No
upstream issue found (the skip comes from faust-streaming#223); without it this test fails:
tests/unit/streams/faust_fixes/test_skips.py::test_a_record_faust_skips_is_not_committed
"""

from __future__ import annotations

import functools
from contextvars import ContextVar
from typing import Any

from faust.transport.consumer import Consumer

_INSTALLED = "_switchboard_skips_unacked"
_finished: ContextVar[bool] = ContextVar("switchboard_finished_ack", default=False)


async def ack(stream: Any, event: Any) -> Any:
    """Ack ``event`` on ``stream`` (a ``stream.noack()``) as finished: never refused."""
    token = _finished.set(True)
    try:
        return await stream.ack(event)
    finally:
        _finished.reset(token)


def skipped(consumer: Any, message: Any) -> bool:
    """Whether a stream of ``consumer``'s app skips ``message`` (Faust's own test)."""
    app = consumer.app
    return bool(
        not app.flow_control.is_active() or message.generation_id != app.consumer_generation_id
    )


def install() -> None:
    """Make Faust's consumer refuse the acks of skipped records; idempotent."""
    if getattr(Consumer, _INSTALLED, False):
        return
    original = Consumer.ack

    @functools.wraps(original)  # streams.faust_fixes.check reads the original through it
    def ack_unless_skipped(self: Any, message: Any) -> bool:
        if not _finished.get() and skipped(self, message):
            return False
        return original(self, message)

    Consumer.ack = ack_unless_skipped  # type: ignore[method-assign]
    setattr(Consumer, _INSTALLED, True)
