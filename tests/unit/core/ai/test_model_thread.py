"""Model calls on their own loop: results, deltas on the caller's loop, and cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence

import pytest

from core.ai.llm import Completion, DemoChatModel, Message, OnDelta, ToolSpec, Usage
from core.ai.model_thread import ModelThread, ThreadedModel


class SlowModel:
    """Records which thread it runs on; hangs until cancelled when asked to."""

    label = "slow"

    def __init__(self) -> None:
        self.parameters: dict[str, object] = {}
        self.threads: set[str] = set()
        self.cancelled = threading.Event()

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        on_delta: OnDelta | None = None,
    ) -> Completion:
        self.threads.add(threading.current_thread().name)
        if messages[-1]["content"] == "hang":
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return Completion("done", (), "stop", Usage(1, 1), "slow", 0.0)

    async def close(self) -> None:
        return None


@pytest.fixture
def thread() -> Iterator[ModelThread]:
    models = ModelThread("test-models")
    yield models
    models.stop()


async def test_calls_run_on_the_model_thread_and_deltas_come_back_home(thread: ModelThread) -> None:
    model = ThreadedModel(thread, DemoChatModel, "demo")
    home = threading.current_thread().name
    seen: list[tuple[str, str]] = []

    async def on_delta(delta: str) -> None:
        seen.append((threading.current_thread().name, delta))

    completion = await model.complete([{"role": "user", "content": "hello there"}], [], on_delta)
    assert completion.text.startswith("[demo model]")
    assert "".join(d for _, d in seen) == completion.text
    assert {name for name, _ in seen} == {home}  # pushed on the caller's loop, not the thread's


async def test_cancelling_the_caller_cancels_the_call(thread: ModelThread) -> None:
    slow = SlowModel()
    model = ThreadedModel(thread, lambda: slow, "slow")
    assert (await model.complete([{"role": "user", "content": "hi"}], [])).text == "done"
    assert slow.threads == {"test-models"}
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await model.complete([{"role": "user", "content": "hang"}], [])
    assert await asyncio.to_thread(slow.cancelled.wait, 2)
