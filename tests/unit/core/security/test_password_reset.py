from __future__ import annotations

import hashlib

from core.security.password_reset import token_digest


def test_a_token_is_kept_as_its_sha256() -> None:
    assert token_digest("abc") == hashlib.sha256(b"abc").hexdigest()
