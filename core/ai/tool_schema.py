"""A tenant tool's JSON schema: checked when saved and at every call, its patterns run on RE2.

A schema's ``pattern`` and ``patternProperties`` are the tenant's regular expressions, and
jsonschema runs them with Python's ``re``, which backtracks: ``^(a+)+$`` against 24 a's and a
'!' takes about a second, four times more per two a's. Here they run on RE2, whose matching
time is linear in the input, through jsonschema's keyword extension API (``pattern``,
``patternProperties``, and ``additionalProperties``, which matches those patterns too); a
pattern RE2 cannot run (backreferences, lookaround) is refused, as are schemas over the size,
depth and pattern-length caps. References stay inside the schema: jsonschema would otherwise
fetch a remote ``$ref`` with urllib, past the egress guard. ``unevaluatedProperties`` is refused
beside ``patternProperties``: jsonschema evaluates that pair with ``re`` and has no keyword
hook for it.

Every call checks its stored schema again (a tool saved before these rules meets them at its
next call) and its arguments in a thread with a time bound (``check_arguments``): a schema slow
for any other reason fails its own call, and the model is told, while the worker goes on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, cast

import re2
from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable

from core.errors import ValidationFailed
from core.settings import Settings

#: Compile options for tenant patterns: errors are reported to the tenant, not to stderr.
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
#: A registry that retrieves nothing: a reference outside the schema is unresolvable.
_NO_REMOTE: Registry[Any] = Registry()


class PatternRefused(ValidationFailed):
    """A tenant pattern that RE2 cannot run, or one over the length cap."""


@dataclass(frozen=True)
class SchemaLimits:
    max_bytes: int = 32 * 1024  # the schema as compact JSON
    max_depth: int = 32  # nesting of JSON objects and arrays
    max_pattern_chars: int = 512
    timeout_s: float = 2.0  # checking one call's arguments

    @classmethod
    def from_settings(cls, settings: Settings) -> SchemaLimits:
        return cls(
            max_bytes=settings.tool_max_schema_bytes,
            max_depth=settings.tool_max_schema_depth,
            max_pattern_chars=settings.tool_max_pattern_chars,
            timeout_s=settings.tool_validation_timeout_s,
        )


@cache
def tool_schemas(limits: SchemaLimits) -> ToolSchemas:
    """One checker per set of limits: each builds a validator class."""
    return ToolSchemas(limits)


class ToolSchemas:
    """Checks tenant schemas and validates arguments against them, with RE2 for patterns."""

    def __init__(self, limits: SchemaLimits) -> None:
        self.limits = limits
        self._compiled = lru_cache(maxsize=1024)(self._compile)
        self._formats = FormatChecker(formats=())
        self._formats.checks("regex", raises=PatternRefused)(self._is_regex)
        extend = cast(Callable[..., Any], validators.extend)  # jsonschema leaves it untyped
        self._validator = extend(
            Draft202012Validator,
            {
                "pattern": self._pattern,
                "patternProperties": self._pattern_properties,
                "additionalProperties": self._additional_properties,
            },
            format_checker=self._formats,
        )

    def check(self, schema: object) -> None:
        """Refuse a schema that is not a JSON schema of an object within the limits, naming
        the place in ``details`` (``parameters.<path>``)."""
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise ValidationFailed("a tool's parameters must be a JSON schema of type object")
        try:
            size = len(json.dumps(schema, separators=(",", ":")).encode())
        except (TypeError, ValueError) as error:
            raise ValidationFailed("a tool's parameters must be JSON") from error
        if size > self.limits.max_bytes:
            raise _refused(f"the schema is {size} bytes, over {self.limits.max_bytes}", [])
        _check_structure(schema, self.limits.max_depth)
        try:
            self._validator.check_schema(schema, format_checker=self._formats)
        except SchemaError as error:
            message, path = error.message, list(error.path)
            if isinstance(error.cause, PatternRefused):
                message = error.cause.message
                if path[-1:] != ["pattern"]:
                    path.append(str(error.instance))  # a patternProperties key
            raise _refused(
                f"the tool's parameters are not a valid JSON schema: {message}", path, message
            ) from error

    def validate(self, schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> None:
        """Refuse arguments that do not fit, saying where and why (the schema checked first)."""
        self.check(schema)
        validator = self._validator(dict(schema), registry=_NO_REMOTE)
        try:
            errors = list(validator.iter_errors(dict(arguments)))
        except Unresolvable as error:
            raise ValidationFailed(f"the tool's schema refers to what it lacks: {error}") from error
        except RecursionError as error:
            raise ValidationFailed("the tool's schema refers to itself without end") from error
        if errors:
            details = [
                {"field": "/".join(str(p) for p in e.path) or "(arguments)", "message": e.message}
                for e in sorted(errors, key=lambda e: [str(p) for p in e.path])
            ]
            raise ValidationFailed("the arguments do not fit the tool's schema", details=details)

    async def check_arguments(
        self, schema: Mapping[str, Any], arguments: Mapping[str, Any]
    ) -> None:
        """``validate`` off the event loop, within ``timeout_s``; a timeout fails the call."""
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                await asyncio.to_thread(self.validate, schema, arguments)
        except TimeoutError as error:
            raise ValidationFailed(
                "the arguments could not be checked against the tool's schema within "
                f"{self.limits.timeout_s:g} s"
            ) from error

    def _compile(self, pattern: str) -> re2._Regexp[str]:
        if len(pattern) > self.limits.max_pattern_chars:
            raise PatternRefused(
                f"a pattern is at most {self.limits.max_pattern_chars} characters, "
                f"not {len(pattern)}"
            )
        try:
            return re2.compile(pattern, _OPTIONS)
        except re2.error as error:
            reason = error.args[0] if error.args else "invalid"
            if isinstance(reason, bytes):
                reason = reason.decode(errors="replace")
            raise PatternRefused(
                f"the pattern {pattern!r} is refused: {reason} (patterns run on RE2, which has "
                "no backreferences or lookaround)"
            ) from error

    def _is_regex(self, instance: object) -> bool:
        if isinstance(instance, str):
            self._compiled(instance)
        return True

    def _search(self, pattern: object, text: str) -> bool:
        if not isinstance(pattern, str):
            raise PatternRefused(f"the pattern {pattern!r} is not a string")
        return self._compiled(pattern).search(text) is not None

    def _pattern(
        self, validator: Any, pattern: object, instance: Any, schema: object
    ) -> Iterator[ValidationError]:
        if not validator.is_type(instance, "string"):
            return
        assert isinstance(instance, str)
        try:
            found = self._search(pattern, instance)
        except PatternRefused as refused:
            yield ValidationError(refused.message)
            return
        if not found:
            yield ValidationError(f"{instance!r} does not match {pattern!r}")

    def _pattern_properties(
        self, validator: Any, patterns: Mapping[str, Any], instance: Any, schema: object
    ) -> Iterator[ValidationError]:
        if not validator.is_type(instance, "object"):
            return
        assert isinstance(instance, Mapping)
        for pattern, subschema in patterns.items():
            for key, value in instance.items():
                try:
                    found = self._search(pattern, key)
                except PatternRefused as refused:
                    yield ValidationError(refused.message)
                    return
                if found:
                    yield from validator.descend(value, subschema, path=key, schema_path=pattern)

    def _additional_properties(
        self, validator: Any, allowed: Any, instance: Any, schema: Mapping[str, Any]
    ) -> Iterator[ValidationError]:
        """jsonschema's own ``additionalProperties``, matching ``patternProperties`` on RE2."""
        if not validator.is_type(instance, "object"):
            return
        assert isinstance(instance, Mapping)
        properties = schema.get("properties") or {}
        patterns = list(schema.get("patternProperties") or {})
        try:
            extras = {
                key
                for key in instance
                if key not in properties and not any(self._search(p, key) for p in patterns)
            }
        except PatternRefused as refused:
            yield ValidationError(refused.message)
            return
        if validator.is_type(allowed, "object"):
            for extra in extras:
                yield from validator.descend(instance[extra], allowed, path=extra)
        elif not allowed and extras:
            joined = ", ".join(repr(each) for each in sorted(extras, key=str))
            if patterns:
                verb = "does" if len(extras) == 1 else "do"
                regexes = ", ".join(repr(each) for each in sorted(patterns))
                yield ValidationError(f"{joined} {verb} not match any of the regexes: {regexes}")
            else:
                verb = "was" if len(extras) == 1 else "were"
                yield ValidationError(
                    f"Additional properties are not allowed ({joined} {verb} unexpected)"
                )


def _refused(message: str, path: Any, detail: str | None = None) -> ValidationFailed:
    field = ".".join(["parameters", *(str(p) for p in path)])
    return ValidationFailed(message, details=[{"field": field, "message": detail or message}])


def _check_structure(schema: Mapping[str, Any], max_depth: int) -> None:
    """Depth, references that stay inside the schema, and no ``unevaluatedProperties`` beside
    ``patternProperties``; walked without recursion."""
    stack: list[tuple[object, tuple[str, ...]]] = [(schema, ())]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict | list) and len(path) >= max_depth:
            raise _refused(f"the schema nests deeper than {max_depth} levels", path)
        if isinstance(node, dict):
            for key, value in node.items():
                outward = isinstance(value, str) and not value.startswith("#")
                if key in ("$ref", "$dynamicRef") and outward:
                    raise _refused(
                        f"a reference must stay inside the schema ('#...'), not {value!r}",
                        (*path, key),
                    )
                seen.add(key)
                stack.append((value, (*path, str(key))))
        elif isinstance(node, list):
            stack.extend((value, (*path, str(n))) for n, value in enumerate(node))
    if {"patternProperties", "unevaluatedProperties"} <= seen:
        raise _refused("unevaluatedProperties may not be used with patternProperties", [])
