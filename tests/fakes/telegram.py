"""A strict stand-in for Telegram's Bot API server, for tests.

Adapters call it over real HTTP on 127.0.0.1 as ``{url}/bot{token}/{method}``, so the requests
they build and the way they read answers are exercised for real. It refuses what Telegram
refuses, in Telegram's words and ``{ok, ...}`` envelope: unknown tokens, empty or overlong text,
markup that does not parse, chats that do not exist or blocked the bot, and floods (429 with
``retry_after`` and a ``Retry-After`` header). Methods it does not simulate are answered as
unknown, so a test cannot pass on a call it never checked. It delivers updates to the registered
webhook as Telegram does (``deliver``); update builders are in ``tests.fakes.telegram_updates``.
Relaxed only where a local test needs it: a webhook may be plain http on any port.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import json
import math
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, NoReturn, Self, TypeAlias
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

JSON: TypeAlias = dict[str, Any]
ChatId: TypeAlias = int | str

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TOKEN = re.compile(r"([0-9]{1,20}):[A-Za-z0-9_-]{20,100}")
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_TEXT_LIMIT = 200
DOWNLOAD_LIMIT = 20 * 2**20
UPLOAD_LIMITS = {"sendPhoto": 10 * 2**20, "sendDocument": 50 * 2**20}
#: Every update kind; a webhook set without ``allowed_updates`` gets all but the last three.
UPDATE_KINDS = (
    "message", "edited_message", "channel_post", "edited_channel_post", "business_connection",
    "business_message", "edited_business_message", "deleted_business_messages", "inline_query",
    "chosen_inline_result", "callback_query", "shipping_query", "pre_checkout_query",
    "purchased_paid_media", "poll", "poll_answer", "my_chat_member", "chat_join_request",
    "chat_boost", "removed_chat_boost", "chat_member", "message_reaction",
    "message_reaction_count",
)  # fmt: skip
DEFAULT_UPDATES = frozenset(UPDATE_KINDS[:-3])
METHODS = (
    "getMe", "setWebhook", "deleteWebhook", "getWebhookInfo", "sendMessage", "sendPhoto",
    "sendDocument", "answerCallbackQuery", "getFile",
)  # fmt: skip
_CANONICAL = {name.lower(): name for name in METHODS}
#: What ``fail_next`` and ``hang_next`` may name besides the methods: file downloads.
DOWNLOAD = "download"


class _Use(enum.Enum):
    REGISTERED = "the secret registered with setWebhook"


@dataclass(frozen=True)
class Webhook:
    url: str
    secret_token: str | None
    allowed_updates: tuple[str, ...] | None
    max_connections: int = 40

    def delivers(self, kind: str) -> bool:
        return kind in (self.allowed_updates or DEFAULT_UPDATES)


@dataclass
class Bot:
    """A bot the test registered, with its webhook and the chats that blocked it."""

    token: str
    id: int
    username: str
    first_name: str
    webhook: Webhook | None = None
    blocked: set[ChatId] = field(default_factory=set)
    pending_updates: set[int] = field(default_factory=set)
    last_error: tuple[int, str] | None = None
    open_callback_queries: set[str] = field(default_factory=set)

    def user(self) -> JSON:
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }


@dataclass(frozen=True)
class Upload:
    """A file sent in a multipart request."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class SentMessage:
    """A message the fake took: ``text`` is the text or caption as sent (markup included),
    ``params`` every parameter as received, ``result`` the Message answered, ``time`` the clock."""

    method: str
    token: str
    chat_id: ChatId
    message_id: int
    text: str | None
    params: JSON
    time: float
    result: JSON


@dataclass(frozen=True)
class ApiCall:
    """One answered request, taken or refused."""

    method: str
    token: str
    params: JSON
    status: int
    description: str | None


@dataclass(frozen=True)
class CallbackAnswer:
    token: str
    callback_query_id: str
    text: str | None
    show_alert: bool


@dataclass(frozen=True)
class Delivery:
    """One POST of an update to a webhook; ``status`` is None when it got no answer."""

    token: str
    update_id: int
    body: bytes
    headers: Mapping[str, str]
    status: int | None


@dataclass
class _File:
    content: bytes
    unique_id: str
    path: str
    owner: str | None  # the token of the only bot that may use it, or None for any
    link_until: float | None = None


@dataclass
class _Fault:
    status: int | None  # None: no answer at all
    remaining: int | None  # None: until heal()
    retry_after: int


@dataclass
class _Bucket:
    """A token bucket: ``capacity`` sends at once, refilled at ``per_s``."""

    capacity: float
    per_s: float
    tokens: float
    at: float

    def wait(self, now: float) -> float:
        """Seconds until a token is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_s)
        self.at = now
        return 0.0 if self.tokens >= 1 - 1e-9 else (1 - self.tokens) / self.per_s


class _ApiError(Exception):
    def __init__(
        self, status: int, description: str, *, parameters: JSON | None = None, retry: int = 0
    ) -> None:
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters
        self.headers = {"Retry-After": str(retry)} if retry else None


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


def _flood(retry_after: int) -> _ApiError:
    return _ApiError(
        429,
        f"Too Many Requests: retry after {retry_after}",
        parameters={"retry_after": retry_after},
        retry=retry_after,
    )


class FakeTelegram:
    """``async with FakeTelegram() as telegram:`` serves the Bot API at ``telegram.url``.

    Rate limits are token buckets per bot: ``chat_burst`` messages to one chat at once, refilled
    at ``chat_per_s``; ``group_per_minute`` to a group; ``bot_burst`` over all chats, refilled at
    ``bot_per_s``. ``clock`` (monotonic seconds) drives them and the file links' lifetime.
    """

    def __init__(
        self,
        *,
        chat_burst: int = 3,
        chat_per_s: float = 1.0,
        group_per_minute: int = 20,
        bot_burst: int = 30,
        bot_per_s: float = 30.0,
        file_link_ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._chat_limit = (float(chat_burst), chat_per_s)
        self._group_limit = (float(group_per_minute), group_per_minute / 60)
        self._bot_limit = (float(bot_burst), bot_per_s)
        self._file_link_ttl_s = file_link_ttl_s
        self._clock = clock
        #: Every request per method (unknown ones under the name used), refused and hung included.
        self.requests: Counter[str] = Counter()
        self.calls: list[ApiCall] = []
        self.callback_answers: list[CallbackAnswer] = []
        self.deliveries: list[Delivery] = []
        self._bots: dict[str, Bot] = {}
        self._sent: list[SentMessage] = []
        self._unknown_chats: set[ChatId] = set()
        self._messages: dict[tuple[str, ChatId], dict[int, JSON]] = {}
        self._files: dict[str, _File] = {}
        self._buckets: dict[tuple[Any, ...], _Bucket] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._file_numbers = itertools.count(1)
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._url: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API base, as ``https://api.telegram.org`` is for the real one."""
        if self._url is None:
            raise RuntimeError("FakeTelegram is not running")
        return self._url

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeTelegram is already running")
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        self._runner, self._url = runner, f"http://{host}:{port}"

    async def close(self) -> None:
        """Drop requests left hanging, then stop serving."""
        in_flight = list(self._in_flight)
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._url = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- what the test sets up ---------------------------------------------------------------

    def add_bot(
        self, token: str, bot_id: int, username: str, first_name: str = "Switchboard"
    ) -> Bot:
        """Register a bot; its token must be shaped as BotFather's, starting with its id."""
        shape = TOKEN.fullmatch(token)
        if shape is None or int(shape.group(1)) != bot_id:
            raise ValueError("a bot token is '<bot id>:<20-100 of A-Za-z0-9_->'")
        bot = Bot(token, bot_id, username, first_name)
        self._bots[token] = bot
        return bot

    def bot(self, token: str) -> Bot:
        try:
            return self._bots[token]
        except KeyError:
            raise LookupError("no bot has that token; add_bot it first") from None

    def webhook(self, token: str) -> Webhook | None:
        return self.bot(token).webhook

    def forget_chat(self, chat_id: ChatId) -> None:
        """Make ``chat_id`` unknown to every bot: sends get "chat not found"."""
        self._unknown_chats.add(_chat_key(chat_id))

    def block(self, token_or_bot: str | Bot, chat_id: ChatId) -> None:
        """The user blocks the bot (or a group removes it): sends get a 403."""
        self._as_bot(token_or_bot).blocked.add(_chat_key(chat_id))

    def unblock(self, token_or_bot: str | Bot, chat_id: ChatId) -> None:
        self._as_bot(token_or_bot).blocked.discard(_chat_key(chat_id))

    def add_file(
        self,
        file_id: str,
        content: bytes,
        *,
        file_unique_id: str | None = None,
        file_path: str | None = None,
        bot: str | Bot | None = None,
    ) -> None:
        """A file users sent, for getFile and download; only ``bot``'s when given, as
        Telegram's file ids belong to one bot."""
        number = next(self._file_numbers)
        self._files[file_id] = _File(
            content,
            file_unique_id or f"AQAD{number:06d}",
            file_path or f"documents/file_{number}",
            None if bot is None else self._as_bot(bot).token,
        )

    def fail_next(
        self, method: str, count: int | None = 1, *, status: int = 502, retry_after: int = 1
    ) -> None:
        """The next ``count`` calls (None: all, until ``heal``) fail with ``status``; a 429
        says ``retry_after``. Queued after faults already set for the method."""
        if not 400 <= status <= 599:
            raise ValueError("a failure is a 4xx or 5xx status")
        self._add_fault(method, _Fault(status, count, retry_after))

    def hang_next(self, method: str, count: int | None = 1) -> None:
        """The next ``count`` calls (None: all) get no answer until the caller gives up."""
        self._add_fault(method, _Fault(None, count, 0))

    def heal(self, method: str | None = None) -> None:
        """Drop the faults set for ``method`` (or every method)."""
        if method is None:
            self._faults.clear()
        else:
            self._faults.pop(self._fault_key(method), None)

    # --- what the test reads -----------------------------------------------------------------

    def sent(self, token: str | None = None, chat_id: ChatId | None = None) -> list[SentMessage]:
        """Messages taken, in the order they arrived, for one bot and chat if given."""
        chat = None if chat_id is None else _chat_key(chat_id)
        return [
            sent
            for sent in self._sent
            if (token is None or sent.token == token) and (chat is None or sent.chat_id == chat)
        ]

    # --- delivering updates ------------------------------------------------------------------

    async def deliver(
        self,
        token: str,
        update: JSON,
        *,
        body: bytes | None = None,
        secret: str | Literal[_Use.REGISTERED] | None = _Use.REGISTERED,
        timeout_s: float = 10.0,
    ) -> int:
        """POST ``update`` to the bot's webhook as Telegram does and return the status.

        ``body`` sends those exact bytes instead of the encoded update (which it must still
        describe); ``secret`` overrides the header (None: no header). Telegram redelivers what
        was not answered 2xx: call again with the same update to do so. A connection error is
        raised, after it is recorded as the webhook's last error.
        """
        bot = self.bot(token)
        webhook = bot.webhook
        if webhook is None:
            raise RuntimeError("the bot has no webhook: Telegram would not deliver")
        update_id, kind = _check_update(update)
        if not webhook.delivers(kind):
            raise ValueError(f"the webhook's allowed_updates leave out {kind!r}")
        raw = body if body is not None else _encoded(update)
        headers = {"Content-Type": "application/json"}
        chosen = webhook.secret_token if secret is _Use.REGISTERED else secret
        if chosen:
            headers[SECRET_HEADER] = chosen
        self._remember(bot, update)
        status: int | None = None
        try:
            async with self._client().post(
                webhook.url, data=raw, headers=headers, timeout=aiohttp.ClientTimeout(timeout_s)
            ) as response:
                status, reason = response.status, response.reason or ""
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            self._delivery_failed(bot, update_id, _connection_error(error))
            raise
        finally:
            self.deliveries.append(Delivery(token, update_id, raw, headers, status))
        if 200 <= status < 300:
            bot.pending_updates.discard(update_id)
        else:
            message = f"Wrong response from the webhook: {status} {reason}".rstrip()
            self._delivery_failed(bot, update_id, message)
        return status

    # --- serving -----------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        files = re.fullmatch(r"/file/bot([^/]*)/(.+)", request.path)
        if files is not None:
            return await self._download(files.group(1), files.group(2))
        call = re.fullmatch(r"/bot([^/]*)/([^/]*)", request.path)
        if call is None or request.method not in ("GET", "POST"):
            return _answer(_ApiError(404, "Not Found"))
        token, name = call.groups()
        method = _CANONICAL.get(name.lower(), name)
        self.requests[method] += 1
        params: JSON = {}
        try:
            await self._fault(method)
            bot = self._bots.get(token)
            if bot is None:
                raise _ApiError(401, "Unauthorized")
            if method not in METHODS:
                raise _ApiError(404, "Not Found")
            params = await _read_params(request)
            result, description = self._handle(method, bot, params, _Args(params))
        except _ApiError as refused:
            self.calls.append(ApiCall(method, token, params, refused.status, refused.description))
            return _answer(refused)
        self.calls.append(ApiCall(method, token, params, 200, description))
        envelope: JSON = {"ok": True, "result": result}
        if description:
            envelope["description"] = description
        return web.json_response(envelope)

    def _handle(self, method: str, bot: Bot, params: JSON, args: _Args) -> tuple[Any, str | None]:
        if method == "getMe":
            return self._get_me(bot), None
        if method == "setWebhook":
            return True, self._set_webhook(bot, args)
        if method == "deleteWebhook":
            if args.flag("drop_pending_updates"):
                bot.pending_updates.clear()
            was_set, bot.webhook = bot.webhook is not None, None
            return True, "Webhook was deleted" if was_set else "Webhook is already deleted"
        if method == "getWebhookInfo":
            return self._webhook_info(bot), None
        if method == "answerCallbackQuery":
            return self._answer_callback(bot, args), None
        if method == "getFile":
            return self._get_file(bot, args), None
        return self._send(method, bot, params, args), None

    async def _fault(self, method: str) -> None:
        queue = self._faults.get(method)
        if not queue:
            return
        fault = queue[0]
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
        if fault.status is None:
            await self._hang()
        if fault.status == 429:
            raise _flood(fault.retry_after)
        raise _ApiError(fault.status, HTTPStatus(fault.status).phrase)

    async def _hang(self) -> NoReturn:
        """Waits until the caller hangs up (aiohttp cancels the handler) or ``close``."""
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self._in_flight.discard(task)
        raise AssertionError("unreachable: the future never resolves")

    # --- methods -----------------------------------------------------------------------------

    def _get_me(self, bot: Bot) -> JSON:
        return bot.user() | {
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _set_webhook(self, bot: Bot, args: _Args) -> str:
        url = args.text("url")
        if not url:
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _bad("invalid webhook URL specified")
        secret = args.text("secret_token")
        if len(secret) > 256:
            raise _bad("secret token is too long")
        if not re.fullmatch(r"[A-Za-z0-9_-]*", secret):
            raise _bad("secret token contains unallowed characters")
        allowed = args.obj("allowed_updates", "allowed updates")
        if allowed is not None and not (
            isinstance(allowed, list) and all(isinstance(kind, str) for kind in allowed)
        ):
            raise _bad("can't parse allowed updates: an array of strings expected")
        connections = min(100, max(1, args.integer("max_connections") or 40))
        kinds = tuple(kind for kind in allowed or () if kind in UPDATE_KINDS) or None
        webhook = Webhook(url, secret or None, kinds, connections)
        drop = args.flag("drop_pending_updates")
        if drop:
            bot.pending_updates.clear()
        if webhook == bot.webhook and not drop:
            return "Webhook is already set"
        bot.webhook = webhook
        return "Webhook was set"

    def _webhook_info(self, bot: Bot) -> JSON:
        hook = bot.webhook
        info: JSON = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(bot.pending_updates),
        }
        if bot.last_error is not None:
            info["last_error_date"], info["last_error_message"] = bot.last_error
        if hook is not None:
            info["max_connections"] = hook.max_connections
            info["ip_address"] = "127.0.0.1"
            if hook.allowed_updates is not None:
                info["allowed_updates"] = list(hook.allowed_updates)
        return info

    def _answer_callback(self, bot: Bot, args: _Args) -> bool:
        query_id = args.text("callback_query_id")
        if query_id not in bot.open_callback_queries:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = args.text("text")
        if len(text) > CALLBACK_TEXT_LIMIT:
            raise _bad("MESSAGE_TOO_LONG")
        bot.open_callback_queries.discard(query_id)
        answer = CallbackAnswer(bot.token, query_id, text or None, args.flag("show_alert"))
        self.callback_answers.append(answer)
        return True

    def _get_file(self, bot: Bot, args: _Args) -> JSON:
        file_id = args.text("file_id")
        if not file_id:
            raise _bad("file_id not specified")
        found = self._files.get(file_id)
        if found is None or found.owner not in (None, bot.token):
            raise _bad("invalid file_id")
        if len(found.content) > DOWNLOAD_LIMIT:
            raise _bad("file is too big")
        found.link_until = self._clock() + self._file_link_ttl_s
        return {
            "file_id": file_id,
            "file_unique_id": found.unique_id,
            "file_size": len(found.content),
            "file_path": found.path,
        }

    async def _download(self, token: str, path: str) -> web.StreamResponse:
        self.requests[DOWNLOAD] += 1
        try:
            await self._fault(DOWNLOAD)
            if token not in self._bots:
                raise _ApiError(401, "Unauthorized")
            found = next((f for f in self._files.values() if f.path == path), None)
            if (
                found is None
                or found.owner not in (None, token)
                or found.link_until is None
                or self._clock() > found.link_until
            ):
                raise _ApiError(404, "Not Found")
        except _ApiError as refused:
            return _answer(refused)
        return web.Response(body=found.content, content_type="application/octet-stream")

    # --- sending -----------------------------------------------------------------------------

    def _send(self, method: str, bot: Bot, params: JSON, args: _Args) -> JSON:
        attachment: tuple[str, bytes, str] | None = None
        if method == "sendMessage":
            written = args.text("text")
            content = {"text": _message_text(written, args.text("parse_mode"))}
        else:
            written = args.text("caption")
            content = _caption(written, args.text("parse_mode"))
            attachment = self._attachment(method, bot, params)
        chat_id = self._chat(args)
        reply = self._reply_to(bot, chat_id, args)
        if chat_id in bot.blocked:
            raise _ApiError(403, _blocked_description(chat_id))
        self._take_send_slot(bot, chat_id)
        if attachment is not None:
            content.update(self._stored(bot, *attachment))
        messages = self._messages.setdefault((bot.token, chat_id), {})
        message_id = max(messages, default=0) + 1
        result: JSON = {
            "message_id": message_id,
            "from": bot.user(),
            "chat": _chat_object(chat_id),
            "date": int(time.time()),
            **content,
        }
        if reply is not None:
            result["reply_to_message"] = {k: v for k, v in reply.items() if k != "reply_to_message"}
        messages[message_id] = result
        sent = SentMessage(
            method, bot.token, chat_id, message_id, written or None, params, self._clock(), result
        )
        self._sent.append(sent)
        return result

    def _attachment(self, method: str, bot: Bot, params: JSON) -> tuple[str, bytes, str]:
        """The kind, bytes and name of the file to send: an upload, a file id or a URL (whose
        bytes Telegram would fetch; the fake has none)."""
        kind = "photo" if method == "sendPhoto" else "document"
        given = params.get(kind)
        if isinstance(given, Upload):
            if len(given.data) > UPLOAD_LIMITS[method]:
                raise _ApiError(413, "Request Entity Too Large")
            return kind, given.data, given.filename
        if not isinstance(given, str) or not given:
            raise _bad(f"there is no {kind} in the request")
        if urlsplit(given).scheme in ("http", "https"):
            return kind, b"", urlsplit(given).path.rpartition("/")[2] or "file"
        found = self._files.get(given)
        if found is None or found.owner not in (None, bot.token):
            raise _bad("wrong file identifier/HTTP URL specified")
        return kind, found.content, found.path.rpartition("/")[2]

    def _stored(self, bot: Bot, kind: str, data: bytes, name: str) -> JSON:
        """Keep a sent file (for getFile) and describe it as the Message does."""
        number = next(self._file_numbers)
        file_id = f"{'AgAC' if kind == 'photo' else 'BQAC'}AgIAAxkDAA{number:08d}"
        unique_id = f"AQAD{number:06d}"
        path = f"{'photos' if kind == 'photo' else 'documents'}/file_{number}"
        self._files[file_id] = _File(data, unique_id, path, bot.token)
        if kind == "document":
            described = {"file_name": name, "file_id": file_id, "file_unique_id": unique_id}
            return {"document": described | {"file_size": len(data)}}
        sizes = [
            {
                "file_id": file_id if side == 800 else f"{file_id}-{side}",
                "file_unique_id": f"{unique_id}-{side}",
                "file_size": max(1, len(data) * side // 800),
                "width": side,
                "height": side * 3 // 4,
            }
            for side in (90, 320, 800)
        ]
        return {"photo": sizes}

    def _chat(self, args: _Args) -> ChatId:
        given = args.text("chat_id")
        if not given:
            raise _bad("chat_id is empty")
        chat_id = _chat_key(given)
        # The fake knows no channel or group usernames: sending to "@name" finds no chat.
        if isinstance(chat_id, str) or chat_id == 0 or chat_id in self._unknown_chats:
            raise _bad("chat not found")
        return chat_id

    def _reply_to(self, bot: Bot, chat_id: ChatId, args: _Args) -> JSON | None:
        reply = args.obj("reply_parameters", "reply parameters")
        if reply is None and args.text("reply_to_message_id"):
            reply = {
                "message_id": args.integer("reply_to_message_id"),
                "allow_sending_without_reply": args.flag("allow_sending_without_reply"),
            }
        if reply is None:
            return None
        if not isinstance(reply, dict):
            raise _bad("object expected as reply parameters")
        message_id = reply.get("message_id")
        messages = self._messages.get((bot.token, chat_id), {})
        found = messages.get(message_id) if isinstance(message_id, int) else None
        if found is None and reply.get("allow_sending_without_reply") is not True:
            raise _bad("message to be replied not found")
        return found

    def _take_send_slot(self, bot: Bot, chat_id: ChatId) -> None:
        """Refuse with 429 when a bucket is empty; otherwise take a token from each."""
        now = self._clock()
        buckets = [
            self._bucket(("bot", bot.token), self._bot_limit, now),
            self._bucket(("chat", bot.token, chat_id), self._chat_limit, now),
        ]
        if isinstance(chat_id, int) and chat_id < 0:
            buckets.append(self._bucket(("group", bot.token, chat_id), self._group_limit, now))
        wait = max(bucket.wait(now) for bucket in buckets)
        if wait > 0:
            raise _flood(max(1, math.ceil(wait - 1e-9)))
        for bucket in buckets:
            bucket.tokens -= 1

    def _bucket(self, key: tuple[Any, ...], limit: tuple[float, float], now: float) -> _Bucket:
        capacity, per_s = limit
        return self._buckets.setdefault(key, _Bucket(capacity, per_s, capacity, now))

    # --- helpers -----------------------------------------------------------------------------

    def _as_bot(self, token_or_bot: str | Bot) -> Bot:
        return token_or_bot if isinstance(token_or_bot, Bot) else self.bot(token_or_bot)

    def _fault_key(self, method: str) -> str:
        key = DOWNLOAD if method == DOWNLOAD else _CANONICAL.get(method.lower())
        if key is None:
            raise ValueError(f"{method!r} is not a method the fake serves")
        return key

    def _add_fault(self, method: str, fault: _Fault) -> None:
        if fault.remaining is not None and fault.remaining < 1:
            raise ValueError("count is at least 1 (or None for every call)")
        self._faults.setdefault(self._fault_key(method), deque()).append(fault)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _remember(self, bot: Bot, update: JSON) -> None:
        """What a delivered update tells the fake: messages to reply to, queries to answer."""
        found = [update.get("message"), update.get("edited_message")]
        query = update.get("callback_query")
        if isinstance(query, dict):
            bot.open_callback_queries.add(str(query["id"]))
            found.append(query.get("message"))
        for message in found:
            if isinstance(message, dict):
                key = (bot.token, _chat_key(message["chat"]["id"]))
                self._messages.setdefault(key, {})[int(message["message_id"])] = message

    def _delivery_failed(self, bot: Bot, update_id: int, message: str) -> None:
        bot.pending_updates.add(update_id)
        bot.last_error = (int(time.time()), message)


class _Args:
    """Parameters read the way the Bot API reads them: every value as its text, objects as
    JSON text, so a JSON body, a form and a query string mean the same."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self._values = {
            name: _as_text(value)
            for name, value in params.items()
            if value is not None and not isinstance(value, Upload)
        }

    def text(self, name: str) -> str:
        return self._values.get(name, "")

    def integer(self, name: str) -> int | None:
        value = self._values.get(name, "")
        return int(value) if re.fullmatch(r"-?[0-9]{1,19}", value) else None

    def flag(self, name: str) -> bool:
        return self._values.get(name, "").lower() in ("true", "1")

    def obj(self, name: str, what: str) -> Any:
        value = self._values.get(name)
        if not value:
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise _bad(f"can't parse {what} JSON object") from None


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


async def _read_params(request: web.Request) -> JSON:
    """The query string merged with a JSON, form or multipart body."""
    params: JSON = dict(request.query)
    if request.content_type == "application/json":
        raw = await request.read()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                raise _bad("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise _bad("JSON object expected")
            params.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        for name, value in (await request.post()).items():
            if isinstance(value, web.FileField):
                params[name] = Upload(value.filename, value.content_type, value.file.read())
            else:
                params[name] = value
    return params


def _answer(error: _ApiError) -> web.Response:
    body: JSON = {"ok": False, "error_code": error.status, "description": error.description}
    if error.parameters:
        body["parameters"] = error.parameters
    return web.json_response(body, status=error.status, headers=error.headers)


def _chat_key(chat_id: ChatId) -> ChatId:
    """Chat ids as Telegram reads them: numbers (given as text or not) or "@username"."""
    text = str(chat_id).strip()
    return int(text) if re.fullmatch(r"-?[0-9]{1,19}", text) else text


def _chat_type(chat_id: int) -> str:
    if chat_id > 0:
        return "private"
    return "supergroup" if str(chat_id).startswith("-100") else "group"


def _chat_object(chat_id: ChatId) -> JSON:
    assert isinstance(chat_id, int)
    kind = _chat_type(chat_id)
    return {"id": chat_id, "type": kind} | ({} if kind == "private" else {"title": "Test group"})


def _blocked_description(chat_id: ChatId) -> str:
    kind = _chat_type(chat_id) if isinstance(chat_id, int) else "channel"
    if kind == "private":
        return "Forbidden: bot was blocked by the user"
    return f"Forbidden: bot was kicked from the {kind} chat"


def _check_update(update: JSON) -> tuple[int, str]:
    """The update's id and kind, if it is shaped as one Telegram sends."""
    update_id = update.get("update_id")
    kinds = [key for key in update if key != "update_id"]
    if not isinstance(update_id, int) or len(kinds) != 1 or kinds[0] not in UPDATE_KINDS:
        raise ValueError("an Update has an integer update_id and exactly one known kind")
    return update_id, kinds[0]


def _encoded(update: JSON) -> bytes:
    """As the Bot API server writes JSON: compact, UTF-8."""
    return json.dumps(update, ensure_ascii=False, separators=(",", ":")).encode()


def _connection_error(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "Read timeout expired"
    return "Connection refused"


# --- text and markup ----------------------------------------------------------------------------


def _message_text(text: str, parse_mode: str) -> str:
    """The text Telegram would show, or the 400 it answers a text with."""
    if len(text.encode()) > 1 << 15:
        raise _bad("text is too long")
    if not text:
        raise _bad("message text is empty")
    plain = _formatted(text, parse_mode).strip()
    if not plain:
        raise _bad("message text is empty")
    if len(plain) > TEXT_LIMIT:
        raise _bad("message is too long")
    return plain


def _caption(caption: str, parse_mode: str) -> JSON:
    if not caption:
        return {}
    plain = _formatted(caption, parse_mode).strip()
    if len(plain) > CAPTION_LIMIT:
        raise _bad("message caption is too long")
    return {"caption": plain} if plain else {}


def _formatted(text: str, parse_mode: str) -> str:
    mode = parse_mode.lower()
    parsers: dict[str, Callable[[str], str]] = {
        "markdown": _parse_markdown,
        "markdownv2": _parse_markdown_v2,
        "html": _parse_html,
    }
    if mode in ("", "none"):
        return text
    if mode not in parsers:
        raise _bad("unsupported parse_mode")
    try:
        return parsers[mode](text)
    except _Unparsable as error:
        raise _bad(f"can't parse entities: {error}") from None


class _Unparsable(Exception):
    pass


def _offset(text: str, index: int) -> int:
    """Telegram reports parse errors at byte offsets of the UTF-8 text."""
    return len(text[:index].encode())


def _at(text: str, index: int) -> str:
    return text[index] if index < len(text) else ""


def _parse_markdown(text: str) -> str:
    """Legacy Markdown: *bold*, _italic_, `code`, ```pre```, [text](url); \\ escapes them."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and _at(text, i + 1) in ("_", "*", "`", "["):
            out.append(text[i + 1])
            i += 2
            continue
        if c not in "_*`[":
            out.append(c)
            i += 1
            continue
        begin, pre = i, text.startswith("```", i)
        end = "```" if pre else "]" if c == "[" else c
        close = text.find(end, i + len(end))
        if close < 0:
            raise _Unparsable(
                f"Can't find end of the entity starting at byte offset {_offset(text, begin)}"
            )
        out.append(text[i + len(end) : close])
        i = close + len(end)
        if c == "[" and _at(text, i) == "(":
            url_end = text.find(")", i)
            i = len(text) if url_end < 0 else url_end + 1
    return "".join(out)


_V2_RESERVED = "_*[]()~`>#+-=|{}.!"
_V2_CLOSERS: dict[str, Callable[[str, int], bool]] = {
    "Bold": lambda t, i: t[i] == "*",
    "Italic": lambda t, i: t[i] == "_" and _at(t, i + 1) != "_",
    "Underline": lambda t, i: t.startswith("__", i),
    "Strikethrough": lambda t, i: t[i] == "~",
    "Spoiler": lambda t, i: t.startswith("||", i),
    "Code": lambda t, i: t[i] == "`",
    "Pre": lambda t, i: t.startswith("```", i),
    "TextUrl": lambda t, i: t[i] == "]",
    "CustomEmoji": lambda t, i: t[i] == "]",
}
_V2_OPENERS = (
    ("```", "Pre"), ("__", "Underline"), ("||", "Spoiler"), ("![", "CustomEmoji"),
    ("*", "Bold"), ("_", "Italic"), ("~", "Strikethrough"), ("`", "Code"), ("[", "TextUrl"),
)  # fmt: skip


def _parse_markdown_v2(text: str) -> str:
    """MarkdownV2 as Telegram parses it (after tdlib's ``parse_markdown_v2``): every reserved
    character outside an entity must be escaped, and every entity closed."""
    out: list[str] = []
    open_entities: list[tuple[str, int]] = []
    line_start = True
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and 0 < ord(_at(text, i + 1) or "\0") <= 126:
            out.append(text[i + 1])
            line_start, i = text[i + 1] == "\n", i + 2
            continue
        in_code = bool(open_entities) and open_entities[-1][0] in ("Code", "Pre")
        if c not in ("`" if in_code else _V2_RESERVED):
            out.append(c)
            line_start, i = c == "\n", i + 1
            continue
        if open_entities and _V2_CLOSERS[open_entities[-1][0]](text, i):
            kind, _ = open_entities.pop()
            i = _v2_close(text, i, kind)
            continue
        if c == ">" and line_start:  # a quotation line
            i += 1
            continue
        opener = next(((m, kind) for m, kind in _V2_OPENERS if text.startswith(m, i)), None)
        if opener is None:
            raise _Unparsable(
                f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
            )
        open_entities.append((opener[1], i))
        i += len(opener[0])
        if opener[1] == "Pre":
            i = _v2_pre_start(text, i)
    if open_entities:
        kind, begin = open_entities[-1]
        raise _Unparsable(f"Can't find end of {kind} entity at byte offset {_offset(text, begin)}")
    return "".join(out)


def _v2_close(text: str, i: int, kind: str) -> int:
    """Index after the closing mark of ``kind`` (and a link's ``(url)``)."""
    if kind not in ("TextUrl", "CustomEmoji"):
        return i + {"Underline": 2, "Spoiler": 2, "Pre": 3}.get(kind, 1)
    i += 1
    if _at(text, i) != "(":
        if kind == "CustomEmoji":
            raise _Unparsable("The entity must contain a tg://emoji or tg://time URL")
        return i
    begin = i + 1
    i = begin
    while i < len(text) and text[i] != ")":
        i += 2 if text[i] == "\\" and 0 < ord(_at(text, i + 1) or "\0") <= 126 else 1
    if i >= len(text):
        raise _Unparsable(f"Can't find end of a URL at byte offset {_offset(text, begin)}")
    return i + 1


def _v2_pre_start(text: str, i: int) -> int:
    """Skip a pre block's language name and the line break after the opening marks."""
    end = i
    while end < len(text) and not text[end].isspace() and text[end] != "`":
        end += 1
    if end != i and end < len(text) and text[end] != "`":
        i = end
    if _at(text, i) in ("\n", "\r"):
        pair = _at(text, i + 1) in ("\n", "\r") and text[i] != _at(text, i + 1)
        i += 2 if pair else 1
    return i


_HTML_TAGS = frozenset(
    {"a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "tg-emoji"}
    | {"tg-time", "span", "pre", "code", "blockquote"}
)
_HTML_ENTITY = re.compile(r"&(?:#x([0-9a-fA-F]{1,8})|#([0-9]{1,8})|(lt|gt|amp|quot));?")
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _parse_html(text: str) -> str:
    """HTML as Telegram parses it (after tdlib's ``parse_html``): only its tags, nested and
    closed in order; ``&`` stays itself unless it starts an entity Telegram knows."""
    out: list[str] = []
    open_tags: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "&":
            entity = _HTML_ENTITY.match(text, i)
            if entity is not None and (decoded := _html_entity(entity)):
                out.append(decoded)
                i = entity.end()
                continue
        if c != "<":
            out.append(c)
            i += 1
            continue
        if _at(text, i + 1) == "/":
            i = _html_end_tag(text, i, open_tags)
        else:
            i = _html_start_tag(text, i, open_tags)
    if open_tags:
        raise _Unparsable(f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"')
    return "".join(out)


def _html_entity(entity: re.Match[str]) -> str:
    hexadecimal, decimal, named = entity.groups()
    if named:
        return _HTML_NAMED[named]
    code = int(hexadecimal, 16) if hexadecimal else int(decimal)
    return chr(code) if 0 < code < 0x10FFFF and not 0xD800 <= code <= 0xDFFF else ""


def _html_start_tag(text: str, begin: int, open_tags: list[str]) -> int:
    i = begin + 1
    while i < len(text) and not text[i].isspace() and text[i] != ">":
        i += 1
    if i >= len(text):
        raise _Unparsable(f"Unclosed start tag at byte offset {_offset(text, begin)}")
    name = text[begin + 1 : i].lower()
    if name not in _HTML_TAGS:
        raise _Unparsable(f'Unsupported start tag "{name}" at byte offset {_offset(text, begin)}')
    values: dict[str, str] = {}
    while (attribute := _HTML_ATTRIBUTE.match(text, i)) is not None:
        i = attribute.end()
        if attribute.group("name"):
            value = attribute.group("quoted") or attribute.group("bare") or ""
            values[attribute.group("name").lower()] = (
                value[1:-1] if value[:1] in "\"'" and value else value
            )
    if _at(text, i) != ">":
        raise _Unparsable(f'Unclosed start tag "{name}" at byte offset {_offset(text, begin)}')
    if name == "span" and values.get("class") != "tg-spoiler":
        raise _Unparsable(
            f'Tag "span" must have class "tg-spoiler" at byte offset {_offset(text, begin)}'
        )
    open_tags.append(name)
    return i + 1


_HTML_ATTRIBUTE = re.compile(
    r"\s+|(?P<name>[^\s=>/\"']+)\s*(?:=\s*(?:(?P<quoted>\"[^\"]*\"|'[^']*')|(?P<bare>[\w.-]+)))?"
)


def _html_end_tag(text: str, begin: int, open_tags: list[str]) -> int:
    if not open_tags:
        raise _Unparsable(f"Unexpected end tag at byte offset {_offset(text, begin)}")
    i = begin + 2
    while i < len(text) and not text[i].isspace() and text[i] != ">":
        i += 1
    name = text[begin + 2 : i].lower()
    while i < len(text) and text[i].isspace():
        i += 1
    if _at(text, i) != ">":
        raise _Unparsable(f"Unclosed end tag at byte offset {_offset(text, begin)}")
    if name and name != open_tags[-1]:
        raise _Unparsable(
            f"Unmatched end tag at byte offset {_offset(text, begin)}, "
            f'expected "</{open_tags[-1]}>", found "</{name}>"'
        )
    open_tags.pop()
    return i + 1
