"""What the users service's handlers share: its stores and throttles (typed app keys, opened in
``cleanup_ctx``), the body types of accounts, starting a session, and work done after the
answer (mail), so that how long an answer takes does not depend on what was found."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Annotated, Any

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from core.clients.database import Document, database
from core.mail import Mailer
from core.security.login_throttle import Limits as LoginLimits
from core.security.login_throttle import LoginThrottle
from core.security.password_reset import PasswordResets
from core.security.rate_limits import RateLimits
from core.security.sessions import SessionStore
from core.security.tokens import TokenService
from core.stores.identity import IdentityStore, normalise_email
from web.auth import TOKENS, revoked_session_key
from web.keys import MONGO, REDIS, SETTINGS

log = logging.getLogger(__name__)

Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(normalise_email)]
Password = Annotated[str, StringConstraints(min_length=10, max_length=128)]
# Not the sign-up policy: a password presented is only ever right or wrong.
GivenPassword = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Background:
    """Work an answer does not wait for, awaited when the service stops; failures are logged."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, work: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.create_task(self._logged(work, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _logged(work: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await work
        except Exception:
            log.exception("%s failed", what)

    async def drain(self, timeout_s: float = 15.0) -> None:
        """Wait for the work started so far (for a stop, and for tests)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)


IDENTITY = web.AppKey("identity", IdentityStore)
SESSIONS = web.AppKey("sessions", SessionStore)
THROTTLE = web.AppKey("login_throttle", LoginThrottle)
LIMITER = web.AppKey("rate_limits", RateLimits)
RESETS = web.AppKey("password_resets", PasswordResets)
MAILER = web.AppKey("mailer", Mailer)
BACKGROUND = web.AppKey("background", Background)


async def accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = database(app[MONGO], settings)
    redis = app[REDIS]
    app[IDENTITY] = IdentityStore(db)
    app[SESSIONS] = SessionStore(
        db, redis, revoked_key=revoked_session_key, access_ttl_s=settings.access_token_ttl_s
    )
    app[THROTTLE] = LoginThrottle(redis, LoginLimits.from_settings(settings))
    app[LIMITER] = RateLimits(redis)
    app[RESETS] = PasswordResets(db, redis, ttl_s=settings.password_reset_ttl_s)
    app[MAILER] = Mailer(settings)
    app[BACKGROUND] = Background()
    yield
    await app[BACKGROUND].drain()


async def issue_session(request: web.Request, user: Document) -> dict[str, Any]:
    """A new session (refresh family) for ``user`` and its first token pair."""
    tokens = request.app[TOKENS]
    family_id = SessionStore.new_family_id()
    refresh, claims = tokens.refresh_token(user["_id"], family_id)
    await request.app[SESSIONS].start(user["workspace_id"], claims)
    return token_pair(tokens, user, family_id, refresh)


def token_pair(
    tokens: TokenService, user: Document, family_id: str, refresh: str
) -> dict[str, Any]:
    access = tokens.access_token(user["_id"], user["workspace_id"], user["role"], family_id)
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": tokens.access_ttl_s,
    }
