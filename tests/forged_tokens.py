"""JWTs an attacker could make, for the tests of ``core.security.tokens`` and of the users
service."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from core.security.tokens import ALGORITHM, AUDIENCE


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, object], claims: dict[str, object]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def access_claims(
    user_id: str = "usr_1", workspace_id: str = "ws_1", role: str = "owner", sid: str = "ses_1"
) -> dict[str, object]:
    now = int(time.time())
    return {
        "sub": user_id, "typ": "access", "ws": workspace_id, "role": role, "sid": sid,
        "aud": AUDIENCE, "iat": now, "exp": now + 600,
    }  # fmt: skip


def signed(claims: dict[str, object], key: str) -> str:
    """Properly signed with ``key`` (the right one, or a wrong one)."""
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def unsigned(claims: dict[str, object]) -> str:
    """``alg: none`` with an empty signature."""
    return _segments({"alg": "none", "typ": "JWT"}, claims) + "."


def hmac_with(claims: dict[str, object], secret: bytes, alg: str = "HS256") -> str:
    """HMAC-signed with an arbitrary secret (PyJWT refuses PEM keys as HMAC secrets, so by hand)."""
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    signing_input = _segments({"alg": alg, "typ": "JWT"}, claims)
    signature = hmac.new(secret, signing_input.encode(), digest).digest()
    return signing_input + "." + _b64(signature)


def rsa_key_pair() -> tuple[str, str]:
    """A private and a public key, PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public
