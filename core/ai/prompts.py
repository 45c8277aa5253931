"""The messages a model sees for one turn: the application's prompt, the chatbot's
instructions, then the conversation's recent turns.

Operators' messages are shown to the model as the assistant's own side of the conversation,
marked as written by a person, so the bot continues from what the human said without
pretending to have said it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.ai.llm import Message

DEFAULT_PROMPT = "You are a helpful assistant. Answer briefly and politely."
OPERATOR_NOTE = "(A human operator wrote this message.) "


def system_prompt(application: Mapping[str, Any], chatbot: Mapping[str, Any]) -> str:
    parts = [str(application.get("prompt") or DEFAULT_PROMPT).strip()]
    instructions = str(chatbot.get("instructions") or "").strip()
    if instructions:
        parts.append(instructions)
    return "\n\n".join(parts)


def turn_messages(
    application: Mapping[str, Any],
    chatbot: Mapping[str, Any],
    context: Sequence[Mapping[str, Any]],
    text: str,
    message_id: str,
) -> list[Message]:
    """The conversation as chat messages, ending with the user's message being answered."""
    messages: list[Message] = [{"role": "system", "content": system_prompt(application, chatbot)}]
    for turn in context:
        role, content = turn.get("role"), str(turn.get("text") or "")
        if role == "user":
            messages.append({"role": "user", "content": content})
        elif role == "bot":
            messages.append({"role": "assistant", "content": content})
        elif role == "operator":
            messages.append({"role": "assistant", "content": OPERATOR_NOTE + content})
    if not context or context[-1].get("message_id") != message_id:
        messages.append({"role": "user", "content": text})
    return messages
