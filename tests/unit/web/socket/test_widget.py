"""The /widget namespace's pure parts: client ids, the inbound message a visitor's text becomes,
and how a stored message is shown."""

from __future__ import annotations

from typing import Any

import pytest

from core import ids
from core.security.throttle_keys import address_bucket
from core.settings import Settings
from streams.contract import WEB_CHANNEL
from streams.records import InboundMessage, decode, encode
from web.socket.widget import CLIENT_ID, budgets, inbound_message, message_view


@pytest.mark.parametrize(
    "client_id",
    ["a", "A", "z", "0", "9", "_", "-", "Az09_-", "c_1700000000-abc", "x" * 64],
)
def test_client_ids_of_1_to_64_safe_characters_are_accepted(client_id: str) -> None:
    assert CLIENT_ID.fullmatch(client_id)


@pytest.mark.parametrize(
    "client_id",
    [
        "", "x" * 65, "a b", " a", "a ", "a\n", "a.b", "a/b", "a:b", "é", "ü1", "\u0661", "\uff41",
        "\u0130", "\u212a",
    ],
)  # fmt: skip
def test_other_client_ids_are_refused(client_id: str) -> None:
    assert CLIENT_ID.fullmatch(client_id) is None


VISITOR: dict[str, Any] = {
    "visitor_id": "v_1",
    "application_id": "app_1",
    "workspace_id": "ws_1",
    "conversation_id": ids.conversation_id(WEB_CHANNEL, "app_1", "v_1"),
}


def test_a_visitors_text_becomes_a_web_inbound_message() -> None:
    message = inbound_message(VISITOR, "c_1", "hello")
    assert message.message_id == ids.inbound_message_id(WEB_CHANNEL, "app_1", "v_1", "c_1")
    assert (message.channel, message.channel_id, message.chat_id) == (WEB_CHANNEL, "app_1", "v_1")
    assert (message.external_id, message.sender_id, message.text) == ("c_1", "v_1", "hello")
    assert (message.conversation_id, message.workspace_id, message.application_id) == (
        VISITOR["conversation_id"], "ws_1", "app_1",
    )  # fmt: skip
    assert message.created_at > 0
    assert message.trace_id
    assert isinstance(decode(encode(message)), InboundMessage)


def test_a_resent_client_id_maps_to_the_same_message() -> None:
    first = inbound_message(VISITOR, "c_1", "hello")
    assert inbound_message(VISITOR, "c_1", "hello").message_id == first.message_id
    assert inbound_message(VISITOR, "c_2", "hello").message_id != first.message_id
    other_visitor = {**VISITOR, "visitor_id": "v_2"}
    assert inbound_message(other_visitor, "c_1", "hello").message_id != first.message_id
    other_application = {**VISITOR, "application_id": "app_2"}
    assert inbound_message(other_application, "c_1", "hello").message_id != first.message_id


def test_a_stored_message_is_shown_with_its_fields() -> None:
    document = {
        "_id": "bt_1", "conversation_id": "cv_1", "workspace_id": "ws_1", "role": "bot",
        "text": "hi there", "created_at": 1700000000.5, "request_id": "rq_1", "channel": "web",
    }  # fmt: skip
    assert message_view(document) == {
        "id": "bt_1",
        "conversation_id": "cv_1",
        "role": "bot",
        "text": "hi there",
        "created_at": 1700000000.5,
        "request_id": "rq_1",
    }


def test_a_stored_message_without_optional_fields_gets_defaults() -> None:
    assert message_view({"_id": "in_1", "conversation_id": "cv_1"}) == {
        "id": "in_1",
        "conversation_id": "cv_1",
        "role": "user",
        "text": "",
        "created_at": None,
        "request_id": "",
    }


def test_a_message_counts_against_its_visitor_application_and_workspace() -> None:
    settings = Settings(
        widget_messages_per_minute=3,
        application_messages_per_minute=40,
        workspace_messages_per_minute=90,
    )
    application = {"_id": "app_1", "workspace_id": "ws_1"}
    assert [(limit.key, limit.limit, limit.window_s) for limit in budgets(
        settings, VISITOR, application
    )] == [
        ("widget:rate:visitor:v_1", 3, 60),
        ("widget:rate:application:app_1", 40, 60),
        ("widget:rate:workspace:ws_1", 90, 60),
    ]  # fmt: skip
    own = {**application, "budget": {"messages_per_minute": 7, "tokens_per_day": None}}
    assert budgets(settings, VISITOR, own)[1].limit == 7
    unset = {**application, "budget": {"messages_per_minute": None, "tokens_per_day": 5}}
    assert budgets(settings, VISITOR, unset)[1].limit == 40


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("unknown", "unknown"),
    ],
)
def test_connects_count_per_ipv4_address_or_ipv6_64(address: str, bucket: str) -> None:
    assert address_bucket(address) == bucket
