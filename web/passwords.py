"""Changing a password, and resetting a forgotten one by a link mailed to the account.

A change needs the current password (throttled like a sign-in: a stolen access token must not
become a way to guess it) and ends every session of the user, answering with a fresh one for
the caller. A reset request answers the same whether or not the email has an account, and the
look-up and the mail happen after the answer, so its timing tells nothing either. Completing a
reset sets the password and ends every session of the user.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import StringConstraints

from core.errors import PermissionDenied
from core.security.passwords import hash_password, verify_password
from core.security.rate_limits import Limit
from core.security.throttle_keys import address_bucket, hashed, refuse
from core.settings import Settings
from web.accounts import (
    BACKGROUND,
    IDENTITY,
    LIMITER,
    MAILER,
    RESETS,
    SESSIONS,
    THROTTLE,
    Body,
    Email,
    GivenPassword,
    Password,
    issue_session,
)
from web.auth import principal
from web.client_address import client_address
from web.keys import SETTINGS
from web.openapi import Operation
from web.validation import parse_body

RESET_REQUESTED = "if an account has this email, a link to reset its password is on its way"
WRONG_PASSWORD = "the current password is not right"  # noqa: S105 (a message)


class PasswordChange(Body):
    current_password: GivenPassword
    new_password: Password


class ResetRequest(Body):
    email: Email


class ResetCompletion(Body):
    token: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    password: Password


def reset_link(settings: Settings, token: str) -> str:
    """The page that completes a reset; the token goes in the fragment, which browsers do not
    send to servers (so it stays out of access logs and Referer headers)."""
    base = settings.password_reset_url or f"{settings.gateway_url}/reset-password"
    return f"{base}#token={token}"


async def change_password(request: web.Request) -> web.Response:
    caller = await principal(request)
    body = await parse_body(request, PasswordChange)
    app = request.app
    user = await app[IDENTITY].user(caller.workspace_id, caller.user_id)
    address = client_address(request, app[SETTINGS])
    await app[THROTTLE].take(user["email"], address)
    if not await verify_password(user.get("password_hash"), body.current_password):
        raise PermissionDenied(WRONG_PASSWORD)
    await app[THROTTLE].succeeded(user["email"], address)
    new_hash = await hash_password(body.new_password)
    await app[IDENTITY].set_password_hash(user["workspace_id"], user["_id"], new_hash)
    await app[RESETS].cancel(user["_id"])
    await app[SESSIONS].revoke_user(user["workspace_id"], user["_id"])
    return web.json_response(await issue_session(request, user))


async def request_reset(request: web.Request) -> web.Response:
    body = await parse_body(request, ResetRequest)
    settings = request.app[SETTINGS]
    bucket = address_bucket(client_address(request, settings))
    limit = Limit(
        f"reset:ip:{bucket}", settings.password_resets_per_address, settings.password_reset_window_s
    )
    refuse(await request.app[LIMITER].take([limit]), "too many reset requests; try again later")
    request.app[BACKGROUND].run(_mail_reset(request.app, body.email), "a password reset mail")
    return web.json_response({"message": RESET_REQUESTED}, status=202)


async def _mail_reset(app: web.Application, email: str) -> None:
    settings = app[SETTINGS]
    # Per email, whether or not it has an account, and silently: a full window only means no
    # more mail to that inbox for a while (nobody can flood someone's mailbox with links).
    limit = Limit(
        "reset:email:" + hashed(email),
        settings.password_resets_per_email,
        settings.password_reset_window_s,
    )
    if await app[LIMITER].take([limit]) is not None:
        return
    user = await app[IDENTITY].by_email(email)
    if user is None:
        return
    token = await app[RESETS].issue(user)
    minutes = settings.password_reset_ttl_s // 60
    await app[MAILER].send(
        user["email"],
        "Reset your Switchboard password",
        f"Someone asked to reset the password of your Switchboard account.\n\n"
        f"To choose a new one, open this link within {minutes} minutes:\n"
        f"{reset_link(settings, token)}\n\n"
        "If it was not you, ignore this mail: your password stays as it is.\n",
    )


async def complete_reset(request: web.Request) -> web.Response:
    body = await parse_body(request, ResetCompletion)
    app = request.app
    reset = await app[RESETS].redeem(body.token)  # before hashing: a bad token costs no Argon2
    new_hash = await hash_password(body.password)
    await app[IDENTITY].set_password_hash(reset["workspace_id"], reset["user_id"], new_hash)
    await app[SESSIONS].revoke_user(reset["workspace_id"], reset["user_id"])
    return web.Response(status=204)


def install(app: web.Application) -> None:
    app.router.add_post("/api/users/me/password", change_password)
    app.router.add_post("/api/auth/password-reset", request_reset)
    app.router.add_post("/api/auth/password-reset/complete", complete_reset)


OPERATIONS = [
    Operation("POST", "/api/users/me/password", "Change the caller's password", "users",
              body=PasswordChange, errors=(400, 401, 403, 422, 429),
              description="Needs the current password. Ends every session of the user and "
              "answers with a new token pair for the caller."),
    Operation("POST", "/api/auth/password-reset", "Ask for a password reset link", "auth",
              status=202, body=ResetRequest, errors=(400, 422, 429), security=None,
              description="Answers the same whether or not the email has an account; if it "
              "has, a single-use link is mailed to it, valid for a short time."),
    Operation("POST", "/api/auth/password-reset/complete", "Set a new password with a reset "
              "link's token", "auth", status=204, body=ResetCompletion, errors=(400, 422),
              security=None,
              description="The token works once. Ends every session of the user."),
]  # fmt: skip
