"""Who is calling: the operator behind a bearer access token, and what their role allows.

Every REST handler except sign-up, sign-in and refresh starts with ``await principal(request)``
(the service needs Redis, for sign-outs, and ``TOKENS`` set to a ``TokenService``).
Every store query is then scoped by ``principal.workspace_id``: an id from another workspace
answers 404 exactly as a missing one does (``core.errors.NotFound``), and a role that may not
do something answers 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from core.errors import PermissionDenied, Unauthorized
from core.security.tokens import TokenService
from web.keys import REDIS

TOKENS = web.AppKey("tokens", TokenService)

#: Roles, most powerful first. Agents work conversations; admins and owners also configure.
ROLES = ("owner", "admin", "agent")
CONFIGURERS = ("owner", "admin")


@dataclass(frozen=True)
class Principal:
    user_id: str
    workspace_id: str
    role: str
    session_id: str

    def require(self, *roles: str) -> None:
        if self.role not in roles:
            raise PermissionDenied(f"the {self.role} role may not do this")

    def require_configurer(self) -> None:
        self.require(*CONFIGURERS)


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("sign in first: send 'Authorization: Bearer <access token>'")
    return token.strip()


def revoked_session_key(session_id: str) -> str:
    """Set (with the access tokens' lifetime) when a session signs out or its family is
    revoked: access tokens are stateless, so this is what makes them stop at once."""
    return f"session:revoked:{session_id}"


async def principal(request: web.Request) -> Principal:
    """The caller, from a valid access token of a live session; Unauthorized (401) otherwise."""
    claims = request.app[TOKENS].read_access(bearer_token(request))
    if claims.role not in ROLES or not claims.workspace_id or not claims.session_id:
        raise Unauthorized("the token is not valid")
    if await request.app[REDIS].exists(revoked_session_key(claims.session_id)):
        raise Unauthorized("this session has signed out")
    return Principal(claims.user_id, claims.workspace_id, claims.role, claims.session_id)
