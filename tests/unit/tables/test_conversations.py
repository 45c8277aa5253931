from __future__ import annotations

from streams.contract import CHANGELOGS, PARTITIONS
from tables.conversations import CONTEXT_WINDOW, RECENT_IDS, ConversationState, conversation_state


def _state() -> ConversationState:
    return ConversationState(
        conversation_id="c1", workspace_id="w1", application_id="a1", channel="web"
    )


def test_remembers_a_bounded_number_of_applied_ids() -> None:
    state = _state()
    for n in range(RECENT_IDS + 5):
        state.remember(f"m{n}", seq=n)
    assert not state.seen("m0")
    assert state.seen(f"m{RECENT_IDS + 4}")
    assert state.seq_of(f"m{RECENT_IDS + 4}") == RECENT_IDS + 4
    assert len(state.applied or {}) == RECENT_IDS


def test_context_window_is_bounded() -> None:
    state = _state()
    for n in range(CONTEXT_WINDOW + 3):
        state.add_turn("user", f"t{n}", f"m{n}")
    assert len(state.context or []) == CONTEXT_WINDOW
    assert (state.context or [])[-1]["text"] == f"t{CONTEXT_WINDOW + 2}"


def test_the_changelog_is_declared_in_the_contract_with_compaction() -> None:
    declared = {spec.name: spec for spec in CHANGELOGS}
    name = conversation_state.changelog_topic.get_topic_name()
    assert declared[name].configs["cleanup.policy"] == "compact"
    assert declared[name].partitions == PARTITIONS
