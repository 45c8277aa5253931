"""Credentials at rest (tool secrets, model API keys), encrypted with the settings' key.

Fernet (AES-128-CBC with an HMAC) from ``cryptography``: a stored value is useless without
``SWITCHBOARD_ENCRYPTION_KEY``, and a tampered one is refused rather than decrypted to garbage.
The key setting may be any string; the Fernet key is derived from it, so rotating the setting
makes old values unreadable (re-enter them after a rotation).
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from core.errors import ValidationFailed

PREFIX = "enc:v1:"


class SecretUnreadable(ValidationFailed):
    """A stored secret was not encrypted with this deployment's key, or was altered."""


class SecretBox:
    def __init__(self, key: str) -> None:
        derived = hashlib.sha256(b"switchboard-secrets\x1f" + key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, plaintext: str) -> str:
        sealed: bytes = self._fernet.encrypt(plaintext.encode())
        return PREFIX + sealed.decode()

    def open(self, sealed: str) -> str:
        if not sealed.startswith(PREFIX):
            raise SecretUnreadable("the value is not a sealed secret")
        try:
            opened: bytes = self._fernet.decrypt(sealed[len(PREFIX) :].encode())
        except InvalidToken as error:
            raise SecretUnreadable("the secret cannot be read with this encryption key") from error
        return opened.decode()
