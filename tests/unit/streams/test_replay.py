from __future__ import annotations

from streams.contract import SANDBOX_CHANNEL
from streams.records import InboundMessage
from streams.replay import sandboxed


def test_a_sandboxed_copy_is_a_new_conversation_that_repeats_itself() -> None:
    original = InboundMessage(
        message_id="in_1",
        conversation_id="cv_1",
        workspace_id="ws_1",
        application_id="app_1",
        channel="telegram",
        channel_id="ch_1",
        chat_id="42",
        text="hello",
    )
    copy = sandboxed(original, "prompt-v2")
    assert copy.channel == SANDBOX_CHANNEL
    assert copy.conversation_id != original.conversation_id
    assert copy.message_id.startswith("sbx_")
    assert (copy.workspace_id, copy.application_id, copy.text) == ("ws_1", "app_1", "hello")
    assert copy.external_id == "in_1"
    again = sandboxed(original, "prompt-v2")
    assert (again.message_id, again.conversation_id) == (copy.message_id, copy.conversation_id)
    other = sandboxed(original, "prompt-v3")
    assert other.conversation_id != copy.conversation_id
    assert other.message_id != copy.message_id
