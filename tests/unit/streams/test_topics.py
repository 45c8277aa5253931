from __future__ import annotations

from streams.topics import CONTRACT, DEAD_LETTERS, PARTITIONS, TOPICS


def test_contract_names_every_pipeline_topic() -> None:
    assert {spec.name for spec in CONTRACT} == {
        "messages.inbound",
        "agent.requests",
        "function.calls",
        "function.results",
        "messages.outbound",
        "platform.outbound",
        "conversation.commands",
        "conversation.events",
    }


def test_every_topic_is_keyed_by_conversation_id_and_has_a_dead_letter_twin() -> None:
    for spec in CONTRACT:
        topic = TOPICS[spec.name]
        assert topic.key_type is str
        assert topic.partitions == spec.partitions == PARTITIONS
        assert topic.internal
        assert DEAD_LETTERS[f"{spec.name}.dlq"].partitions == spec.partitions
