from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

from core.ai.tool_schema import SchemaLimits, ToolSchemas
from core.errors import ValidationFailed

SCHEMAS = ToolSchemas(SchemaLimits())
NESTED_GROUPS = "^(a+)+$"  # exponential on a backtracking engine


def _string(**keywords: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"code": {"type": "string", **keywords}}}


def _refusal(schema: object, schemas: ToolSchemas = SCHEMAS) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as raised:
        schemas.check(schema)
    details = raised.value.details
    assert isinstance(details, list)
    (detail,) = details
    assert isinstance(detail, dict)
    return detail


def test_a_nested_group_pattern_gives_its_verdict_on_re2() -> None:
    schema = _string(pattern=NESTED_GROUPS)
    SCHEMAS.check(schema)
    SCHEMAS.validate(schema, {"code": "a" * 30})
    with pytest.raises(ValidationFailed) as raised:
        SCHEMAS.validate(schema, {"code": "a" * 100_000 + "!"})
    assert raised.value.details == [
        {"field": "code", "message": f"'{'a' * 100_000}!' does not match '{NESTED_GROUPS}'"}
    ]


def test_pattern_properties_and_additional_properties_match_on_re2() -> None:
    schema = {
        "type": "object",
        "patternProperties": {NESTED_GROUPS: {"type": "integer"}},
        "additionalProperties": False,
    }
    SCHEMAS.validate(schema, {"aaa": 1})
    with pytest.raises(ValidationFailed) as raised:
        SCHEMAS.validate(schema, {"a" * 60 + "!": 1, "aa": "two"})
    details = raised.value.details
    assert isinstance(details, list)
    messages = {d["field"]: d["message"] for d in details}
    assert messages["aa"] == "'two' is not of type 'integer'"
    assert "does not match any of the regexes" in messages["(arguments)"]


def test_additional_properties_without_patterns_still_refuses_extras() -> None:
    schema = {"type": "object", "properties": {"a": {}}, "additionalProperties": False}
    with pytest.raises(ValidationFailed, match="do not fit"):
        SCHEMAS.validate(schema, {"a": 1, "b": 2})


@pytest.mark.parametrize(
    ("schema", "field", "says"),
    [
        (_string(pattern="(a)\\1"), "parameters.properties.code.pattern", "escape"),
        (_string(pattern="(?=a)a"), "parameters.properties.code.pattern", "perl operator"),
        (_string(pattern="(?<!a)b"), "parameters.properties.code.pattern", "perl operator"),
        (
            {"type": "object", "patternProperties": {"(x)\\1": {}}},
            "parameters.patternProperties.(x)\\1",
            "RE2",
        ),
        (_string(pattern="a" * 513), "parameters.properties.code.pattern", "at most 512"),
        (_string(pattern="(unclosed"), "parameters.properties.code.pattern", "missing )"),
    ],
)
def test_patterns_re2_cannot_run_are_refused_naming_the_field(
    schema: dict[str, Any], field: str, says: str
) -> None:
    detail = _refusal(schema)
    assert detail["field"] == field
    assert says in detail["message"]


def test_size_and_depth_are_capped() -> None:
    limits = SchemaLimits(max_bytes=1024, max_depth=6)
    small = ToolSchemas(limits)
    assert _refusal({"type": "object", "description": "x" * 1024}, small) == {
        "field": "parameters",
        "message": "the schema is 1058 bytes, over 1024",
    }
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(3):
        deep = {"type": "object", "properties": {"p": deep}}
    assert "deeper than 6" in _refusal(deep, small)["message"]
    small.check({"type": "object", "properties": {"p": {"type": "object", "properties": {}}}})


def test_references_stay_inside_the_schema() -> None:
    remote = {"type": "object", "properties": {"a": {"$ref": "http://169.254.169.254/x"}}}
    assert _refusal(remote)["field"] == "parameters.properties.a.$ref"
    local = {
        "type": "object",
        "$defs": {"id": {"type": "integer"}},
        "properties": {"a": {"$ref": "#/$defs/id"}},
    }
    SCHEMAS.validate(local, {"a": 1})
    with pytest.raises(ValidationFailed, match="do not fit"):
        SCHEMAS.validate(local, {"a": "one"})


def test_unevaluated_properties_beside_pattern_properties_is_refused() -> None:
    schema = {"type": "object", "patternProperties": {"^x": {}}, "unevaluatedProperties": False}
    assert "unevaluatedProperties" in _refusal(schema)["message"]
    SCHEMAS.validate({"type": "object", "unevaluatedProperties": False}, {})


def test_a_pattern_smuggled_past_the_metaschema_is_still_run_on_re2_only() -> None:
    # A stored schema can point a $ref at a place the metaschema does not read as a schema.
    schema = {
        "type": "object",
        "x-hidden": {"type": "string", "pattern": "(a)\\1"},
        "properties": {"p": {"$ref": "#/x-hidden"}},
    }
    with pytest.raises(ValidationFailed) as raised:
        SCHEMAS.validate(schema, {"p": "aa"})
    details = raised.value.details
    assert isinstance(details, list)
    assert [d["field"] for d in details] == ["p"]
    assert "RE2" in details[0]["message"]


def test_a_schema_that_refers_to_itself_without_end_fails_the_call() -> None:
    with pytest.raises(ValidationFailed, match="without end"):
        SCHEMAS.validate({"type": "object", "allOf": [{"$ref": "#"}]}, {})


class _Stuck(ToolSchemas):
    """A schema check that never ends on its own."""

    release = threading.Event()

    def validate(self, schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> None:
        self.release.wait(30)


async def test_a_check_that_runs_out_of_time_fails_the_call() -> None:
    stuck = _Stuck(SchemaLimits(timeout_s=0.05))
    try:
        with pytest.raises(ValidationFailed, match=r"within 0\.05 s"):
            await stuck.check_arguments({"type": "object"}, {})
    finally:
        _Stuck.release.set()


async def test_arguments_are_checked_off_the_event_loop() -> None:
    seen: list[str] = []

    class Recording(ToolSchemas):
        def validate(self, schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> None:
            seen.append(threading.current_thread().name)
            super().validate(schema, arguments)

    await Recording(SchemaLimits()).check_arguments(_string(pattern="^a"), {"code": "ab"})
    (thread,) = seen
    assert thread != threading.main_thread().name
