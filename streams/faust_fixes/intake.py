"""Faust's consumer hands each record to its streams inline unless the hand-off has to wait.

Faust's ``Consumer._drain_messages`` hands every record over through ``wait_first``, four tasks
and several turns of the event loop a record, too slow for a busy worker's loop; this
``wait_first`` runs the hand-off inline first and falls back on Faust's own only when it has to
wait (docs/faust.md). No upstream issue found; without it this test fails:
tests/unit/streams/faust_fixes/test_intake.py::test_fetched_records_are_handed_over_inline
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Coroutine
from typing import Any

from faust.transport.consumer import Consumer
from mode.services import WaitResults

_INSTALLED = "_switchboard_inline_hand_off"


async def _resume(coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """Drive ``coroutine`` on from where it stopped (waiting on ``waiting_on``) to its end."""
    while True:
        try:
            if waiting_on is None:  # a bare yield (asyncio.sleep(0))
                await asyncio.sleep(0)
            else:
                waiting_on._asyncio_future_blocking = False
                await asyncio.wait({waiting_on})
        except BaseException as interrupted:  # this task was cancelled: tell the coroutine
            try:
                waiting_on = coroutine.throw(interrupted)
            except StopIteration as finished:
                return finished.value
            continue
        try:
            waiting_on = coroutine.send(None)
        except StopIteration as finished:
            return finished.value


def install() -> None:
    """Give Faust's consumer the inline hand-off; idempotent."""
    if getattr(Consumer, _INSTALLED, False):
        return
    original = Consumer.wait_first

    # The signature is Faust's (mode's Service.wait_first), timeout included; ``wraps`` lets
    # streams.faust_fixes.check see the original through the patch.
    @functools.wraps(original)
    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> WaitResults:  # noqa: ASYNC109
        first = coros[0] if coros else None
        if (
            timeout is not None
            or not inspect.iscoroutine(first)
            or self.suspend_flow.is_set()
            or self.should_stop
        ):
            return await original(self, *coros, timeout=timeout)
        others = coros[1:]
        try:
            waiting_on = first.send(None)
        except StopIteration as finished:
            _close(others)
            return WaitResults([first], [finished.value], False)
        except BaseException:
            _close(others)
            raise
        # timeout is None here: the fast path is taken only without one.
        return await original(self, _resume(first, waiting_on), *others)

    Consumer.wait_first = wait_first  # type: ignore[method-assign]
    setattr(Consumer, _INSTALLED, True)


def _close(awaitables: tuple[Any, ...]) -> None:
    for awaitable in awaitables:
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # never started: closing it avoids a "never awaited" warning
