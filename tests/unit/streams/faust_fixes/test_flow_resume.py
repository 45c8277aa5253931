"""The end of a recovery, Faust's own (``Recovery.on_recovery_completed``), with a consumer whose
fetch loop hands a record over while the stream partitions are sought to committed offsets."""

from __future__ import annotations

import uuid
from typing import Any

import faust
import pytest
from faust.tables.manager import TableManager
from faust.types import TP
from mode.utils.queues import FlowControlEvent

from streams.contract import AGENT_REQUESTS
from streams.faust_fixes import flow_resume

TP2 = TP(AGENT_REQUESTS, 2)
RECORD = "the last request of the partition, at offset 4"


class SeekingConsumer:
    """What the end of a recovery asks of Faust's consumer. Meanwhile the fetch loop goes on: a
    partition it resumed has its next record handed to the stream before the seek returns."""

    def __init__(self, app: faust.App, hand_over: Any) -> None:
        self.app = app
        self.hand_over = hand_over
        self.resumed: set[TP] = set()
        self.flowing = False

    def assignment(self) -> set[TP]:
        return {TP2}

    def resume_partitions(self, tps: set[TP]) -> None:
        self.resumed |= set(tps)

    async def perform_seek(self) -> None:
        assert self.resumed == {TP2}, "Faust resumes the stream partitions before the seek"
        self.hand_over()

    def resume_flow(self) -> None:
        self.flowing = True


class Fetcher:
    async def maybe_start(self) -> None:
        """Already running: it handed the record over."""


@pytest.fixture(autouse=True)
def mode_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo, after the test, what ``install()`` puts on mode's class."""
    monkeypatch.setattr(FlowControlEvent, "resume", FlowControlEvent.resume)
    monkeypatch.setattr(FlowControlEvent, flow_resume._INSTALLED, False, raising=False)


@pytest.fixture
def app() -> faust.App:
    return faust.App(
        f"test-flow-resume-{uuid.uuid4().hex[:8]}", store="memory://", web_enabled=False
    )


async def _end_recovery(app: faust.App) -> tuple[Any, SeekingConsumer]:
    """A stream's buffer (a channel's queue) and the consumer, after recovery has ended."""
    buffer = app.channel().queue
    consumer = SeekingConsumer(app, lambda: buffer.put_nowait(RECORD))
    app.consumer = consumer  # type: ignore[assignment]
    app.__dict__["_fetcher"] = Fetcher()  # Faust's cached property, already started
    app.flow_control.resume()  # recovery resumed flow to read the changelogs
    tables = app.tables
    assert isinstance(tables, TableManager)
    await tables.recovery.on_recovery_completed(app.consumer_generation_id)
    assert consumer.flowing
    return buffer, consumer


async def test_faust_alone_empties_the_buffers_after_the_seek(app: faust.App) -> None:
    buffer, _ = await _end_recovery(app)
    # The bug flow_resume fixes: the record is gone, the consumer's position past it.
    assert buffer.empty()


async def test_a_record_handed_over_during_the_seek_reaches_its_stream(app: faust.App) -> None:
    flow_resume.install()
    flow_resume.install()  # idempotent
    buffer, _ = await _end_recovery(app)
    assert buffer.get_nowait() == RECORD


async def test_resuming_a_suspended_flow_still_empties_the_buffers(app: faust.App) -> None:
    flow_resume.install()
    buffer = app.channel().queue
    app.flow_control.resume()
    buffer.put_nowait("before the rebalance")
    app.flow_control.suspend()
    app.flow_control.resume()
    assert buffer.empty(), "as Faust's rebalance expects"
    assert app.flow_control.is_active()
