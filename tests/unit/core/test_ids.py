from __future__ import annotations

from core import ids


def test_ids_are_deterministic_and_distinct() -> None:
    a = ids.conversation_id("telegram", "ch1", "42")
    assert a == ids.conversation_id("telegram", "ch1", "42")
    assert a != ids.conversation_id("telegram", "ch2", "42")
    assert a != ids.conversation_id("slack", "ch1", "42")
    # parts are separated, so shifting characters between them changes the id
    assert ids.conversation_id("ab", "c", "d") != ids.conversation_id("a", "bc", "d")
    message = ids.inbound_message_id("telegram", "ch1", "42", "7")
    assert message == ids.inbound_message_id("telegram", "ch1", "42", "7")
    assert ids.answer_id(ids.request_id(message)) == ids.answer_id(ids.request_id(message))
    assert ids.new_id("cmd") != ids.new_id("cmd")
