"""HTTP calls to addresses a tenant chose (tool endpoints), refused when they point inward.

A tenant's tool URL must not become a way into the platform's own network (SSRF). A call is
allowed only over http or https, to a host whose every resolved address is public: loopback,
private, link-local (cloud metadata lives there), multicast, carrier-grade NAT, reserved and
unspecified addresses are refused, including IPv4 hidden in IPv6. The connection goes to an
address that was checked (the check is the connector's resolver, so a second DNS answer cannot
swap it), redirects are followed by hand and checked again, and the time and the response size
are capped. Self-hosters whose tools live on their private network allow those networks
explicitly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from core.errors import PermissionDenied

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Addresses that answer as a cloud's instance metadata service, beyond link-local ones.
METADATA = {
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
}
CARRIER_NAT = ipaddress.ip_network("100.64.0.0/10")


class EgressRefused(PermissionDenied):
    """The call would reach an address, scheme or size the egress policy does not allow."""


@dataclass(frozen=True)
class EgressPolicy:
    allow: tuple[IPNetwork, ...] = ()  # networks allowed even though they are not public
    timeout_s: float = 10.0
    max_response_bytes: int = 1024 * 1024
    max_redirects: int = 3

    @classmethod
    def from_setting(cls, networks: str, **limits: Any) -> EgressPolicy:
        """From a comma-separated list of networks, such as ``10.1.0.0/16,192.168.5.7``."""
        allowed = tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in networks.split(",")
            if part.strip()
        )
        return cls(allow=allowed, **limits)

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be called, or None when it may."""
        if any(address in network for network in self.allow):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            embedded = address.ipv4_mapped or address.sixtofour or _teredo_client(address)
            if embedded is not None:
                return self.refusal(embedded)
        if address in METADATA:
            return "a cloud metadata address"
        checks = (
            (address.is_loopback, "a loopback address"),
            (address.is_link_local, "a link-local address"),
            (address.is_multicast, "a multicast address"),
            (address.is_unspecified, "an unspecified address"),
            (isinstance(address, ipaddress.IPv4Address) and address in CARRIER_NAT,
             "a carrier-grade NAT address"),
            (address.is_private, "a private address"),
            (address.is_reserved, "a reserved address"),
            (not address.is_global, "not a public address"),
        )  # fmt: skip
        return next((reason for refused, reason in checks if refused), None)


def _teredo_client(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    teredo = address.teredo
    return teredo[1] if teredo else None


def check_url(url: str) -> None:
    """Refuse what no address check can make safe: other schemes, no host, credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise EgressRefused(f"only http and https URLs may be called, not {parts.scheme or url!r}")
    if not parts.hostname:
        raise EgressRefused("the URL has no host")
    if parts.username or parts.password:
        raise EgressRefused("credentials go in headers or secrets, not in the URL")


async def allowed_addresses(host: str, port: int, policy: EgressPolicy) -> list[IPAddress]:
    """Every address ``host`` resolves to, if all of them may be called; refused otherwise."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise EgressRefused(f"{host} does not resolve: {error}") from error
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    for address in addresses:
        reason = policy.refusal(address)
        if reason is not None:
            # One inward answer refuses the host: a rebinding name would get its turn later.
            raise EgressRefused(f"{host} resolves to {address}, {reason}")
    if not addresses:
        raise EgressRefused(f"{host} does not resolve")
    return addresses


async def check_destination(url: str, policy: EgressPolicy) -> None:
    """Refuse a URL the policy would refuse when called: its scheme, and every address its host
    is now (a literal IP, or what the name resolves to). Used when a tool is saved, so a tenant
    learns at once; the call checks again, since a name may resolve elsewhere later."""
    check_url(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        await allowed_addresses(host, port, policy)
        return
    reason = policy.refusal(literal)
    if reason is not None:
        raise EgressRefused(f"{literal} is {reason}")


class CheckedResolver(AbstractResolver):
    """aiohttp's connector connects only to the addresses this resolver checked."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await allowed_addresses(host, port, self._policy)
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class EgressResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


@dataclass
class EgressClient:
    """One session whose every connection went through the policy's checks."""

    policy: EgressPolicy = field(default_factory=EgressPolicy)
    _session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=CheckedResolver(self.policy), use_dns_cache=False
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.policy.timeout_s)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> EgressResponse:
        """Call ``url``, following at most ``max_redirects`` redirects, each checked again."""
        for _ in range(self.policy.max_redirects + 1):
            check_url(url)
            await self._check_literal_host(url)
            async with self._client().request(
                method, url, headers=headers, json=json, params=params, allow_redirects=False
            ) as response:
                if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                    url = urljoin(url, response.headers["Location"])
                    if response.status == 303 or (
                        response.status in (301, 302) and method.upper() == "POST"
                    ):
                        method, json = "GET", None
                    params = None
                    continue
                body = await _read_capped(response, self.policy.max_response_bytes)
                return EgressResponse(response.status, dict(response.headers), body, url)
        raise EgressRefused(f"more than {self.policy.max_redirects} redirects")

    async def _check_literal_host(self, url: str) -> None:
        """aiohttp does not ask the resolver about a literal IP: check it here."""
        host = urlsplit(url).hostname or ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return
        reason = self.policy.refusal(address)
        if reason is not None:
            raise EgressRefused(f"{address} is {reason}")


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limit:
        raise EgressRefused(f"the response is {declared} bytes, over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise EgressRefused(f"the response is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)
