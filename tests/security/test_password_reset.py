"""Password resets as an attacker meets them: a link works once and briefly, the database holds
nothing that resets anyone, one user's link cannot reset another, and asking for a link tells
nothing about the email and cannot flood an inbox. A password change ends the other sessions."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from core.clients.database import database
from core.security.password_reset import token_digest
from core.settings import Settings
from tests.fakes.smtp import SmtpServer
from tests.security.account_harness import (
    PASSWORD,
    Client,
    account,
    documentation_address,
    email,
    login,
    users_service,
)
from web.accounts import BACKGROUND
from web.keys import MONGO

NEW_PASSWORD = "a brand new password"


@dataclass
class Harness:
    client: Client
    smtp: SmtpServer
    settings: Settings

    async def request(self, user_email: str, address: str | None = None) -> Any:
        response = await self.client.post(
            "/api/auth/password-reset",
            json={"email": user_email},
            headers={"X-Forwarded-For": address or documentation_address()},
        )
        await self.client.app[BACKGROUND].drain()  # the look-up and the mail follow the answer
        return response

    async def token(self, user_email: str) -> str:
        """Ask for a reset of ``user_email`` and read the token from the link mailed to it."""
        before = len(self.smtp.received)
        assert (await self.request(user_email)).status == 202
        mail = (await self.smtp.wait_for(before + 1))[-1]
        assert mail.recipients == [user_email]
        found = re.search(r"#token=([A-Za-z0-9_-]+)", mail.text)
        assert found is not None, mail.text
        return found.group(1)

    async def complete(self, token: str, password: str = NEW_PASSWORD, **extra: str) -> Any:
        body = {"token": token, "password": password, **extra}
        return await self.client.post("/api/auth/password-reset/complete", json=body)

    def resets(self) -> Any:
        return database(self.client.app[MONGO], self.settings)["password_resets"]


@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    async with SmtpServer() as smtp:
        mailing = settings.model_copy(update={"mail_url": SecretStr(smtp.url)})
        async with users_service(mailing) as client:
            yield Harness(client, smtp, mailing)
        assert smtp.errors == []


async def signs_in(harness: Harness, user_email: str, password: str) -> bool:
    response = await login(harness.client, user_email, password, documentation_address())
    assert response.status in (200, 401), await response.text()
    return bool(response.status == 200)


async def test_a_reset_token_works_once(harness: Harness) -> None:
    owner = await account(harness.client)
    token = await harness.token(owner)
    assert (await harness.complete(token)).status == 204
    replayed = await harness.complete(token, "yet another password")
    assert replayed.status == 400
    assert (await replayed.json())["error"]["code"] == "invalid_reset_token"
    assert await signs_in(harness, owner, NEW_PASSWORD)
    assert not await signs_in(harness, owner, PASSWORD)


async def test_one_token_used_at_once_sets_one_password(harness: Harness) -> None:
    owner = await account(harness.client)
    token = await harness.token(owner)
    passwords = [f"concurrent password {n}" for n in range(4)]
    responses = await asyncio.gather(*(harness.complete(token, p) for p in passwords))
    assert sorted(r.status for r in responses) == [204] + [400] * 3
    winner = passwords[[r.status for r in responses].index(204)]
    assert await signs_in(harness, owner, winner)


async def test_an_expired_token_is_refused(harness: Harness) -> None:
    owner = await account(harness.client)
    token = await harness.token(owner)
    # Its time passes (as the clock would move it past the TTL).
    await harness.resets().update_one(
        {"_id": token_digest(token)}, {"$set": {"expires_at": time.time() - 1}}
    )
    assert (await harness.complete(token)).status == 400
    assert await signs_in(harness, owner, PASSWORD)


async def test_a_token_lasts_only_the_configured_time(harness: Harness) -> None:
    owner = await account(harness.client)
    token = await harness.token(owner)
    stored = await harness.resets().find_one({"_id": token_digest(token)})
    lifetime = stored["expires_at"] - stored["created_at"]
    assert lifetime == harness.settings.password_reset_ttl_s


async def test_the_stored_document_holds_no_usable_token(harness: Harness) -> None:
    owner = await account(harness.client)
    token = await harness.token(owner)
    stored = [doc async for doc in harness.resets().find({})]
    mine = [doc for doc in stored if token_digest(token) == doc["_id"]]
    assert len(mine) == 1
    assert all(token not in str(doc) for doc in stored)
    # What the database holds, presented as a token, resets nothing.
    for doc in mine:
        for value in (str(v) for v in doc.values()):
            assert (await harness.complete(value[:128])).status in (400, 422)
    assert await signs_in(harness, owner, PASSWORD)


async def test_a_token_for_one_user_cannot_reset_another(harness: Harness) -> None:
    a, b = await account(harness.client), await account(harness.client)
    token = await harness.token(a)
    aimed = await harness.complete(token, email=b)  # no field names the user: refused
    assert aimed.status == 422
    assert (await harness.complete(token)).status == 204
    assert await signs_in(harness, a, NEW_PASSWORD)
    assert await signs_in(harness, b, PASSWORD)
    assert not await signs_in(harness, b, NEW_PASSWORD)


async def test_a_new_link_replaces_the_older_one(harness: Harness) -> None:
    owner = await account(harness.client)
    older = await harness.token(owner)
    newer = await harness.token(owner)
    assert (await harness.complete(older)).status == 400
    assert (await harness.complete(newer)).status == 204


async def test_completing_a_reset_ends_every_session(harness: Harness) -> None:
    owner = await account(harness.client)
    sessions = []
    for _ in range(2):
        response = await login(harness.client, owner, PASSWORD, documentation_address())
        sessions.append(await response.json())
    token = await harness.token(owner)
    assert (await harness.complete(token)).status == 204
    for tokens in sessions:
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await harness.client.get("/api/users/me", headers=headers)).status == 401
        refresh = {"refresh_token": tokens["refresh_token"]}
        assert (await harness.client.post("/api/auth/refresh", json=refresh)).status == 401


async def test_asking_for_a_reset_tells_nothing_about_the_email(harness: Harness) -> None:
    owner = await account(harness.client)
    known = await harness.request(owner)
    unknown = await harness.request(email())
    assert (known.status, await known.json()) == (unknown.status, await unknown.json())
    assert known.status == 202
    assert [mail.recipients for mail in harness.smtp.received] == [[owner]]


async def test_reset_requests_are_throttled_per_address(harness: Harness) -> None:
    address = documentation_address()
    for _ in range(harness.settings.password_resets_per_address):
        assert (await harness.request(email(), address)).status == 202
    refused = await harness.request(email(), address)
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) > 0


async def test_an_inbox_gets_only_a_few_links(harness: Harness) -> None:
    owner = await account(harness.client)
    for _ in range(harness.settings.password_resets_per_email + 3):
        assert (await harness.request(owner)).status == 202  # from many addresses
    assert len(harness.smtp.received) == harness.settings.password_resets_per_email


async def test_a_password_change_ends_the_other_sessions(harness: Harness) -> None:
    owner = await account(harness.client)
    stolen = await (await login(harness.client, owner, PASSWORD, documentation_address())).json()
    mine = await (await login(harness.client, owner, PASSWORD, documentation_address())).json()
    changed = await harness.client.post(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers={"Authorization": f"Bearer {mine['access_token']}"},
    )
    assert changed.status == 200, await changed.text()
    fresh = await changed.json()
    for old in (stolen, mine):
        headers = {"Authorization": f"Bearer {old['access_token']}"}
        assert (await harness.client.get("/api/users/me", headers=headers)).status == 401
        refresh = {"refresh_token": old["refresh_token"]}
        assert (await harness.client.post("/api/auth/refresh", json=refresh)).status == 401
    headers = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert (await harness.client.get("/api/users/me", headers=headers)).status == 200
    assert await signs_in(harness, owner, NEW_PASSWORD)


async def test_a_stolen_access_token_cannot_change_the_password(harness: Harness) -> None:
    owner = await account(harness.client)
    stolen = await (await login(harness.client, owner, PASSWORD, documentation_address())).json()
    headers = {
        "Authorization": f"Bearer {stolen['access_token']}",
        "X-Forwarded-For": documentation_address(),
    }
    statuses = []
    for n in range(harness.settings.login_attempts_per_account_address + 1):
        body = {"current_password": f"guess number {n}", "new_password": NEW_PASSWORD}
        response = await harness.client.post("/api/users/me/password", json=body, headers=headers)
        statuses.append(response.status)
    assert statuses == [403] * harness.settings.login_attempts_per_account_address + [429]
    assert await signs_in(harness, owner, PASSWORD)
