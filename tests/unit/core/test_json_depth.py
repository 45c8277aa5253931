"""The depth count agrees with the parser on valid JSON, and never says less than the parser
would reach on a truncated document; loads refuses too deep before parsing."""

from __future__ import annotations

import json
import random

import pytest

from core.json_depth import MAX_DEPTH, NestingTooDeep, check_depth, loads, nesting_depth


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


# Strings a naive count would take for brackets or for the end of a string.
TRICKY = ["[", "]]", "{[", '"', "\\", '\\"[', "\\\\", 'a\\\\"', "\u2028", "é[ü", "\\u005b", ""]


def _document(rng: random.Random, depth: int) -> object:
    if depth == 0 or rng.random() < 0.2:
        return rng.choice([*TRICKY, 1, 2.5, None, True])
    if rng.random() < 0.5:
        return [_document(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {
        rng.choice(TRICKY) + str(i): _document(rng, depth - 1) for i in range(rng.randint(0, 3))
    }


@pytest.mark.parametrize("seed", range(200))
def test_depth_of_valid_json_is_exact(seed: int) -> None:
    rng = random.Random(seed)
    value = _document(rng, rng.randint(0, 12))
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        assert nesting_depth(text) == _depth(value)
        assert nesting_depth(text.encode()) == _depth(value)


def _as_a_parser_reads(text: str) -> int:
    """The depth a parser reaches reading ``text`` as far as it goes, one character at a time."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


@pytest.mark.parametrize("seed", range(100))
def test_a_truncated_document_counts_as_far_as_a_parser_reads(seed: int) -> None:
    rng = random.Random(seed)
    text = json.dumps(_document(rng, 10), ensure_ascii=rng.random() < 0.5)
    for end in sorted(rng.sample(range(len(text) + 1), min(20, len(text) + 1))):
        assert nesting_depth(text[:end]) == _as_a_parser_reads(text[:end])


def test_brackets_in_strings_do_not_count() -> None:
    assert nesting_depth('["[[[[", {"a": "}}}\\"[[["}]') == 2
    assert nesting_depth('"\\\\"[[') == 2  # an escaped backslash, then the string ends
    assert nesting_depth('"[[[') == 0  # a string left open: a parser stops there


def test_loads_refuses_past_the_limit_before_parsing() -> None:
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert _depth(loads(at_limit)) == MAX_DEPTH
    for attack in ("[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"a":' * 1000 + "1" + "}" * 1000):
        with pytest.raises(NestingTooDeep):
            loads(attack)
        with pytest.raises(NestingTooDeep):
            loads(attack.encode())
    with pytest.raises(ValueError, match="nests deeper than 3"):
        check_depth("[[[[1]]]]", 3)


def test_loads_counts_on_the_text_the_parser_reads() -> None:
    # In UTF-16, U+225B is the bytes 5B 22 ('[' and '"'): counted on bytes, it would hide the
    # brackets that follow inside a string that is not there.
    text = '["\u225b"' + ",[" * 100 + "]" * 100 + "]"
    for encoding in ("utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"):
        with pytest.raises(NestingTooDeep):
            loads(text.encode(encoding))
    assert loads(json.dumps({"a": ["é"]}).encode("utf-16")) == {"a": ["é"]}


def test_loads_is_json_loads_otherwise() -> None:
    assert loads(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    assert loads(bytearray(b"[]")) == []
    with pytest.raises(json.JSONDecodeError):
        loads("{")


def test_the_start_and_the_whole_are_both_counted() -> None:
    with pytest.raises(NestingTooDeep):
        check_depth(" " * 20_000 + "[" * 100)  # deep only past the start
    # Brackets in a string across the end of the start are text, there and in the whole.
    check_depth(json.dumps(["[" * 20_000, {"a": "{" * 20_000}]))
    check_depth(json.dumps(["[" * 20_000, {"a": "{" * 20_000}]).encode())
