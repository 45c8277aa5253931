"""Sign-in throttling as a password guesser meets it: behind the gateway, from a forged
X-Forwarded-For, against a known email, and from many addresses at once (finding 6)."""

from __future__ import annotations

import asyncio
import subprocess

import aiohttp
import pytest
from redis.asyncio import Redis

from core.security.login_throttle import address_key
from core.settings import Settings
from tests.security.account_harness import (
    PASSWORD,
    WRONG,
    account,
    documentation_address,
    email,
    login,
    loopback,
    users_service,
)


async def test_an_attackers_failed_sign_ins_through_the_gateway_lock_out_no_other_client(
    settings: Settings, web_all: subprocess.Popen[bytes]
) -> None:
    gateway = f"http://127.0.0.1:{settings.gateway_port}"
    owner_source = loopback()
    async with users_service(settings) as direct:
        owner = await account(direct)
    attacker = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(loopback(), 0)))
    statuses = []
    async with attacker:
        for _ in range(settings.login_attempts_per_address + 1):
            # A new forged X-Forwarded-For each time: the gateway must not pass it on as is.
            forged = {"X-Forwarded-For": documentation_address()}
            body = {"email": email(), "password": WRONG}
            async with attacker.post(
                f"{gateway}/api/auth/login", json=body, headers=forged
            ) as response:
                statuses.append(response.status)
    # The gateway forwarded the attacker's real address, so its own limit stopped it ...
    assert statuses == [401] * settings.login_attempts_per_address + [429]
    # ... and only it: another client signs in.
    connector = aiohttp.TCPConnector(local_addr=(owner_source, 0))
    async with aiohttp.ClientSession(connector=connector) as other:
        body = {"email": owner, "password": PASSWORD}
        async with other.post(f"{gateway}/api/auth/login", json=body) as response:
            assert response.status == 200, await response.text()


async def test_behind_a_proxy_every_client_keeps_its_own_limit(settings: Settings) -> None:
    # The proxy is at some address other than 127.0.0.1 (as in a container network).
    proxy = loopback()
    behind = settings.model_copy(update={"trusted_proxies": proxy})
    async with users_service(behind, source=proxy) as client:
        owner = await account(client)
        attacker = documentation_address()
        for _ in range(behind.login_attempts_per_address):
            assert (await login(client, email(), WRONG, attacker)).status == 401
        assert (await login(client, email(), WRONG, attacker)).status == 429
        owner_address = documentation_address()
        response = await login(client, owner, PASSWORD, owner_address)
        assert response.status == 200, await response.text()


async def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(
    settings: Settings, redis: Redis
) -> None:
    # Every peer in a test is loopback. Here 127.0.0.1 itself is not a trusted proxy (the
    # gateway is elsewhere). 127.0.0.1's count is shared with every other test that connects
    # from it, so this probe looks at which counters its attempts went to, not at a 429.
    untrusted = settings.model_copy(update={"trusted_proxies": loopback()})
    before = int(await redis.get(address_key("127.0.0.1")) or 0)
    forged = [documentation_address() for _ in range(3)]
    async with users_service(untrusted) as client:
        for address in forged:
            assert (await login(client, email(), WRONG, address)).status in (401, 429)
    for address in forged:
        assert not await redis.exists(address_key(address))  # no fresh bucket for a lie
    # They counted against the peer's own address (unless its window ended meanwhile).
    after = int(await redis.get(address_key("127.0.0.1")) or 0)
    limit = untrusted.login_attempts_per_address
    assert after >= min(before + len(forged), limit) or after < before


async def test_wrong_passwords_from_an_attacker_do_not_stop_the_owner(
    settings: Settings,
) -> None:
    async with users_service(settings) as client:
        owner = await account(client)
        attacker = documentation_address()
        for _ in range(settings.login_attempts_per_account_address):
            assert (await login(client, owner, WRONG, attacker)).status == 401
        refused = await login(client, owner, WRONG, attacker)
        assert refused.status == 429
        # The attacker is refused even with the right password: no guess gets checked ...
        assert (await login(client, owner, PASSWORD, attacker)).status == 429
        # ... while the owner, from their own address, signs in.
        response = await login(client, owner, PASSWORD, documentation_address())
        assert response.status == 200, await response.text()


async def test_a_refused_attacker_does_not_fill_the_accounts_ceiling(settings: Settings) -> None:
    async with users_service(settings) as client:
        owner = await account(client)
        attacker = documentation_address()
        for _ in range(settings.login_attempts_per_account + 5):
            await login(client, owner, WRONG, attacker)
        response = await login(client, owner, PASSWORD, documentation_address())
        assert response.status == 200, await response.text()


@pytest.mark.parametrize("exists", [True, False])
async def test_the_accounts_ceiling_stops_a_distributed_guesser_briefly(
    settings: Settings, exists: bool
) -> None:
    brief = settings.model_copy(update={"login_account_window_s": 2})
    async with users_service(brief) as client:
        target = await account(client) if exists else email()
        # One guess from each of many addresses: no address reaches its own limits.
        for _ in range(brief.login_attempts_per_account):
            response = await login(client, target, WRONG, documentation_address())
            assert response.status == 401
        refused = await login(client, target, WRONG, documentation_address())
        assert refused.status == 429
        assert 0 < int(refused.headers["Retry-After"]) <= brief.login_account_window_s
        if exists:
            assert (await login(client, target, PASSWORD, documentation_address())).status == 429
        await asyncio.sleep(brief.login_account_window_s + 1)  # the short window ends
        again = await login(client, target, PASSWORD, documentation_address())
        assert again.status == (200 if exists else 401), await again.text()
