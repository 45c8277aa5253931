"""Calling a tenant's HTTP tool: arguments checked, secrets opened only now, egress guarded.

The arguments are checked against the tool's schema off the event loop, with a time bound and
RE2 for its patterns (``core.ai.tool_schema``). The secret headers are named to the egress
client, which drops them (and every credential-like header) on a redirect to another origin.

GET and DELETE send the arguments as query parameters, the other methods as a JSON body. The
call carries ``Idempotency-Key: <call id>``, so an endpoint that honours it does nothing twice
when a crashed turn asks again. The model reads the status and the body (JSON when the tool
answers JSON), cut to a size a prompt can hold; it never sees a header or a secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from core import json_depth
from core.ai.tool_schema import ToolSchemas
from core.ai.tools import IDEMPOTENCY_KEY, TenantTool
from core.errors import SwitchboardError
from core.security.egress import EgressClient, EgressRefused
from core.security.secrets import SecretBox

#: The most of a tool's answer the model reads, in characters.
MAX_RESULT_CHARS = 8_000


class ToolFailed(SwitchboardError):
    """The tool could not be called, or did not answer with success; the model is told why."""


def _query(arguments: Mapping[str, Any]) -> dict[str, str]:
    return {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in arguments.items()
        if value is not None
    }


def _body(raw: bytes, content_type: str) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type:
        try:
            parsed = json_depth.loads(text)  # a tenant's answer: nesting bounded
        except ValueError:
            pass
        else:
            if len(json.dumps(parsed)) <= MAX_RESULT_CHARS:
                return parsed
    return text[:MAX_RESULT_CHARS]


async def call_http_tool(
    tool: TenantTool,
    arguments: Mapping[str, Any],
    call_id: str,
    egress: EgressClient,
    secrets: SecretBox,
    schemas: ToolSchemas,
) -> dict[str, Any]:
    """The tool's answer as ``{"status": ..., "body": ...}``; ToolFailed when there is none."""
    await schemas.check_arguments(tool.parameters, arguments)
    headers = {
        **tool.headers,
        **{name: secrets.open(sealed) for name, sealed in tool.secret_headers.items()},
    }
    headers = {n: v for n, v in headers.items() if n.lower() != IDEMPOTENCY_KEY.lower()}
    headers[IDEMPOTENCY_KEY] = call_id
    query = tool.method in ("GET", "DELETE")
    try:
        response = await egress.request(
            tool.method,
            tool.url,
            headers=headers,
            params=_query(arguments) if query else None,
            json=None if query else dict(arguments),
            secret_headers=tool.secret_headers.keys(),
        )
    except EgressRefused as refused:
        raise ToolFailed(f"the call was refused: {refused.message}") from refused
    except (aiohttp.ClientError, TimeoutError) as error:
        raise ToolFailed(f"the tool did not answer: {type(error).__name__}") from error
    content_type = next(
        (value for name, value in response.headers.items() if name.lower() == "content-type"), ""
    )
    body = _body(response.body, content_type)
    if not 200 <= response.status < 300:
        raise ToolFailed(
            f"the tool answered HTTP {response.status}",
            details={"status": response.status, "body": body},
        )
    return {"status": response.status, "body": body}
