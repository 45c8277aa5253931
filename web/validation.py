"""Request bodies and queries read into pydantic models, or refused with per-field details.

A body that is not JSON answers 400 ``malformed_json``, one nested deeper than
``core.json_depth.MAX_DEPTH`` 400 ``too_deeply_nested`` (counted before parsing: the parser would
exhaust the stack); one that does not fit the model answers 422 ``validation_failed`` with
``details: [{"field": "a.b", "message": "..."}]``. Nothing is changed by a refused request:
handlers parse before they touch a store.
"""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from core import json_depth
from core.errors import SwitchboardError, ValidationFailed

M = TypeVar("M", bound=BaseModel)


class StrictBody(BaseModel):
    """A request body: unknown fields are refused and no type is coerced ("1" is not 1), so a
    client cannot slip in a field the handler does not expect."""

    model_config = ConfigDict(extra="forbid", strict=True)


def not_null(value: object) -> object:
    """For PATCH fields that may be left out but not cleared (an ``AfterValidator``)."""
    if value is None:
        raise ValueError("may not be null")
    return value


class MalformedJSON(SwitchboardError):
    status = 400
    code = "malformed_json"


class TooDeeplyNested(SwitchboardError):
    status = 400
    code = "too_deeply_nested"


def field_errors(error: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(part) for part in e["loc"]) or "(body)", "message": e["msg"]}
        for e in error.errors(include_url=False)
    ]


async def parse_body(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    try:
        data: Any = json_depth.loads(raw) if raw else None
    except (json_depth.NestingTooDeep, RecursionError) as error:
        raise TooDeeplyNested(
            f"the body nests arrays and objects deeper than {json_depth.MAX_DEPTH}"
        ) from error
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedJSON(f"the body is not JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValidationFailed(
            "the body must be a JSON object",
            details=[{"field": "(body)", "message": "not an object"}],
        )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ValidationFailed("the body does not fit", details=field_errors(error)) from error


def parse_query(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as error:
        raise ValidationFailed("the query does not fit", details=field_errors(error)) from error
