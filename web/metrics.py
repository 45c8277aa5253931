"""Prometheus metrics per service, each app with its own registry (no process-global state).

Labels hold nothing a client chose freely: the route is the matched resource's pattern (or
``unmatched``, never the path), the method one the API uses (or ``other``, for the WebDAV and
other methods aiohttp's parser also takes), so a client can neither write its text into the
exposition nor add label values.
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from web.keys import METRICS_REGISTRY, SERVICE_NAME

_REQUESTS = web.AppKey("metric_requests", Counter)
_LATENCY = web.AppKey("metric_latency", Histogram)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def install_metrics(app: web.Application) -> None:
    """Create the registry and the HTTP metrics and add /metrics (see ``metrics_middleware``)."""
    registry = CollectorRegistry()
    app[METRICS_REGISTRY] = registry
    app[_REQUESTS] = Counter(
        "switchboard_http_requests_total",
        "HTTP requests answered, by route and status.",
        ["service", "method", "route", "status"],
        registry=registry,
    )
    app[_LATENCY] = Histogram(
        "switchboard_http_request_duration_seconds",
        "Time to answer an HTTP request, by route.",
        ["service", "route"],
        registry=registry,
    )
    app.router.add_get("/metrics", _metrics)


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _method_label(request: web.Request) -> str:
    return request.method if request.method in _METHODS else "other"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        app = request.app
        route = _route_label(request)
        service = app[SERVICE_NAME]
        app[_REQUESTS].labels(service, _method_label(request), route, str(status)).inc()
        app[_LATENCY].labels(service, route).observe(time.perf_counter() - started)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
