from __future__ import annotations

from core.ai.prompts import DEFAULT_PROMPT, OPERATOR_NOTE, system_prompt, turn_messages


def test_the_system_prompt_joins_application_and_chatbot() -> None:
    assert system_prompt({}, {}) == DEFAULT_PROMPT
    assert system_prompt({"prompt": "You sell shoes."}, {"instructions": "Be brief."}) == (
        "You sell shoes.\n\nBe brief."
    )


def test_turns_become_chat_messages_ending_with_the_question() -> None:
    context = [
        {"role": "user", "text": "hi", "message_id": "m1"},
        {"role": "bot", "text": "hello!", "message_id": "b1"},
        {"role": "operator", "text": "I am Ana.", "message_id": "o1"},
        {"role": "user", "text": "size 42?", "message_id": "m2"},
    ]
    messages = turn_messages({"prompt": "Shoes."}, {}, context, "size 42?", "m2")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "assistant", "user"]
    assert messages[3]["content"] == OPERATOR_NOTE + "I am Ana."
    assert messages[-1]["content"] == "size 42?"


def test_the_question_is_added_when_the_context_lacks_it() -> None:
    messages = turn_messages({}, {}, [], "hello?", "m1")
    assert messages[-1] == {"role": "user", "content": "hello?"}
