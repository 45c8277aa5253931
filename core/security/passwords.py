"""Passwords hashed with Argon2id at OWASP's recommended parameters.

OWASP's Password Storage Cheat Sheet: Argon2id with at least 19 MiB of memory, 2 iterations and
one degree of parallelism. A hash made with weaker parameters is upgraded at the next sign-in.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16)

#: Checked against when the account does not exist, so that the answer takes as long either way.
_DUMMY_HASH = HASHER.hash("switchboard-no-such-account")


async def hash_password(password: str) -> str:
    """Hash off the event loop: one hash is tens of milliseconds of CPU by design."""
    return await asyncio.to_thread(HASHER.hash, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing account costs the same time as a wrong one."""

    def verify() -> bool:
        try:
            return bool(HASHER.verify(stored_hash or _DUMMY_HASH, password)) and bool(stored_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


def needs_rehash(stored_hash: str) -> bool:
    return bool(HASHER.check_needs_rehash(stored_hash))
