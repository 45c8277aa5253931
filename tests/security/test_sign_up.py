"""Sign-up as an enumerator and a flooder meet it: a known email answers exactly as a new one,
and one address gets a bounded number of sign-ups (finding 7)."""

from __future__ import annotations

from typing import Any

from core.clients.database import database
from core.settings import Settings
from tests.security.account_harness import (
    PASSWORD,
    Client,
    documentation_address,
    email,
    login,
    users_service,
)
from web.keys import MONGO

#: Headers that differ between any two answers.
VARYING = {"Date"}


async def sign_up(client: Client, address: str, **body: str) -> tuple[int, dict[str, str], Any]:
    fields = {"email": email(), "password": PASSWORD, "name": "Ann", "workspace_name": "Acme"}
    response = await client.post(
        "/api/auth/register", json={**fields, **body}, headers={"X-Forwarded-For": address}
    )
    headers = {k: v for k, v in response.headers.items() if k not in VARYING}
    return response.status, headers, await response.json()


async def test_a_known_email_answers_exactly_as_a_new_one(settings: Settings) -> None:
    async with users_service(settings) as client:
        known = email()
        first = await sign_up(client, documentation_address(), email=known)
        # Another sign-up with it, another password and workspace: as if it were new.
        again = await sign_up(
            client, documentation_address(), email=known, password="another password!",
            workspace_name="Taken over",
        )  # fmt: skip
        new = await sign_up(client, documentation_address(), email=known.replace("probe", "fresh"))
        assert again == first
        status, headers, body = new
        assert (status, headers) == first[:2]
        assert body == {**first[2], "email": known.replace("probe", "fresh")}
        assert status == 202
        assert "access_token" not in body  # the client signs in next
        # The known account is unchanged, and no workspace was made for the second try.
        assert (await login(client, known, PASSWORD, documentation_address())).status == 200
        assert (
            await login(client, known, "another password!", documentation_address())
        ).status == 401
        workspaces = database(client.app[MONGO], settings)["workspaces"]
        assert await workspaces.count_documents({"name": "Taken over"}) == 0


async def test_the_sign_up_after_the_limit_from_one_address_answers_429(
    settings: Settings,
) -> None:
    async with users_service(settings) as client:
        address = documentation_address()
        for _ in range(settings.signups_per_address):
            assert (await sign_up(client, address))[0] == 202
        over = email()
        response = await client.post(
            "/api/auth/register",
            json={"email": over, "password": PASSWORD, "name": "A", "workspace_name": "W"},
            headers={"X-Forwarded-For": address},
        )
        assert response.status == 429
        assert (await response.json())["error"]["code"] == "too_many_requests"
        assert 0 < int(response.headers["Retry-After"]) <= settings.signup_window_s
        users = database(client.app[MONGO], settings)["users"]
        assert await users.count_documents({"email": over}) == 0
        # Only that address waits.
        assert (await sign_up(client, documentation_address()))[0] == 202
