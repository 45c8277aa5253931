"""The users service in-process against the real FerretDB and Redis: accounts, roles, tenants,
tokens (and the attacks on them) and sign-in throttling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.clients.database import Document, database
from core.settings import Settings
from tests.forged_tokens import access_claims, hmac_with, rsa_key_pair, signed, unsigned
from web import users
from web.keys import MONGO

Client = TestClient[web.Request, web.Application]
PASSWORD = "correct horse battery"


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(users.create_app(settings))) as client:
        yield client


def new_address() -> dict[str, str]:
    """A client address of its own (as the gateway would forward it), so that the per-address
    sign-up and sign-in limits of one test or run do not reach into another."""
    n = uuid.uuid4().int
    return {"X-Forwarded-For": f"10.{n % 251}.{(n >> 8) % 251}.{(n >> 16) % 251 + 1}"}


@pytest.fixture
def address() -> dict[str, str]:
    return new_address()


def email() -> str:
    return f"u-{uuid.uuid4().hex[:12]}@example.test"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def users_collection(client: Client, settings: Settings) -> Any:
    return database(client.app[MONGO], settings)["users"]


async def register(client: Client, **overrides: str) -> dict[str, Any]:
    """Sign up, then sign in (sign-up returns no tokens): the user, its workspace's id and the
    session's tokens."""
    body = {"email": email(), "password": PASSWORD, "name": "Ann", "workspace_name": "Acme"}
    address = new_address()
    response = await client.post("/api/auth/register", json={**body, **overrides}, headers=address)
    assert response.status == 202, await response.text()
    signed_up: dict[str, Any] = await response.json()
    tokens = await signed_in(client, address, signed_up["email"])
    me = await client.get("/api/users/me", headers=bearer(tokens["access_token"]))
    user = await me.json()
    return {"user": user, "workspace": {"id": user["workspace_id"]}, **tokens}


async def add_member(client: Client, owner: dict[str, Any], role: str) -> dict[str, Any]:
    body = {"email": email(), "name": role.title(), "role": role, "password": PASSWORD}
    response = await client.post("/api/users", json=body, headers=bearer(owner["access_token"]))
    assert response.status == 201, await response.text()
    member: dict[str, Any] = await response.json()
    return member


async def login(
    client: Client, address: dict[str, str], user_email: str, password: str = PASSWORD
) -> Any:
    return await client.post(
        "/api/auth/login", json={"email": user_email, "password": password}, headers=address
    )


async def signed_in(
    client: Client, address: dict[str, str], user_email: str, password: str = PASSWORD
) -> dict[str, Any]:
    response = await login(client, address, user_email, password)
    assert response.status == 200, await response.text()
    tokens: dict[str, Any] = await response.json()
    return tokens


async def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    error: dict[str, Any] = (await response.json())["error"]
    return error


# Registration and sign-in.


async def test_register_creates_a_workspace_and_its_owner(
    client: Client, settings: Settings, address: dict[str, str]
) -> None:
    given = email().upper()
    body = {"email": given, "password": PASSWORD, "name": "  Ann Lee ", "workspace_name": "Acme"}
    response = await client.post("/api/auth/register", json=body, headers=address)
    assert response.status == 202
    assert await response.json() == {"email": given.lower(), "message": users.SIGNED_UP}
    tokens = await signed_in(client, address, given)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    me = await client.get("/api/users/me", headers=bearer(tokens["access_token"]))
    user = await me.json()
    assert user["email"] == given.lower()
    assert user["name"] == "Ann Lee"
    assert user["role"] == "owner"
    assert "password_hash" not in user
    workspaces = database(client.app[MONGO], settings)["workspaces"]
    workspace = await workspaces.find_one({"_id": user["workspace_id"]})
    assert workspace is not None
    assert workspace["name"] == "Acme"


async def test_the_password_is_stored_as_argon2id(client: Client, settings: Settings) -> None:
    result = await register(client)
    stored: Document = await users_collection(client, settings).find_one(
        {"_id": result["user"]["id"]}
    )
    assert stored["password_hash"].startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in str(stored)


async def test_one_email_registered_at_once_makes_one_account(
    client: Client, settings: Settings
) -> None:
    workspace = f"W {uuid.uuid4().hex}"
    body = {"email": email(), "password": PASSWORD, "name": "A", "workspace_name": workspace}
    responses = await asyncio.gather(
        *(client.post("/api/auth/register", json=body, headers=new_address()) for _ in range(4))
    )
    assert [r.status for r in responses] == [202] * 4
    assert await users_collection(client, settings).count_documents({"email": body["email"]}) == 1
    workspaces = database(client.app[MONGO], settings)["workspaces"]
    assert await workspaces.count_documents({"name": workspace}) == 1


async def test_malformed_json_answers_400(client: Client) -> None:
    response = await client.post(
        "/api/auth/register", data=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    assert (await error_of(response, 400))["code"] == "malformed_json"


async def test_wrong_types_answer_422_per_field_and_store_nothing(
    client: Client, settings: Settings
) -> None:
    address = email()
    response = await client.post(
        "/api/auth/register",
        json={"email": address, "password": 1234567890123, "name": ["x"], "workspace_name": ""},
    )
    error = await error_of(response, 422)
    assert error["code"] == "validation_failed"
    assert {d["field"] for d in error["details"]} == {"password", "name", "workspace_name"}
    assert await users_collection(client, settings).count_documents({"email": address}) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "a b@example.test"),
        ("password", "short"),
        ("password", "x" * 129),
        ("name", "   "),
    ],
)
async def test_bad_values_answer_422(client: Client, field: str, value: str) -> None:
    body = {"email": email(), "password": PASSWORD, "name": "Ann", "workspace_name": "Acme"}
    response = await client.post("/api/auth/register", json={**body, field: value})
    assert [d["field"] for d in (await error_of(response, 422))["details"]] == [field]


async def test_unknown_fields_are_refused(client: Client) -> None:
    body = {"email": email(), "password": PASSWORD, "name": "A", "workspace_name": "W"}
    response = await client.post("/api/auth/register", json={**body, "role": "admin"})
    assert [d["field"] for d in (await error_of(response, 422))["details"]] == ["role"]


async def test_login_with_any_case_of_the_email(client: Client, address: dict[str, str]) -> None:
    result = await register(client)
    tokens = await signed_in(client, address, result["user"]["email"].upper())
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    me = await client.get("/api/users/me", headers=bearer(tokens["access_token"]))
    assert (await me.json())["id"] == result["user"]["id"]


async def test_a_wrong_password_and_a_missing_account_answer_alike(
    client: Client, address: dict[str, str]
) -> None:
    result = await register(client)
    wrong = await error_of(await login(client, address, result["user"]["email"], "x" * 12), 401)
    missing = await error_of(await login(client, address, email()), 401)
    assert wrong == missing
    assert wrong["message"] == users.WRONG_CREDENTIALS


# Members and roles.


async def test_owner_adds_lists_changes_and_removes_members(
    client: Client, address: dict[str, str]
) -> None:
    owner = await register(client)
    admin = await add_member(client, owner, "admin")
    agent = await add_member(client, owner, "agent")
    assert agent["workspace_id"] == owner["workspace"]["id"]
    listed = await client.get("/api/users", headers=bearer(owner["access_token"]))
    ids = [u["id"] for u in (await listed.json())["users"]]
    assert ids == [owner["user"]["id"], admin["id"], agent["id"]]

    agent_tokens = await signed_in(client, address, agent["email"])
    changed = await client.patch(
        f"/api/users/{agent['id']}",
        json={"role": "admin", "name": "Promoted"},
        headers=bearer(owner["access_token"]),
    )
    assert changed.status == 200
    assert {k: (await changed.json())[k] for k in ("role", "name")} == {
        "role": "admin", "name": "Promoted",
    }  # fmt: skip
    # A new role means signing in again: the old token carried the old role.
    stale = await client.get("/api/users/me", headers=bearer(agent_tokens["access_token"]))
    await error_of(stale, 401)

    removed = await client.delete(
        f"/api/users/{agent['id']}", headers=bearer(owner["access_token"])
    )
    assert removed.status == 204
    await error_of(await login(client, address, agent["email"]), 401)
    again = await client.delete(f"/api/users/{agent['id']}", headers=bearer(owner["access_token"]))
    await error_of(again, 404)


async def test_an_agent_may_not_add_members(
    client: Client, settings: Settings, address: dict[str, str]
) -> None:
    owner = await register(client)
    agent = await add_member(client, owner, "agent")
    tokens = await signed_in(client, address, agent["email"])
    newcomer = email()
    response = await client.post(
        "/api/users",
        json={"email": newcomer, "name": "N", "role": "agent", "password": PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert (await error_of(response, 403))["code"] == "forbidden"
    assert await users_collection(client, settings).count_documents({"email": newcomer}) == 0
    listed = await client.get("/api/users", headers=bearer(tokens["access_token"]))
    assert listed.status == 200
    patch = await client.patch(
        f"/api/users/{agent['id']}", json={"role": "admin"}, headers=bearer(tokens["access_token"])
    )
    await error_of(patch, 403)


async def test_only_an_owner_makes_owners(client: Client, address: dict[str, str]) -> None:
    owner = await register(client)
    admin = await add_member(client, owner, "admin")
    agent = await add_member(client, owner, "agent")
    admin_tokens = await signed_in(client, address, admin["email"])
    as_admin = bearer(admin_tokens["access_token"])
    body = {"email": email(), "name": "O", "role": "owner", "password": PASSWORD}
    await error_of(await client.post("/api/users", json=body, headers=as_admin), 403)
    promote = await client.patch(
        f"/api/users/{agent['id']}", json={"role": "owner"}, headers=as_admin
    )
    await error_of(promote, 403)
    demote = await client.patch(
        f"/api/users/{owner['user']['id']}", json={"role": "agent"}, headers=as_admin
    )
    await error_of(demote, 403)
    remove = await client.delete(f"/api/users/{owner['user']['id']}", headers=as_admin)
    await error_of(remove, 403)
    made = await client.post(
        "/api/users", json={**body, "email": email()}, headers=bearer(owner["access_token"])
    )
    assert made.status == 201
    assert (await made.json())["role"] == "owner"


async def test_the_last_owner_stays(client: Client) -> None:
    owner = await register(client)
    as_owner = bearer(owner["access_token"])
    me = owner["user"]["id"]
    demote = await client.patch(f"/api/users/{me}", json={"role": "admin"}, headers=as_owner)
    assert (await error_of(demote, 409))["code"] == "conflict"
    await error_of(await client.delete(f"/api/users/{me}", headers=as_owner), 403)
    second = await add_member(client, owner, "owner")
    demoted = await client.patch(f"/api/users/{me}", json={"role": "admin"}, headers=as_owner)
    assert demoted.status == 200
    assert second["role"] == "owner"


async def test_an_empty_change_answers_422(client: Client) -> None:
    owner = await register(client)
    response = await client.patch(
        f"/api/users/{owner['user']['id']}", json={}, headers=bearer(owner["access_token"])
    )
    await error_of(response, 422)


# Tenancy.


async def test_another_workspaces_users_answer_404_and_stay_unchanged(
    client: Client, address: dict[str, str]
) -> None:
    a, b = await register(client), await register(client)
    b_agent = await add_member(client, b, "agent")
    as_a = bearer(a["access_token"])
    missing = await error_of(
        await client.patch("/api/users/usr_nope", json={"name": "X"}, headers=as_a), 404
    )
    for target in (b_agent["id"], b["user"]["id"]):
        patched = await client.patch(
            f"/api/users/{target}", json={"role": "agent", "name": "Hijacked"}, headers=as_a
        )
        foreign = await error_of(patched, 404)
        assert foreign["message"] == missing["message"].replace("usr_nope", target)
        await error_of(await client.delete(f"/api/users/{target}", headers=as_a), 404)
    a_ids = [
        u["id"] for u in (await (await client.get("/api/users", headers=as_a)).json())["users"]
    ]
    assert a_ids == [a["user"]["id"]]
    b_list = await client.get("/api/users", headers=bearer(b["access_token"]))
    assert {(u["id"], u["name"], u["role"]) for u in (await b_list.json())["users"]} == {
        (b["user"]["id"], "Ann", "owner"),
        (b_agent["id"], "Agent", "agent"),
    }
    await signed_in(client, address, b_agent["email"])


# Tokens and sessions.


async def test_refresh_rotates(client: Client) -> None:
    result = await register(client)
    response = await client.post(
        "/api/auth/refresh", json={"refresh_token": result["refresh_token"]}
    )
    assert response.status == 200
    pair = await response.json()
    assert pair["refresh_token"] != result["refresh_token"]
    me = await client.get("/api/users/me", headers=bearer(pair["access_token"]))
    assert me.status == 200
    again = await client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert again.status == 200


async def test_refresh_reuse_revokes_the_family(client: Client, address: dict[str, str]) -> None:
    result = await register(client)
    other = await signed_in(client, address, result["user"]["email"])  # another session
    first = await client.post("/api/auth/refresh", json={"refresh_token": result["refresh_token"]})
    pair = await first.json()
    reused = await client.post("/api/auth/refresh", json={"refresh_token": result["refresh_token"]})
    assert "already used" in (await error_of(reused, 401))["message"]
    # The whole family is gone: the newest refresh token and its access token too.
    after = await client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    await error_of(after, 401)
    for token in (pair["access_token"], result["access_token"]):
        await error_of(await client.get("/api/users/me", headers=bearer(token)), 401)
    # Another sign-in of the same user is a different family and lives on.
    still = await client.get("/api/users/me", headers=bearer(other["access_token"]))
    assert still.status == 200


async def test_two_refreshes_with_one_token_cannot_both_win(client: Client) -> None:
    result = await register(client)
    body = {"refresh_token": result["refresh_token"]}
    responses = await asyncio.gather(
        *(client.post("/api/auth/refresh", json=body) for _ in range(5))
    )
    # A loser looks exactly like a stolen copy being replayed, so the family ends too.
    assert sorted(r.status for r in responses) == [200] + [401] * 4


async def test_logout_ends_the_session(client: Client) -> None:
    result = await register(client)
    headers = bearer(result["access_token"])
    assert (await client.post("/api/auth/logout", headers=headers)).status == 204
    await error_of(await client.get("/api/users/me", headers=headers), 401)
    refreshed = await client.post(
        "/api/auth/refresh", json={"refresh_token": result["refresh_token"]}
    )
    await error_of(refreshed, 401)
    await error_of(await client.post("/api/auth/logout", headers=headers), 401)


async def test_logout_needs_a_token(client: Client) -> None:
    response = await client.post("/api/auth/logout")
    await error_of(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def _forgeries(settings: Settings, result: dict[str, Any]) -> dict[str, str]:
    user = result["user"]
    claims = access_claims(user["id"], user["workspace_id"], "owner", "ses_forged")
    secret = settings.jwt_secret.get_secret_value()
    now = int(time.time())
    _, public_pem = rsa_key_pair()
    return {
        "alg none": unsigned(claims),
        "public key as HMAC secret": hmac_with(claims, public_pem.encode()),
        "wrong key": signed(claims, "not-the-deployment-secret-at-all"),
        "expired": signed({**claims, "iat": now - 1000, "exp": now - 100}, secret),
        "wrong audience": signed({**claims, "aud": "elsewhere"}, secret),
        "refresh as access": result["refresh_token"],
    }


@pytest.mark.parametrize(
    "attack",
    [
        "alg none",
        "public key as HMAC secret",
        "wrong key",
        "expired",
        "wrong audience",
        "refresh as access",
    ],
)
async def test_forged_tokens_are_refused(client: Client, settings: Settings, attack: str) -> None:
    result = await register(client)
    token = _forgeries(settings, result)[attack]
    for response in (
        await client.get("/api/users/me", headers=bearer(token)),
        await client.get("/api/users", headers=bearer(token)),
        await client.post("/api/auth/logout", headers=bearer(token)),
    ):
        assert (await error_of(response, 401))["code"] == "unauthorized"


async def test_an_access_token_is_not_a_refresh_token(client: Client) -> None:
    result = await register(client)
    response = await client.post(
        "/api/auth/refresh", json={"refresh_token": result["access_token"]}
    )
    await error_of(response, 401)


# Sign-in throttling.


@pytest.mark.parametrize("exists", [True, False])
async def test_the_sixth_bad_login_for_an_account_from_one_address_answers_429(
    client: Client, address: dict[str, str], exists: bool
) -> None:
    target = (await register(client))["user"]["email"] if exists else email()
    errors = []
    for _ in range(6):
        response = await login(client, address, target, "wrong password!")
        errors.append((response.status, response.headers.get("Retry-After")))
    assert [status for status, _ in errors] == [401] * 5 + [429]
    retry_after = errors[-1][1]
    assert retry_after is not None
    assert 0 < int(retry_after) <= 15 * 60
    # Even the right password waits there: the limit does not tell a right guess from a wrong.
    if exists:
        blocked = await login(client, address, target)
        assert blocked.status == 429


async def test_a_success_resets_the_account_count(client: Client, address: dict[str, str]) -> None:
    target = (await register(client))["user"]["email"]
    for _ in range(4):
        await error_of(await login(client, address, target, "wrong password!"), 401)
    await signed_in(client, address, target)
    for _ in range(5):
        await error_of(await login(client, address, target, "wrong password!"), 401)


async def test_one_address_is_limited_across_accounts(
    client: Client, address: dict[str, str]
) -> None:
    for _ in range(30):
        await error_of(await login(client, address, email(), "wrong password!"), 401)
    response = await login(client, address, email(), "wrong password!")
    assert (await error_of(response, 429))["code"] == "too_many_requests"
    assert int(response.headers["Retry-After"]) > 0


# Password change.


async def test_a_password_change_needs_the_current_password(
    client: Client, address: dict[str, str]
) -> None:
    result = await register(client)
    headers = {**bearer(result["access_token"]), **address}
    wrong = await client.post(
        "/api/users/me/password",
        json={"current_password": "not the password", "new_password": "a new password!"},
        headers=headers,
    )
    assert (await error_of(wrong, 403))["code"] == "forbidden"
    short = await client.post(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=headers,
    )
    assert [d["field"] for d in (await error_of(short, 422))["details"]] == ["new_password"]
    changed = await client.post(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a new password!"},
        headers=headers,
    )
    assert changed.status == 200
    assert set(await changed.json()) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
    }
    await error_of(await login(client, address, result["user"]["email"]), 401)
    await signed_in(client, address, result["user"]["email"], "a new password!")
