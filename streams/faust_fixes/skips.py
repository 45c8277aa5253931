"""Records a Faust stream skips stay unacked, so no commit passes over them.

A Faust stream skips any record that reaches it while flow control is paused (a rebalance has
begun) or that was fetched in an earlier consumer generation, and acks it so that lag does not
grow. That ack lets the next commit pass a record nobody processed: if the worker dies, or the
partition moves, before the record is fetched again, it is lost. Here an ack is refused in
exactly those conditions unless it comes through ``ack``, the agents' own ack of a record they
have finished. A refused record stays below the committed offset, so it is fetched again: by
the seek to committed offsets that ends every rebalance, or by the offset guard's rewind.
"""

from __future__ import annotations

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

    def ack_unless_skipped(self: Any, message: Any) -> bool:
        if not _finished.get() and skipped(self, message):
            return False
        return original(self, message)

    Consumer.ack = ack_unless_skipped  # type: ignore[method-assign]
    setattr(Consumer, _INSTALLED, True)
