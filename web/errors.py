"""One middleware turns every error into ``{"error": {"code": ..., "message": ...}}``.

A ``RecursionError`` answers 400 ``too_deeply_nested``, never 500: what nests deep enough to
exhaust the stack is a client's input (``web.validation`` refuses such bodies before parsing;
this covers any other path). A backing service that fails mid-request (Redis or MongoDB gone,
a connection refused or timed out) answers 503 ``dependency_unavailable``, as the stores' own
checks do: the client may retry, and nothing was half-done that a retry would repeat wrongly.
Request paths are logged escaped (``web.log_lines``).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from core.errors import DependencyUnavailable, SwitchboardError, TooManyRequests, Unauthorized
from web.log_lines import printable
from web.validation import TooDeeplyNested

log = logging.getLogger(__name__)


def error_response(
    status: int, code: str, message: str, *, details: object | None = None, **extra: Any
) -> web.Response:
    error: dict[str, object] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return web.json_response({"error": error, **extra}, status=status)


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _message_for(exc: web.HTTPException, request: web.Request) -> str:
    """The exception's own text, or a sentence naming the request when it has only the default."""
    default = f"{exc.status}: {exc.reason}"
    if exc.text and exc.text != default and exc.content_type == "text/plain":
        return exc.text
    if exc.status == 404:
        return f"No such resource: {request.method} {request.path}"
    if exc.status == 405:
        return f"Method {request.method} is not allowed on {request.path}"
    if exc.status == 413:
        return "Request body is too large"
    return exc.reason


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SwitchboardError as error:
        response = error_response(error.status, error.code, error.message, details=error.details)
        if isinstance(error, TooManyRequests):
            response.headers["Retry-After"] = str(error.retry_after_s)
        if isinstance(error, Unauthorized):
            response.headers["WWW-Authenticate"] = "Bearer"
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, _code_for(exc.status), _message_for(exc, request))
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
        return response
    except RecursionError:
        # No traceback: a thousand frames of one parser say nothing more than the line does.
        log.warning("nested too deeply to handle: %s", _request_line(request))
        refused = TooDeeplyNested("the request nests arrays or objects too deeply")
        return error_response(refused.status, refused.code, refused.message)
    except (RedisError, PyMongoError, ConnectionError, TimeoutError) as error:
        log.warning("a dependency failed on %s: %r", _request_line(request), error)
        unavailable = DependencyUnavailable("a backing service did not answer; retry shortly")
        response = error_response(unavailable.status, unavailable.code, unavailable.message)
        response.headers["Retry-After"] = "1"
        return response
    except Exception:
        log.exception("unhandled error on %s", _request_line(request))
        return error_response(500, "internal_error", "Internal error; it has been logged.")


def _request_line(request: web.Request) -> str:
    """Method and path for a log line, escaped: the path is the client's text."""
    return printable(f"{request.method} {request.path}")
