"""The message-process agent is the only creator of conversations, however they are opened.

A tenant's server opens a conversation through the applications API with an ``open`` command, a
first message, or both, and may repeat itself: the agent's real plan and apply run here against
an in-memory store, and each conversation must be created once and announced once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from agents import message_process
from agents.message_process import MessageProcess
from agents.runtime.batches import handle_batch
from agents.runtime.context import PipelineDeps
from agents.runtime.outputs import Send
from core import ids
from core.cached.applications import UnknownApplication
from core.cached.channel_directory import ChannelDirectory
from core.clients.database import Document
from streams.contract import API_CHANNEL, CONVERSATION_COMMANDS, MESSAGES_INBOUND
from streams.records import ConversationCommand, ConversationEvent, InboundMessage, encode

WORKSPACE, APPLICATION, CHAT = "ws_1", "app_1", "crm-42"
CONVERSATION = ids.conversation_id(API_CHANNEL, APPLICATION, CHAT)


def _envelope(**fields: Any) -> dict[str, Any]:
    return {
        "conversation_id": CONVERSATION,
        "workspace_id": WORKSPACE,
        "application_id": APPLICATION,
        "channel": API_CHANNEL,
        "channel_id": APPLICATION,
        "chat_id": CHAT,
        **fields,
    }


Record = tuple[str, bytes]  # the topic it comes from, and its value


def _open(command_id: str, name: str = "Ada", **fields: Any) -> Record:
    command = ConversationCommand(
        **_envelope(**fields), message_id=command_id, action="open", contact_name=name
    )
    return CONVERSATION_COMMANDS, encode(command)


def _first_message(external_id: str, name: str = "Ada") -> Record:
    message_id = ids.inbound_message_id(API_CHANNEL, APPLICATION, CHAT, external_id)
    message = InboundMessage(
        **_envelope(),
        message_id=message_id,
        external_id=external_id,
        sender_id=CHAT,
        sender_name=name,
        text="Where is my order?",
    )
    return MESSAGES_INBOUND, encode(message)


@dataclass
class Message:
    value: bytes
    offset: int
    topic: str
    partition: int = 0
    key: bytes = CONVERSATION.encode()


@dataclass
class Event:
    message: Message


def _batch(*records: Record) -> list[Event]:
    return [Event(Message(value, n, topic)) for n, (topic, value) in enumerate(records)]


@dataclass
class Store:
    """``ConversationStore``'s writes, in memory, with its insert-once semantics."""

    conversations: dict[str, Document] = field(default_factory=dict)
    messages: dict[str, Document] = field(default_factory=dict)

    async def create_conversations(self, documents: Sequence[Document]) -> set[str]:
        return _insert_new(self.conversations, documents)

    async def insert_messages(self, messages: Sequence[Document]) -> set[str]:
        return _insert_new(self.messages, messages)

    async def set_conversation(self, conversation_id: str, **fields: Any) -> None:
        self.conversations[conversation_id].update(fields)


def _insert_new(collection: dict[str, Document], documents: Sequence[Document]) -> set[str]:
    created = set()
    for document in documents:
        if document["_id"] not in collection:
            collection[document["_id"]] = document
            created.add(document["_id"])
    return created


@dataclass
class Applications:
    known: set[tuple[str, str]] = field(default_factory=lambda: {(APPLICATION, WORKSPACE)})

    async def get(self, application_id: str, workspace_id: str) -> Document:
        if (application_id, workspace_id) not in self.known:
            raise UnknownApplication(f"application {application_id} does not exist")
        return {"_id": application_id, "workspace_id": workspace_id}


@dataclass
class Letters:
    sent: list[tuple[int, str]] = field(default_factory=list)

    async def __call__(self, event: Any, stage: str, error: BaseException, attempts: int) -> None:
        self.sent.append((event.message.offset, type(error).__name__))


@dataclass
class Pipeline:
    """The stage with its real plan and apply, an in-memory store and a record of what it sent."""

    store: Store = field(default_factory=Store)
    sent: list[Send] = field(default_factory=list)
    letters: Letters = field(default_factory=Letters)
    table: dict[str, Any] = field(default_factory=dict)
    applications: Applications = field(default_factory=Applications)

    def stage(self) -> MessageProcess:
        # The API's channel is its application: no channel document is read for it.
        channels = ChannelDirectory(cast(Any, {"channels": None}), cast(Any, None))
        deps = SimpleNamespace(store=self.store, applications=self.applications, channels=channels)
        return MessageProcess(cast(PipelineDeps, deps), self.table)

    async def run(self, *records: Record) -> None:
        await handle_batch(_batch(*records), self.stage(), self.letters)

    def events(self, kind: str) -> list[ConversationEvent]:
        found = [s.record for s in self.sent if isinstance(s.record, ConversationEvent)]
        return [e for e in found if e.type == kind]


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    made = Pipeline()

    async def publish_all(sends: Sequence[Send]) -> None:
        made.sent.extend(sends)

    monkeypatch.setattr(message_process, "publish_all", publish_all)
    return made


async def test_a_repeated_open_creates_one_conversation_announced_once(
    pipeline: Pipeline,
) -> None:
    await pipeline.run(_open("cmd_1"), _open("cmd_2"))  # two requests in one batch
    await pipeline.run(_open("cmd_3"))  # and one later
    await pipeline.run(_open("cmd_1"))  # the first redelivered (after a crash, say)
    assert pipeline.letters.sent == []
    assert list(pipeline.store.conversations) == [CONVERSATION]
    assert pipeline.store.conversations[CONVERSATION] == {
        "_id": CONVERSATION,
        **_envelope(),
        "mode": "bot",
        "contact_name": "Ada",
    }
    (created,) = pipeline.events("conversation.created")
    assert (created.subject_id, created.mode, created.workspace_id) == (
        CONVERSATION,
        "bot",
        WORKSPACE,
    )
    assert created.message_id == ids.event_id(CONVERSATION, "conversation.created")
    assert pipeline.store.messages == {}, "an open posts no message"
    assert not [s for s in pipeline.sent if not isinstance(s.record, ConversationEvent)]


async def test_a_redelivered_open_creates_what_a_crash_left_uncreated(pipeline: Pipeline) -> None:
    # The table kept the open (its changelog was written), the insert never happened.
    await pipeline.run(_open("cmd_1"))
    pipeline.store.conversations.clear()
    pipeline.sent.clear()
    await pipeline.run(_open("cmd_1"))
    assert list(pipeline.store.conversations) == [CONVERSATION]
    assert len(pipeline.events("conversation.created")) == 1


async def test_a_repeated_first_message_creates_one_conversation_and_one_message(
    pipeline: Pipeline,
) -> None:
    await pipeline.run(_first_message("m-1"), _first_message("m-1"))
    await pipeline.run(_first_message("m-1"))
    assert list(pipeline.store.conversations) == [CONVERSATION]
    assert pipeline.store.conversations[CONVERSATION]["contact_name"] == "Ada"
    assert len(pipeline.events("conversation.created")) == 1
    assert len(pipeline.store.messages) == 1
    assert pipeline.table[CONVERSATION].inbound_count == 1


@pytest.mark.parametrize("first", ["open", "message"])
async def test_an_open_and_a_first_message_in_either_order_create_one_conversation(
    pipeline: Pipeline, first: str
) -> None:
    records = [_open("cmd_1"), _first_message("m-1")]
    if first == "message":
        records.reverse()
    await pipeline.run(*records)
    await pipeline.run(*records)  # and both again
    assert list(pipeline.store.conversations) == [CONVERSATION]
    assert pipeline.store.conversations[CONVERSATION]["contact_name"] == "Ada"
    assert len(pipeline.events("conversation.created")) == 1
    (message,) = pipeline.store.messages.values()
    assert message["conversation_id"] == CONVERSATION
    assert len(pipeline.events("message.created")) == 2, "announced again as it was redelivered"


async def test_an_open_is_checked_as_a_first_message_would_be(pipeline: Pipeline) -> None:
    await pipeline.run(
        _open("cmd_1", application_id="app_other"),
        _open("cmd_2", channel_id="app_other"),
        _open("cmd_3", workspace_id="ws_other"),
    )
    assert pipeline.letters.sent == [
        (0, "UnknownApplication"),
        (1, "UnknownChannel"),
        (2, "UnknownApplication"),
    ]
    assert pipeline.store.conversations == {}
    await pipeline.run(_open("cmd_4"))
    # Even were another workspace's record to pass the application check, the conversation
    # is ws_1's: it is refused, and changes nothing.
    pipeline.applications.known.add((APPLICATION, "ws_other"))
    await pipeline.run(_open("cmd_5", workspace_id="ws_other"))
    assert pipeline.letters.sent[-1] == (0, "PermissionDenied")
    assert pipeline.store.conversations[CONVERSATION]["workspace_id"] == WORKSPACE
    assert len(pipeline.events("conversation.created")) == 1
