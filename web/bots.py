"""The bots service: connecting messaging channels to applications, rotating their credentials,
disconnecting them, and showing their health.

Every operator of the workspace may read channels; owners and admins change them. Credentials
are checked with the platform before anything is stored (Telegram: getMe, then setWebhook with
a fresh secret), so a refused or unreachable platform leaves nothing behind. Credentials and
webhook secrets are stored sealed and never shown; an API channel's signing secret is shown
once, in the answer that made it. Changes to one bot's platform side are serialized (a Redis
lock), since two setWebhook calls racing would leave the platform with one secret and the store
with the other. Every change invalidates the pipeline's cached view of the channel
(``core.cached.channel_directory``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError
from redis.asyncio import Redis

from core import ids
from core.cached.channel_directory import ChannelDirectory
from core.channels.base import (
    ChannelAdapter,
    ConnectedAccount,
    Credentials,
    CredentialsRefused,
    SendFailed,
)
from core.channels.registry import CREDENTIALS, UnknownChannelType, channel_registry
from core.clients.database import Document, database
from core.errors import Conflict, DependencyUnavailable, SwitchboardError, ValidationFailed
from core.security.secrets import SecretBox
from core.security.tokens import TokenService
from core.settings import Settings
from core.stores.application_store import ApplicationStore
from core.stores.channel_status import ChannelStatus
from core.stores.channel_store import (
    ACTIVE,
    DISCONNECTED,
    ChannelStore,
    account_of,
    seal_credentials,
)
from web.auth import TOKENS, Principal, principal
from web.health import Dependency
from web.keys import CHANNEL_REGISTRY, MONGO, REDIS, SETTINGS
from web.openapi import Operation
from web.service import request_db, secret_box, service_app
from web.validation import StrictBody, field_errors, parse_body, parse_query

log = logging.getLogger(__name__)

DEPENDENCIES = (Dependency.MONGODB, Dependency.REDIS)
#: Longer than any connect can take (two platform calls of at most 15 s each), so a lock is
#: never lost mid-change, and short enough that a crashed request blocks a bot only briefly.
LOCK_TTL_S = 120

Id = Field(min_length=1, max_length=100)


class PlatformRefused(ValidationFailed):
    """The platform refused to set the channel up (e.g. the webhook URL), for good."""

    code = "platform_refused"


class ChannelConnect(StrictBody):
    """A channel to connect: ``credentials`` are the type's (``core.channels.registry``)."""

    type: str = Field(min_length=1, max_length=40)
    application_id: str = Id
    name: str | None = Field(default=None, min_length=1, max_length=200)
    credentials: dict[str, Any]


class CredentialsRotation(RootModel[dict[str, Any]]):
    """New credentials, the fields the channel's type takes on connect."""


class ChannelQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    application_id: str | None = Field(default=None, min_length=1, max_length=100)


def _view(document: Document) -> Document:
    """What operators see of a channel: never its credentials or secrets."""
    return {
        "id": document["_id"],
        "type": document["type"],
        "application_id": document["application_id"],
        "name": document.get("name", ""),
        "status": document.get("status"),
        "platform_id": document.get("platform_id") or None,
        "config": dict(document.get("config") or {}),
        "webhook_url": document.get("webhook_url"),
        "created_at": document.get("created_at"),
        "updated_at": document.get("updated_at"),
        "disconnected_at": document.get("disconnected_at"),
    }


def _store(request: web.Request) -> ChannelStore:
    return ChannelStore(request_db(request))


def _adapter(request: web.Request, channel_type: str) -> ChannelAdapter:
    return request.app[CHANNEL_REGISTRY].adapter(channel_type)


async def _invalidate(request: web.Request, channel_id: str) -> None:
    await ChannelDirectory(request_db(request), request.app[REDIS]).invalidate(channel_id)


def _webhook_url(settings: Settings, adapter: ChannelAdapter, channel_id: str) -> str:
    """Where the platform calls in, for a type it calls (empty for one it does not)."""
    if not adapter.inbound_webhook:
        return ""
    return f"{settings.public_base_url}/webhooks/{adapter.type}/{channel_id}"


def _credentials(adapter: ChannelAdapter, given: Mapping[str, Any], where: str) -> Credentials:
    """``given`` read as the type's credentials, or refused (422) field by field."""
    try:
        return adapter.credentials_model.model_validate(given)
    except ValidationError as error:
        details = [{**d, "field": f"{where}{d['field']}"} for d in field_errors(error)]
        raise ValidationFailed("the credentials do not fit", details=details) from error


@asynccontextmanager
async def _exclusive(redis: Redis, channel_type: str, subject: str) -> AsyncIterator[None]:
    """One change at a time to one bot (a Telegram bot id) or one application's API channel."""
    key = f"channel:changing:{channel_type}:{subject}"
    if not await redis.set(key, "1", nx=True, ex=LOCK_TTL_S):
        raise Conflict("this channel is being changed by another request; retry shortly")
    try:
        yield
    finally:
        await redis.delete(key)


async def _platform_connect(
    adapter: ChannelAdapter, credentials: Mapping[str, str], webhook_url: str, secret: str
) -> ConnectedAccount:
    """``adapter.connect``, a platform's refusal a 422 and its silence a 503."""
    try:
        return await adapter.connect(credentials, webhook_url, secret)
    except SendFailed as failed:
        if failed.permanent:
            raise PlatformRefused(f"the platform refused the set-up: {failed.reason}") from None
        raise DependencyUnavailable(
            f"the platform did not answer; nothing was saved ({failed.reason})"
        ) from None


async def _refuse_duplicate(
    store: ChannelStore, workspace_id: str, channel_type: str, platform_id: str
) -> None:
    for channel in await store.of_workspace(workspace_id):
        if (
            channel.get("type") == channel_type
            and channel.get("platform_id") == platform_id
            and channel.get("status") == ACTIVE
        ):
            raise Conflict(f"this bot is already connected as channel {channel['_id']}")


def _new_channel(
    caller: Principal,
    body: ChannelConnect,
    channel_id: str,
    connected: ConnectedAccount,
    credentials: Credentials,
    box: SecretBox,
    *,
    secret: str,
    webhook_url: str,
) -> Document:
    return {
        "_id": channel_id,
        "workspace_id": caller.workspace_id,
        "application_id": body.application_id,
        "type": body.type,
        "status": ACTIVE,
        "name": body.name or connected.name,
        "platform_id": connected.platform_id,
        "config": dict(connected.config),
        "webhook_url": webhook_url or None,
        "credentials": seal_credentials(box, credentials.model_dump()),
        "webhook_secret": box.seal(secret),
        "disconnected_at": None,
    }


async def _connect(
    request: web.Request,
    caller: Principal,
    body: ChannelConnect,
    adapter: ChannelAdapter,
    credentials: Credentials,
) -> tuple[Document, str]:
    """The channel, set up with the platform and stored, and its new webhook secret.

    A type with one channel per application takes the application's id; another gets a new
    id, and is refused when its platform account (known from the credentials where it can be,
    else from the platform's answer) is connected already in the workspace.
    """
    store = _store(request)
    given = credentials.model_dump()
    account = adapter.account_id(given)
    subject = body.application_id if adapter.one_per_application else account
    async with _exclusive(request.app[REDIS], adapter.type, subject or ids.new_id("any")):
        if adapter.one_per_application:
            existing = await store.by_id(body.application_id)
            if existing is not None and existing.get("status") == ACTIVE:
                raise Conflict(
                    f"the application's {adapter.type} channel is connected: rotate or "
                    "disconnect it"
                )
            channel_id = body.application_id
        else:
            if account:
                await _refuse_duplicate(store, caller.workspace_id, adapter.type, account)
            channel_id = ids.new_id("ch")
        webhook_url = _webhook_url(request.app[SETTINGS], adapter, channel_id)
        secret = adapter.new_secret()
        connected = await _platform_connect(adapter, given, webhook_url, secret)
        if connected.platform_id and connected.platform_id != account:
            await _refuse_duplicate(store, caller.workspace_id, adapter.type, connected.platform_id)
        document = _new_channel(
            caller, body, channel_id, connected, credentials, secret_box(request),
            secret=secret, webhook_url=webhook_url,
        )  # fmt: skip
        return await store.save(document), secret


async def connect_channel(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    body = await parse_body(request, ChannelConnect)
    adapter = _adapter_for_body(request, body.type)
    credentials = _credentials(adapter, body.credentials, "credentials.")
    await ApplicationStore(request_db(request)).get(caller.workspace_id, body.application_id)
    created, secret = await _connect(request, caller, body, adapter, credentials)
    await _invalidate(request, created["_id"])
    log.info("%s channel %s connected", created["type"], created["_id"])
    # The only time a secret the tenant keeps is shown: only its sealed form is stored.
    shown = {"signing_secret": secret} if adapter.secret_shown else {}
    return web.json_response({**_view(created), **shown}, status=201)


def _adapter_for_body(request: web.Request, channel_type: str) -> ChannelAdapter:
    try:
        return _adapter(request, channel_type)
    except UnknownChannelType:
        known = ", ".join(sorted(CREDENTIALS))
        raise ValidationFailed(
            f"there is no {channel_type!r} channel type",
            details=[{"field": "type", "message": f"one of {known}"}],
        ) from None


async def list_channels(request: web.Request) -> web.Response:
    caller = await principal(request)
    query = parse_query(request, ChannelQuery)
    found = await _store(request).of_workspace(caller.workspace_id, query.application_id)
    return web.json_response({"channels": [_view(d) for d in found]})


async def get_channel(request: web.Request) -> web.Response:
    caller = await principal(request)
    channel = await _store(request).get(caller.workspace_id, request.match_info["id"])
    health = await ChannelStatus(request.app[REDIS]).read(channel["_id"])
    return web.json_response({**_view(channel), "health": health})


async def channel_status(request: web.Request) -> web.Response:
    caller = await principal(request)
    channel = await _store(request).get(caller.workspace_id, request.match_info["id"])
    return web.json_response(await ChannelStatus(request.app[REDIS]).read(channel["_id"]))


async def _rotated(
    request: web.Request, channel: Document, adapter: ChannelAdapter, credentials: Credentials
) -> tuple[Document, str]:
    """The channel's fields after setting it up again with ``credentials`` and a new secret,
    and that secret. The credentials must name the channel's own platform account."""
    given = credentials.model_dump()
    stored = str(channel.get("platform_id") or "")
    account = adapter.account_id(given)
    if account and account != stored:
        raise CredentialsRefused(
            "the credentials are another account's: a channel keeps its account (connect the "
            "other one as a new channel)"
        )
    box = secret_box(request)
    secret = adapter.new_secret()
    webhook_url = _webhook_url(request.app[SETTINGS], adapter, channel["_id"])
    connected = await _platform_connect(adapter, given, webhook_url, secret)
    if connected.platform_id != stored:
        raise CredentialsRefused("the credentials are another account's (as the platform says)")
    fields = {
        "credentials": seal_credentials(box, given),
        "webhook_secret": box.seal(secret),
        "config": dict(connected.config),
        "webhook_url": webhook_url or None,
    }
    return fields, secret


async def rotate_credentials(request: web.Request) -> web.Response:
    """New credentials for a connected channel, checked with the platform before they are saved."""
    caller = await principal(request)
    caller.require_configurer()
    body = await parse_body(request, CredentialsRotation)
    store = _store(request)
    channel = await store.get(caller.workspace_id, request.match_info["id"])
    adapter = _adapter(request, channel["type"])
    credentials = _credentials(adapter, body.root, "")
    async with _exclusive(request.app[REDIS], channel["type"], _subject(channel)):
        channel = await store.get(caller.workspace_id, channel["_id"])
        if channel.get("status") != ACTIVE:
            raise Conflict("the channel is disconnected: connect it again as a new channel")
        fields, secret = await _rotated(request, channel, adapter, credentials)
        updated = await store.update(caller.workspace_id, channel["_id"], fields)
    await _invalidate(request, updated["_id"])
    log.info("%s channel %s: credentials rotated", updated["type"], updated["_id"])
    shown = {"signing_secret": secret} if adapter.secret_shown else {}
    return web.json_response({**_view(updated), **shown})


def _subject(channel: Document) -> str:
    """What ``_exclusive`` locks for a stored channel: its bot, or its id when it has none."""
    return str(channel.get("platform_id") or channel["_id"])


async def _platform_disconnect(request: web.Request, channel: Document) -> str | None:
    """Ask the platform to stop its deliveries; its reason when it would not or could not."""
    try:
        account = account_of(channel, secret_box(request))
        await _adapter(request, channel["type"]).disconnect(account)
    except SendFailed as failed:
        warning = failed.reason
    except SwitchboardError as refused:  # credentials unreadable or no longer a token's shape
        warning = refused.message
    else:
        return None
    log.warning(
        "%s channel %s: the platform side stays: %s", channel["type"], channel["_id"], warning
    )
    return warning


async def disconnect_channel(request: web.Request) -> web.Response:
    """Disconnected whatever the platform says: the pipeline drops what still comes in."""
    caller = await principal(request)
    caller.require_configurer()
    store = _store(request)
    channel = await store.get(caller.workspace_id, request.match_info["id"])
    if channel.get("status") == DISCONNECTED:
        return web.json_response({**_view(channel), "disconnect_warning": None})
    async with _exclusive(request.app[REDIS], channel["type"], _subject(channel)):
        channel = await store.get(caller.workspace_id, channel["_id"])
        warning = None
        if channel.get("status") != DISCONNECTED:
            warning = await _platform_disconnect(request, channel)
            fields = {"status": DISCONNECTED, "disconnected_at": time.time()}
            channel = await store.update(caller.workspace_id, channel["_id"], fields)
    await _invalidate(request, channel["_id"])
    log.info("%s channel %s disconnected", channel["type"], channel["_id"])
    return web.json_response({**_view(channel), "disconnect_warning": warning})


async def _indexes_ctx(app: web.Application) -> AsyncIterator[None]:
    try:
        await ChannelStore(database(app[MONGO], app[SETTINGS])).ensure_indexes()
    except Exception as error:  # the service starts while MongoDB is down; /readyz says so
        log.warning("could not ensure the channels indexes: %s", error)
    yield


async def _registry_ctx(app: web.Application) -> AsyncIterator[None]:
    registry = channel_registry(app[SETTINGS])
    app[CHANNEL_REGISTRY] = registry
    yield
    await registry.close()


def _credential_fields() -> str:
    """Each type's credentials, as the adapters declare them."""
    return "; ".join(
        f"`{kind}`: `{{{', '.join(model.model_fields)}}}`"
        for kind, model in sorted(CREDENTIALS.items())
    )


CONNECT = (
    "Owners and admins. `credentials` by type: " + _credential_fields() + ". They are checked "
    "with the platform before anything is saved: a Telegram bot token with getMe, then the "
    "bot's webhook is pointed at `webhook_url` with a new secret (a bot connected elsewhere "
    "stops getting updates there). Refused credentials answer 422, an unreachable platform "
    "503, a bot already connected in the workspace 409. An API channel's `credentials.url` "
    "receives every bot and operator message, signed the Standard Webhooks way: the answer's "
    "`signing_secret` is shown this once. An application has one API channel, whose id is the "
    "application's."
)

ROTATE = (
    "The body is the channel's credentials, as on connect. A Telegram channel takes a new token "
    "of the same bot (another bot's: 422), and its webhook is set again with a new secret. An "
    "API channel takes its URL (the same, or a new one, checked again) and gets a new signing "
    "secret, shown once as `signing_secret`: every send from then on is signed with it, "
    "retries included. A disconnected channel answers 409."
)

DISCONNECT = (
    "The platform is asked to stop its deliveries (Telegram: deleteWebhook). If it refuses or "
    "does not answer, the channel is disconnected all the same and `disconnect_warning` says "
    "why; what still arrives is dropped. Disconnecting again changes nothing."
)

HEALTH = (
    "Last webhook received, last send, last send error, last dropped delivery and last refused "
    "one with its reason (epoch seconds), and messages in and out today (UTC). The channel "
    "itself adds it as `health`."
)


def _operations() -> list[Operation]:
    tag = "channels"
    writes = (400, 401, 403, 404, 409, 422, 503)
    return [
        Operation("GET", "/api/channels", "List channels", tag, query=ChannelQuery,
                  errors=(401, 422)),
        Operation("POST", "/api/channels", "Connect a channel to an application", tag,
                  status=201, body=ChannelConnect, errors=writes, description=CONNECT),
        Operation("GET", "/api/channels/{id}", "A channel and its health (no secrets)", tag,
                  errors=(401, 404)),
        Operation("GET", "/api/channels/{id}/status", "A channel's health", tag,
                  errors=(401, 404), description=HEALTH),
        Operation("POST", "/api/channels/{id}/credentials", "Rotate a channel's credentials",
                  tag, body=CredentialsRotation, errors=writes, description=ROTATE),
        Operation("DELETE", "/api/channels/{id}", "Disconnect a channel", tag,
                  errors=(401, 403, 404, 409), description=DISCONNECT),
    ]  # fmt: skip


OPERATIONS = _operations()


def create_app(settings: Settings) -> web.Application:
    app = service_app(settings, "bots", DEPENDENCIES)
    app[TOKENS] = TokenService(settings)
    app.cleanup_ctx.extend([_indexes_ctx, _registry_ctx])
    app.router.add_get("/api/channels", list_channels)
    app.router.add_post("/api/channels", connect_channel)
    app.router.add_get("/api/channels/{id}", get_channel)
    app.router.add_get("/api/channels/{id}/status", channel_status)
    app.router.add_post("/api/channels/{id}/credentials", rotate_credentials)
    app.router.add_delete("/api/channels/{id}", disconnect_channel)
    return app
