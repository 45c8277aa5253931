from __future__ import annotations

from streams.contract import CONTRACT, PARTITIONS
from streams.topics import DEAD_LETTERS, TOPICS


def test_every_contract_topic_is_built_with_its_dead_letter_twin_and_nothing_else() -> None:
    assert set(TOPICS) == {spec.name for spec in CONTRACT}
    assert set(DEAD_LETTERS) == {spec.dead_letter for spec in CONTRACT}


def test_every_topic_is_keyed_by_conversation_id_and_has_a_dead_letter_twin() -> None:
    for spec in CONTRACT:
        topic = TOPICS[spec.name]
        assert topic.key_type is str
        assert topic.partitions == spec.partitions == PARTITIONS
        assert topic.internal
        assert DEAD_LETTERS[spec.dead_letter].partitions == spec.partitions
