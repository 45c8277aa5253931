"""Model calls on an event loop of their own, in a thread beside the worker's loop.

Faust hands every record to its stream through several awaits, each one a turn of the event
loop. With hundreds of model calls in flight on that same loop (HTTP, JSON, the SDK's models),
each turn grows long and Faust's intake slows to the rate of loop turns: records waited about
1.5 s before their agent saw them, at about 100 answers a second. On a loop of their own the
calls no longer lengthen the worker's turns; the worker's loop only hands requests over and
takes completions back.

Model clients are made on the thread's loop, which their connections bind to, so they are
closed there too: ``stop`` (or ``close``, from a loop) closes every one, then ends the thread.
One client can be closed earlier (``ThreadedModel.retire``, when a cache evicts it): it is
closed once the calls still running on it have ended.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from core.ai.llm import ChatModel, Completion, Message, OnDelta, ToolSpec

T = TypeVar("T")

log = logging.getLogger(__name__)

#: How long closing the models may take before the thread is stopped regardless.
CLOSE_TIMEOUT_S = 10.0


class ModelThread:
    """One daemon thread running an event loop; started on first use, ended by ``stop``."""

    def __init__(self, name: str = "switchboard-models") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._models: list[ChatModel] = []
        self._closing: set[Future[None]] = set()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the thread's loop; cancelling the caller cancels it there."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    async def make(self, make: Callable[[], ChatModel]) -> ChatModel:
        """``make()`` called on the thread's loop, which its client binds to; closed by ``stop``."""
        model = await self.run(_made(make))
        with self._lock:
            self._models.append(model)
        return model

    @property
    def open_models(self) -> int:
        """How many clients made here are not closed yet."""
        with self._lock:
            return len(self._models)

    def close_soon(self, model: ChatModel) -> None:
        """Close one model on the thread's loop, without waiting; ``stop`` no longer closes it."""
        with self._lock:
            if model not in self._models:
                return
            self._models.remove(model)
            loop = self._loop
        if loop is None:
            return
        closing = asyncio.run_coroutine_threadsafe(_close_one(model), loop)
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def stop(self) -> None:
        """Cancel the calls still running, close every model made here, then end the loop.

        Blocks until done (at most twice ``CLOSE_TIMEOUT_S``); from a loop, ``await close()``.
        """
        with self._lock:
            loop, thread, models = self._loop, self._thread, self._models
            self._loop, self._thread, self._models = None, None, []
        if loop is None or thread is None:
            return
        # Clients already closing (retired ones) finish first: winding down cancels every task.
        concurrent.futures.wait(list(self._closing), timeout=CLOSE_TIMEOUT_S)
        try:
            asyncio.run_coroutine_threadsafe(_wind_down(models), loop).result(CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("model clients not closed within %gs", CLOSE_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=CLOSE_TIMEOUT_S)
        if thread.is_alive():
            log.warning("the model thread did not stop within %gs", CLOSE_TIMEOUT_S)
        else:
            loop.close()

    async def close(self) -> None:
        """``stop`` without blocking the caller's loop."""
        await asyncio.to_thread(self.stop)


async def _made(make: Callable[[], ChatModel]) -> ChatModel:
    return make()


async def _close_one(model: ChatModel) -> None:
    try:
        await model.close()
    except Exception as error:  # a client that fails to close is reported, nothing more
        log.warning("could not close the client of %s: %r", model.label, error)


async def _wind_down(models: Sequence[ChatModel]) -> None:
    """On the model thread: cancel what still runs there, then close every model's client."""
    this = asyncio.current_task()
    running = [task for task in asyncio.all_tasks() if task is not this]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    outcomes = await asyncio.gather(*(m.close() for m in models), return_exceptions=True)
    for model, outcome in zip(models, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            log.warning("could not close the client of %s: %r", model.label, outcome)
    await asyncio.get_running_loop().shutdown_asyncgens()


class ThreadedModel:
    """A chat model whose calls run on a ``ModelThread``; text deltas come back to the caller's
    loop, where the clients that push them (Redis) live."""

    def __init__(self, thread: ModelThread, make: Callable[[], ChatModel], label: str) -> None:
        self._thread = thread
        self._make = make
        self._label = label
        self._model: ChatModel | None = None
        self._making: asyncio.Lock | None = None
        self._in_flight = 0
        self._retired = False

    async def _inner(self) -> ChatModel:
        if self._making is None:
            self._making = asyncio.Lock()
        async with self._making:  # calls arriving together share one client
            if self._model is None:
                self._model = await self._thread.make(self._make)
            return self._model

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def retire(self) -> None:
        """No longer wanted (evicted from a cache): close the client once no call runs on it.

        A call made after this still works; its client is closed when it ends.
        """
        self._retired = True
        self._release_if_idle()

    def _release_if_idle(self) -> None:
        if self._retired and self._in_flight == 0 and self._model is not None:
            model, self._model = self._model, None
            self._thread.close_soon(model)

    @property
    def label(self) -> str:
        return self._label

    @property
    def parameters(self) -> dict[str, Any]:
        return self._model.parameters if self._model is not None else {}

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        on_delta: OnDelta | None = None,
    ) -> Completion:
        self._in_flight += 1
        try:
            model = await self._inner()
            relay: OnDelta | None = None
            if on_delta is not None:
                home = asyncio.get_running_loop()

                async def relay_delta(delta: str) -> None:
                    pushed = asyncio.run_coroutine_threadsafe(_push(on_delta, delta), home)
                    await asyncio.wrap_future(pushed)

                relay = relay_delta
            return await self._thread.run(_complete(model, messages, tools, relay))
        finally:
            self._in_flight -= 1
            self._release_if_idle()

    async def close(self) -> None:
        if self._model is not None:
            model, self._model = self._model, None
            await self._thread.run(model.close())


async def _push(on_delta: OnDelta, delta: str) -> None:
    await on_delta(delta)


async def _complete(
    model: ChatModel,
    messages: Sequence[Message],
    tools: Sequence[ToolSpec],
    on_delta: OnDelta | None,
) -> Completion:
    return await model.complete(messages, tools, on_delta)
