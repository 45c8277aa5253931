"""Access and refresh tokens: JWTs signed with HS256, checked strictly.

Only HS256 is accepted (never ``none``, never an algorithm the token names for itself), the
audience must be Switchboard's, ``exp``, ``iat``, ``sub`` and ``typ`` are required, and the type
must be the one the caller expects: a refresh token is never an access token. Refresh tokens
belong to a family (one sign-in); ``core.security.sessions`` rotates them and revokes the
family when a spent one comes back.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from core.errors import Unauthorized
from core.settings import Settings

ALGORITHM = "HS256"
AUDIENCE = "switchboard"
ACCESS = "access"
REFRESH = "refresh"
VISITOR = "visitor"


class TokenExpired(Unauthorized):
    """A valid token past its ``exp``: callers that can start afresh tell it apart."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    workspace_id: str
    role: str
    session_id: str  # the refresh family this access token was issued under
    expires_at: float = 0.0


@dataclass(frozen=True)
class RefreshClaims:
    user_id: str
    family_id: str
    token_id: str
    expires_at: float


@dataclass(frozen=True)
class VisitorClaims:
    visitor_id: str
    application_id: str


class TokenService:
    def __init__(self, settings: Settings) -> None:
        self._key = settings.jwt_secret.get_secret_value()
        self.access_ttl_s = settings.access_token_ttl_s
        self.refresh_ttl_s = settings.refresh_token_ttl_s
        self.visitor_ttl_s = settings.visitor_token_ttl_s

    def _sign(self, claims: dict[str, object], ttl_s: int) -> str:
        now = int(time.time())
        payload = {**claims, "aud": AUDIENCE, "iat": now, "exp": now + ttl_s}
        return jwt.encode(payload, self._key, algorithm=ALGORITHM)

    def access_token(self, user_id: str, workspace_id: str, role: str, session_id: str) -> str:
        return self._sign(
            {"sub": user_id, "typ": ACCESS, "ws": workspace_id, "role": role, "sid": session_id},
            self.access_ttl_s,
        )

    def refresh_token(self, user_id: str, family_id: str) -> tuple[str, RefreshClaims]:
        token_id = uuid.uuid4().hex
        token = self._sign(
            {"sub": user_id, "typ": REFRESH, "fam": family_id, "jti": token_id},
            self.refresh_ttl_s,
        )
        return token, RefreshClaims(user_id, family_id, token_id, time.time() + self.refresh_ttl_s)

    def visitor_token(self, visitor_id: str, application_id: str) -> str:
        """A widget visitor's token: who they are to one application, kept by their browser."""
        return self._sign(
            {"sub": visitor_id, "typ": VISITOR, "app": application_id}, self.visitor_ttl_s
        )

    def _decode(self, token: str, expected: str) -> dict[str, object]:
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["exp", "iat", "sub", "typ", "aud"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise TokenExpired("the token has expired") from error
        except jwt.PyJWTError as error:
            raise Unauthorized("the token is not valid") from error
        if claims.get("typ") != expected:
            raise Unauthorized(f"this token is not of type {expected!r}")
        return claims

    def read_access(self, token: str) -> AccessClaims:
        claims = self._decode(token, ACCESS)
        return AccessClaims(
            str(claims["sub"]), str(claims.get("ws", "")), str(claims.get("role", "")),
            str(claims.get("sid", "")), float(str(claims["exp"])),
        )  # fmt: skip

    def read_refresh(self, token: str) -> RefreshClaims:
        claims = self._decode(token, REFRESH)
        return RefreshClaims(
            str(claims["sub"]), str(claims.get("fam", "")), str(claims.get("jti", "")),
            float(str(claims["exp"])),
        )  # fmt: skip

    def read_visitor(self, token: str) -> VisitorClaims:
        claims = self._decode(token, VISITOR)
        return VisitorClaims(str(claims["sub"]), str(claims.get("app", "")))
