"""Standard Webhooks signatures (standardwebhooks.com): how the API channel signs what it posts.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature is
``v1,<base64 HMAC-SHA256>`` keyed with the secret's bytes (the secret is shown as
``whsec_<base64>``). A receiver recomputes it over the raw body it got, compares in constant
time, and refuses timestamps outside a tolerance so a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

PREFIX = "whsec_"
#: How far a receiver lets a timestamp stray from its clock, as the specification suggests.
TOLERANCE_S = 5 * 60


class SignatureInvalid(ValueError):
    """The request is not signed with the secret, or its timestamp is out of tolerance."""


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three headers of one signed request."""
    timestamp = int(now if now is not None else time.time())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def verify(secret: str, received: Mapping[str, str], body: bytes, now: float | None = None) -> None:
    """Raise ``SignatureInvalid`` unless ``body`` and ``received`` are signed with ``secret``."""
    lowered = {name.lower(): value for name, value in received.items()}
    message_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    if not message_id or not (stamp.isascii() and stamp.isdigit()):
        raise SignatureInvalid("webhook-id or webhook-timestamp is missing")
    if abs((now if now is not None else time.time()) - int(stamp)) > TOLERANCE_S:
        raise SignatureInvalid("webhook-timestamp is too far from now")
    expected = sign(secret, message_id, int(stamp), body).encode()
    # Several signatures may be sent (during a secret rotation), separated by spaces.
    for candidate in lowered.get("webhook-signature", "").split():
        if hmac.compare_digest(candidate.encode(), expected):
            return
    raise SignatureInvalid("no webhook-signature matches")
