"""What the widget probes share: clients that come from an address of their choosing (the
test runs on loopback, a trusted proxy, so ``X-Forwarded-For`` is believed as the gateway's),
and the ``conversation.events`` an application produced meanwhile."""

from __future__ import annotations

import random
from typing import Any

import socketio
from aiokafka.structs import TopicPartition

from core.clients.realtime import WIDGET_NAMESPACE
from core.settings import Settings
from streams.contract import CONVERSATION_EVENTS
from streams.records import ConversationEvent, decode
from tests.integration.socket_harness import Client
from tests.integration.topic_reader import end_offsets, records_since


def an_address() -> str:
    """A random address of the benchmarking range (198.18.0.0/15): a fresh throttle bucket."""
    return f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def widget() -> Client:
    return Client(WIDGET_NAMESPACE)


async def connect_from(client: Client, url: str, auth: dict[str, Any], address: str) -> None:
    await client.sio.connect(
        url,
        namespaces=[client.namespace],
        auth=auth,
        transports=["websocket"],
        headers={"X-Forwarded-For": address},
        wait_timeout=10,
    )


async def refusal_from(url: str, auth: dict[str, Any], address: str) -> dict[str, Any] | None:
    """Connect from ``address``: the refusal's data, or None (then closed again) if accepted."""
    client = widget()
    try:
        await connect_from(client, url, auth, address)
    except socketio.exceptions.ConnectionError:
        await client.sio.eio.disconnect()
        refusal = client.refusal
        assert isinstance(refusal, dict), refusal
        data: dict[str, Any] = refusal.get("data", refusal)
        return data
    await client.wait_for("session")
    await client.close()
    return None


async def event_offsets(settings: Settings) -> dict[TopicPartition, int]:
    return await end_offsets(settings, CONVERSATION_EVENTS)


async def events_since(
    settings: Settings, offsets: dict[TopicPartition, int], application_id: str
) -> list[ConversationEvent]:
    """The events of ``application_id`` between ``offsets`` and the topic's end now."""
    events = [decode(record.value) for record in await records_since(settings, offsets)]
    return [
        event
        for event in events
        if isinstance(event, ConversationEvent) and event.application_id == application_id
    ]
