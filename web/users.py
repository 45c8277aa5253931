"""The users service: workspaces, their operators, sign-in and tokens (/api/auth, /api/users).

Sign-up creates a workspace and its owner; owners and admins add members. Access tokens are
short-lived JWTs; refresh tokens rotate and a spent one coming back revokes its whole session
(``core.security.sessions``). Sign-in is throttled per account and per client address in Redis
(``core.security.login_throttle``), and answers the same for a wrong password as for a missing
account.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, Self

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, model_validator

from core.clients.database import Document, database
from core.errors import PermissionDenied, Unauthorized
from core.security.login_throttle import LoginThrottle
from core.security.passwords import hash_password, needs_rehash, verify_password
from core.security.sessions import SessionStore
from core.security.tokens import TokenService
from core.settings import Settings
from core.stores.identity import (
    OWNER,
    IdentityStore,
    UserNotFound,
    normalise_email,
    public_user,
    public_workspace,
)
from web.auth import CONFIGURERS, TOKENS, Principal, principal, revoked_session_key
from web.health import Dependency
from web.keys import MONGO, REDIS, SETTINGS
from web.openapi import Operation, all_operations, document
from web.service import service_app
from web.validation import parse_body

DEPENDENCIES = (Dependency.MONGODB, Dependency.REDIS)

IDENTITY = web.AppKey("identity", IdentityStore)
SESSIONS = web.AppKey("sessions", SessionStore)
THROTTLE = web.AppKey("login_throttle", LoginThrottle)

WRONG_CREDENTIALS = "the email or the password is not right"

Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(normalise_email)]
Password = Annotated[str, StringConstraints(min_length=10, max_length=128)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Role = Literal["owner", "admin", "agent"]


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Register(Body):
    email: Email
    password: Password
    name: Name
    workspace_name: Name


class Login(Body):
    email: Email
    # Not the sign-up policy: a sign-in is only ever right or wrong.
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


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


def client_address(request: web.Request) -> str:
    """The caller's address. Behind the gateway (Traefik on loopback, which drops forwarded
    headers from untrusted clients and sets its own) it is the first X-Forwarded-For entry."""
    remote = request.remote or "unknown"
    if remote != "127.0.0.1":
        return remote
    forwarded = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
    try:
        return str(ipaddress.ip_address(forwarded))
    except ValueError:
        return remote


async def _issue(request: web.Request, user: Document) -> dict[str, Any]:
    """A new session (refresh family) for ``user`` and its first token pair."""
    tokens = request.app[TOKENS]
    family_id = SessionStore.new_family_id()
    refresh, claims = tokens.refresh_token(user["_id"], family_id)
    await request.app[SESSIONS].start(user["workspace_id"], claims)
    return _pair(tokens, user, family_id, refresh)


def _pair(tokens: TokenService, user: Document, family_id: str, refresh: str) -> dict[str, Any]:
    access = tokens.access_token(user["_id"], user["workspace_id"], user["role"], family_id)
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": tokens.access_ttl_s,
    }


async def register(request: web.Request) -> web.Response:
    body = await parse_body(request, Register)
    password_hash = await hash_password(body.password)
    user, workspace = await request.app[IDENTITY].register(
        email=body.email, name=body.name, password_hash=password_hash,
        workspace_name=body.workspace_name,
    )  # fmt: skip
    tokens = await _issue(request, user)
    payload = {"user": public_user(user), "workspace": public_workspace(workspace), **tokens}
    return web.json_response(payload, status=201)


async def login(request: web.Request) -> web.Response:
    body = await parse_body(request, Login)
    address = client_address(request)
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
    return web.json_response(await _issue(request, user))


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
    return web.json_response(_pair(tokens, user, family["_id"], successor_token))


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


async def _identity_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = database(app[MONGO], settings)
    app[IDENTITY] = IdentityStore(db)
    app[SESSIONS] = SessionStore(
        db, app[REDIS], revoked_key=revoked_session_key, access_ttl_s=settings.access_token_ttl_s
    )
    app[THROTTLE] = LoginThrottle(app[REDIS])
    yield


def _operations() -> list[Operation]:
    auth, users = "auth", "users"
    return [
        Operation("POST", "/api/auth/register", "Create a workspace and its owner", auth,
                  status=201, body=Register, errors=(400, 409, 422), security=None),
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
    app.cleanup_ctx.append(_identity_ctx)
    app.router.add_post("/api/auth/register", register)
    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/auth/refresh", refresh)
    app.router.add_post("/api/auth/logout", logout)
    app.router.add_get("/api/users/me", me)
    app.router.add_get("/api/users", list_members)
    app.router.add_post("/api/users", add_member)
    app.router.add_patch("/api/users/{user_id}", change_member)
    app.router.add_delete("/api/users/{user_id}", remove_member)
    app.router.add_get("/api/openapi.json", openapi_document)
    return app


async def openapi_document(request: web.Request) -> web.Response:
    """The whole REST API's OpenAPI document (every service's operations), public."""
    return web.json_response(api_document())


def api_document() -> dict[str, object]:
    from web import applications, chatbots, conversations  # the other services' operations

    modules = (sys.modules[__name__], applications, chatbots, conversations)
    return document(all_operations(vars(module) for module in modules))
