"""HTTP calls to addresses a tenant chose (tool endpoints), refused when they point inward.

A tenant's tool URL must not become a way into the platform's own network (SSRF). A call is
allowed only over http or https, to a host whose every resolved address is public: loopback,
private, link-local (cloud metadata lives there), multicast, carrier-grade NAT, reserved and
unspecified addresses are refused, including IPv4 hidden in IPv6. The connection goes to an
address that was checked (the check is the connector's resolver, so a second DNS answer cannot
swap it), redirects are followed by hand and checked again, and the time and the response size
are capped. Self-hosters whose tools live on their private network allow those networks
explicitly.

The session is shared by every tenant, so it keeps nothing between calls: no cookie jar (a
cookie one tenant's endpoint sets would go with another tenant's call to that host), and a
redirect to another origin, or from https to http, loses the credentials of the call (the
caller's secret headers, and every header whose name says it carries one). Headers that frame
the request or claim an identity (``Host``, ``Content-Length``, ``Transfer-Encoding``,
``Connection``, ``Cookie``, hop-by-hop and forwarding headers) are the client's to set, never a
tenant's, and a CR, LF or NUL in a header is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

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

#: Header names (lower case) that frame the request, are hop-by-hop, or claim an identity: the
#: HTTP client sets what it needs of them, a tenant sets none.
FORBIDDEN_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
    "upgrade", "expect", "proxy-connection", "proxy-authorization", "proxy-authenticate",
    "cookie", "cookie2", "set-cookie", "forwarded", "x-forwarded-for", "x-forwarded-host",
    "x-forwarded-proto", "x-forwarded-port", "x-real-ip", "via",
})  # fmt: skip
#: Parts of a header name that say it carries a credential (``Authorization``, ``X-Api-Key``,
#: ``X-Auth-Token``, ...): such a header does not follow a redirect to another origin.
CREDENTIAL_PARTS = ("auth", "token", "secret", "api-key", "apikey", "password", "session",
                    "cookie", "signature")  # fmt: skip
DEFAULT_PORTS = {"http": 80, "https": 443}


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


def header_refusal(name: str, value: str) -> str | None:
    """Why a header may not be sent as a tenant's, or None when it may."""
    if any(c in name or c in value for c in "\r\n\0"):
        return f"the header {name!r} holds a CR, LF or NUL"
    if name.strip().lower() in FORBIDDEN_HEADERS:
        return f"the header {name} is set by Switchboard's HTTP client, not by a tool"
    return None


def is_credential(name: str) -> bool:
    """Whether a header's name says it carries a credential."""
    lowered = name.lower()
    return any(part in lowered for part in CREDENTIAL_PARTS)


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    return (
        parts.scheme,
        (parts.hostname or "").lower(),
        parts.port or DEFAULT_PORTS.get(parts.scheme),
    )


def keeps_credentials(source: str, target: str) -> bool:
    """Whether a redirect from ``source`` to ``target`` may carry the call's credentials: to the
    same origin, or from http to https on the same host and the default ports (as browsers and
    requests do); never to another origin, nor from https to http."""
    before, after = _origin(urlsplit(source)), _origin(urlsplit(target))
    if before == after:
        return True
    return before == ("http", after[1], 80) and after[0] == "https" and after[2] == 443


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


def check_literal_destination(url: str, policy: EgressPolicy) -> bool:
    """Refuse what can be refused without DNS: the scheme, and a host that is a literal IP the
    policy refuses (aiohttp's connector never asks the resolver about one). True when the host
    is such a literal, so nothing is left to resolve."""
    check_url(url)
    host = urlsplit(url).hostname or ""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return False
    reason = policy.refusal(literal)
    if reason is not None:
        raise EgressRefused(f"{literal} is {reason}")
    return True


async def check_destination(url: str, policy: EgressPolicy) -> None:
    """Refuse a URL the policy would refuse when called: its scheme, and every address its host
    is now (a literal IP, or what the name resolves to). Used when a tool is saved, so a tenant
    learns at once; the call checks again, since a name may resolve elsewhere later."""
    if check_literal_destination(url, policy):
        return
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    await allowed_addresses(parts.hostname or "", port, policy)


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
    """One session whose every connection went through the policy's checks, and that keeps no
    cookie: every tenant's calls share it."""

    policy: EgressPolicy = field(default_factory=EgressPolicy)
    _session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=CheckedResolver(self.policy), use_dns_cache=False
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout_s),
                cookie_jar=aiohttp.DummyCookieJar(),
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
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
        secret_headers: Collection[str] = (),
    ) -> EgressResponse:
        """Call ``url``, following at most ``max_redirects`` redirects, each checked again.

        A redirect that may not keep the credentials (``keeps_credentials``) drops the headers
        named in ``secret_headers`` and every credential-like one, for the rest of the call.
        ``data`` is a body sent as these exact bytes (a signed one), where ``json`` is encoded.
        """
        headers = dict(headers or {})
        for name, value in headers.items():
            reason = header_refusal(name, value)
            if reason is not None:
                raise EgressRefused(reason)
        secret = {name.lower() for name in secret_headers}
        for _ in range(self.policy.max_redirects + 1):
            check_literal_destination(url, self.policy)  # a name is checked as it resolves
            async with self._client().request(
                method,
                url,
                headers=headers,
                json=json,
                data=data,
                params=params,
                allow_redirects=False,
            ) as response:
                if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                    target = urljoin(url, response.headers["Location"])
                    if not keeps_credentials(url, target):
                        headers = {
                            name: value
                            for name, value in headers.items()
                            if name.lower() not in secret and not is_credential(name)
                        }
                    url = target
                    if response.status == 303 or (
                        response.status in (301, 302) and method.upper() == "POST"
                    ):
                        method, json, data = "GET", None, None
                    params = None
                    continue
                body = await _read_capped(response, self.policy.max_response_bytes)
                return EgressResponse(response.status, dict(response.headers), body, url)
        raise EgressRefused(f"more than {self.policy.max_redirects} redirects")


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
