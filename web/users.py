"""The users service: workspaces, their operators, sign-in and tokens (/api/auth, /api/users).

Sign-up creates a workspace and its owner and answers alike whether or not the email already
has an account (the client signs in next); it is throttled per client address. Owners and admins
add members. Access tokens are short-lived JWTs; refresh tokens rotate and a spent one coming
back revokes its whole session (``core.security.sessions``). Sign-in is throttled per account
and address, per address and per account (``core.security.login_throttle``), and answers the
same for a wrong password as for a missing account. Password change and reset:
``web.passwords``. The client's address is the peer's, or what a trusted proxy says it is
(``web.client_address``).
"""

from __future__ import annotations

import sys
from typing import Annotated, Literal, Self

from aiohttp import web
from pydantic import StringConstraints, model_validator

from core.clients.database import Document
from core.errors import PermissionDenied, Unauthorized
from core.security.passwords import hash_password, needs_rehash, verify_password
from core.security.rate_limits import Limit
from core.security.throttle_keys import address_bucket, refuse
from core.security.tokens import TokenService
from core.settings import Settings
from core.stores.identity import OWNER, EmailTaken, UserNotFound, public_user
from web import passwords
from web.accounts import (
    BACKGROUND,
    IDENTITY,
    LIMITER,
    MAILER,
    SESSIONS,
    THROTTLE,
    Body,
    Email,
    GivenPassword,
    Password,
    accounts_ctx,
    issue_session,
    token_pair,
)
from web.auth import CONFIGURERS, TOKENS, Principal, principal
from web.client_address import client_address
from web.health import Dependency
from web.keys import SETTINGS
from web.openapi import Operation, all_operations, document
from web.service import service_app
from web.validation import parse_body

DEPENDENCIES = (Dependency.MONGODB, Dependency.REDIS)

WRONG_CREDENTIALS = "the email or the password is not right"
SIGNED_UP = "if this email can be used, its account is ready: sign in with it and the password"

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Role = Literal["owner", "admin", "agent"]


class Register(Body):
    email: Email
    password: Password
    name: Name
    workspace_name: Name


class Login(Body):
    email: Email
    password: GivenPassword


class Refresh(Body):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class NewMember(Body):
    email: Email
    name: Name
    role: Role
    password: Password


class MemberChange(Body):
    name: Name | None = None
    role: Role | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.name is None and self.role is None:
            raise ValueError("change at least one of name and role")
        return self


async def register(request: web.Request) -> web.Response:
    """The same answer, after the same work (an Argon2 hash, the writes), for a taken email as
    for a new one; only the mail sent to the address says which it was."""
    body = await parse_body(request, Register)
    settings = request.app[SETTINGS]
    bucket = address_bucket(client_address(request, settings))
    limit = Limit(f"signup:ip:{bucket}", settings.signups_per_address, settings.signup_window_s)
    refuse(
        await request.app[LIMITER].take([limit]), "too many sign-ups from this address; try later"
    )
    password_hash = await hash_password(body.password)
    try:
        await request.app[IDENTITY].register(
            email=body.email, name=body.name, password_hash=password_hash,
            workspace_name=body.workspace_name,
        )  # fmt: skip
        subject, text = "Your Switchboard workspace is ready", _WELCOME
    except EmailTaken:
        subject, text = "Someone tried to sign up with your address", _ALREADY_SIGNED_UP
    request.app[BACKGROUND].run(
        request.app[MAILER].send(body.email, subject, text), "a sign-up mail"
    )
    return web.json_response({"email": body.email, "message": SIGNED_UP}, status=202)


# Neither mail carries anything the sign-up's sender wrote: no one can mail a stranger their text.
_WELCOME = "Your Switchboard workspace is ready: sign in with this address.\n"
_ALREADY_SIGNED_UP = (
    "Someone tried to create a Switchboard account with this address, which already has one.\n"
    "If it was you, sign in, or ask for a password reset if you forgot the password.\n"
    "If not, there is nothing to do: no account was made.\n"
)


async def login(request: web.Request) -> web.Response:
    body = await parse_body(request, Login)
    address = client_address(request, request.app[SETTINGS])
    throttle = request.app[THROTTLE]
    await throttle.take(body.email, address)
    identity = request.app[IDENTITY]
    user = await identity.by_email(body.email)
    stored = user.get("password_hash") if user is not None else None
    matches = await verify_password(stored, body.password)  # as slow for a missing account
    if user is None or not matches:
        raise Unauthorized(WRONG_CREDENTIALS)
    await throttle.succeeded(body.email, address)
    if stored and needs_rehash(stored):
        new_hash = await hash_password(body.password)
        await identity.set_password_hash(user["workspace_id"], user["_id"], new_hash)
    return web.json_response(await issue_session(request, user))


async def refresh(request: web.Request) -> web.Response:
    body = await parse_body(request, Refresh)
    tokens, sessions = request.app[TOKENS], request.app[SESSIONS]
    presented = tokens.read_refresh(body.refresh_token)
    if not presented.family_id or not presented.token_id:
        raise Unauthorized("the token is not valid")
    successor_token, successor = tokens.refresh_token(presented.user_id, presented.family_id)
    family = await sessions.rotate(presented, successor)
    try:
        user = await request.app[IDENTITY].user(family["workspace_id"], presented.user_id)
    except UserNotFound as error:
        await sessions.revoke(family["_id"], family["workspace_id"])
        raise Unauthorized("this account no longer exists") from error
    return web.json_response(token_pair(tokens, user, family["_id"], successor_token))


async def logout(request: web.Request) -> web.Response:
    caller = await principal(request)
    await request.app[SESSIONS].revoke(caller.session_id, caller.workspace_id)
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    caller = await principal(request)
    return web.json_response(public_user(await request.app[IDENTITY].user(*_scope(caller))))


async def list_members(request: web.Request) -> web.Response:
    caller = await principal(request)
    members = await request.app[IDENTITY].members(caller.workspace_id)
    return web.json_response({"users": [public_user(m) for m in members]})


async def add_member(request: web.Request) -> web.Response:
    acting = await _configurer(request)
    body = await parse_body(request, NewMember)
    if body.role == OWNER and acting["role"] != OWNER:
        raise PermissionDenied("only an owner may add an owner")
    password_hash = await hash_password(body.password)
    user = await request.app[IDENTITY].add_user(
        acting["workspace_id"], email=body.email, name=body.name, role=body.role,
        password_hash=password_hash,
    )  # fmt: skip
    return web.json_response(public_user(user), status=201)


async def change_member(request: web.Request) -> web.Response:
    acting = await _configurer(request)
    identity = request.app[IDENTITY]
    target = await identity.user(acting["workspace_id"], request.match_info["user_id"])
    body = await parse_body(request, MemberChange)
    if acting["role"] != OWNER and (target["role"] == OWNER or body.role == OWNER):
        raise PermissionDenied("only an owner may change an owner or make one")
    role = body.role if body.role != target["role"] else None
    updated = await identity.update_user(target, name=body.name, role=role)
    if role is not None:
        # Access tokens carry the role: make the member sign in again under the new one.
        await request.app[SESSIONS].revoke_user(target["workspace_id"], target["_id"])
    return web.json_response(public_user(updated))


async def remove_member(request: web.Request) -> web.Response:
    acting = await _configurer(request)
    identity = request.app[IDENTITY]
    target = await identity.user(acting["workspace_id"], request.match_info["user_id"])
    if target["_id"] == acting["_id"]:
        raise PermissionDenied("you may not remove yourself")
    if acting["role"] != OWNER and target["role"] == OWNER:
        raise PermissionDenied("only an owner may remove an owner")
    await identity.delete_user(target)
    await request.app[SESSIONS].revoke_user(target["workspace_id"], target["_id"])
    return web.Response(status=204)


def _scope(caller: Principal) -> tuple[str, str]:
    return caller.workspace_id, caller.user_id


async def _configurer(request: web.Request) -> Document:
    """The caller as stored now, if an owner or admin: the token's role may be a moment old."""
    caller = await principal(request)
    caller.require_configurer()
    acting = await request.app[IDENTITY].user(*_scope(caller))
    if acting["role"] not in CONFIGURERS:
        raise PermissionDenied(f"the {acting['role']} role may not do this")
    return acting


def _operations() -> list[Operation]:
    auth, users = "auth", "users"
    return [
        Operation("POST", "/api/auth/register", "Create a workspace and its owner", auth,
                  status=202, body=Register, errors=(400, 422, 429), security=None,
                  description="Answers the same whether or not the email already has an "
                  "account, and returns no tokens: sign in next. A mail to the address says "
                  "which it was."),
        Operation("POST", "/api/auth/login", "Sign in", auth, body=Login,
                  errors=(400, 401, 422, 429), security=None),
        Operation("POST", "/api/auth/refresh", "Rotate a refresh token", auth, body=Refresh,
                  errors=(400, 401, 422), security=None),
        Operation("POST", "/api/auth/logout", "Sign out this session", auth, status=204,
                  errors=(401,)),
        Operation("GET", "/api/users/me", "The caller", users, errors=(401,)),
        Operation("GET", "/api/users", "The workspace's members", users, errors=(401,)),
        Operation("POST", "/api/users", "Add a member (owner, admin)", users, status=201,
                  body=NewMember, errors=(400, 401, 403, 409, 422)),
        Operation("PATCH", "/api/users/{user_id}", "Change a member's role or name", users,
                  body=MemberChange, errors=(400, 401, 403, 404, 409, 422)),
        Operation("DELETE", "/api/users/{user_id}", "Remove a member", users, status=204,
                  errors=(401, 403, 404, 409)),
    ]  # fmt: skip


OPERATIONS = _operations()


def create_app(settings: Settings) -> web.Application:
    app = service_app(settings, "users", DEPENDENCIES)
    app[TOKENS] = TokenService(settings)
    app.cleanup_ctx.append(accounts_ctx)
    app.router.add_post("/api/auth/register", register)
    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/auth/refresh", refresh)
    app.router.add_post("/api/auth/logout", logout)
    app.router.add_get("/api/users/me", me)
    app.router.add_get("/api/users", list_members)
    app.router.add_post("/api/users", add_member)
    app.router.add_patch("/api/users/{user_id}", change_member)
    app.router.add_delete("/api/users/{user_id}", remove_member)
    passwords.install(app)
    app.router.add_get("/api/openapi.json", openapi_document)
    return app


async def openapi_document(request: web.Request) -> web.Response:
    """The whole REST API's OpenAPI document (every service's operations), public."""
    return web.json_response(api_document())


def api_document() -> dict[str, object]:
    from web import applications, bots, chatbots, conversations  # the other services' operations

    modules = (sys.modules[__name__], passwords, applications, chatbots, conversations, bots)
    return document(all_operations(vars(module) for module in modules))
