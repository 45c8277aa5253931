"""Deeply nested JSON from outside the platform, where the worker reads it: a model's tool-call
arguments and a tenant tool's answer. Python's parser recurses per level, so unbounded these
raise RecursionError, which no stage catches as a bad input; bounded, they are malformed JSON
like any other (the model is told, or the answer is kept as text)."""

from __future__ import annotations

import pytest

from core.ai.http_tools import MAX_RESULT_CHARS, _body
from core.ai.llm import ToolCall

DEEP = "[" * 100_000


def test_a_models_deeply_nested_arguments_are_refused_as_malformed() -> None:
    call = ToolCall(id="call_1", name="lookup_order", arguments=DEEP)
    with pytest.raises(ValueError, match="not JSON"):
        call.parsed_arguments()


def test_a_tools_deeply_nested_answer_is_kept_as_text() -> None:
    answer = DEEP.encode()
    assert _body(answer, "application/json") == DEEP[:MAX_RESULT_CHARS]
