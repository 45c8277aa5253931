"""``as_current``: a Faust table, written outside Faust's stream iteration, follows the event."""

from __future__ import annotations

import pytest
from faust.events import Event
from faust.streams import current_event
from faust.types import TP

from streams.faust_fixes.current_event import as_current
from tests.unit.streams.faust_fixes.harness import FaustHarness, messages


async def test_table_writes_follow_the_event(harness: FaustHarness) -> None:
    app = harness.app
    table = app.Table("conversation-state", default=None, partitions=4)
    app.consumer = harness.consumer()
    [message] = messages(TP("test.inbound", 3), 7)
    event = Event(app, message.key, message.value, [], message)
    with as_current(event):
        assert current_event() is event
        table["conversation"] = "state"
    assert current_event() is None, "only while it is planned"
    changelog_record = app.producer.buffer.pending.get_nowait()
    assert changelog_record.message.channel is table.changelog_topic
    assert changelog_record.message.partition == 3, "the changelog partition is the event's"


async def test_without_a_current_event_faust_refuses_a_table_write(harness: FaustHarness) -> None:
    table = harness.app.Table("conversation-state", default=None, partitions=4)
    with pytest.raises(TypeError, match="outside of stream iteration"):
        table["conversation"] = "state"
