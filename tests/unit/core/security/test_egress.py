from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from core.security.egress import (
    EgressClient,
    EgressPolicy,
    EgressRefused,
    check_url,
    header_refusal,
    is_credential,
    keeps_credentials,
)

LOOPBACK = EgressPolicy.from_setting("127.0.0.1/32")

# Those that lead to this machine use the test endpoint's port: a call that got through would
# show up among its hits.
REFUSED = [
    "http://127.0.0.1:{port}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:{port}/",
    "http://10.0.0.1/",
    "http://0x7f000001:{port}/",
    "http://localhost:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://100.64.0.1/",
    "http://192.168.1.10/",
    "http://0.0.0.0:{port}/",
]


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "93.184.216.34"])
def test_public_addresses_may_be_called(address: str) -> None:
    assert EgressPolicy().refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.0.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
    ],
)
def test_inward_addresses_are_refused(address: str, reason: str) -> None:
    refusal = EgressPolicy().refusal(ipaddress.ip_address(address))
    assert refusal is not None
    assert reason in refusal


def test_an_allow_list_opens_chosen_networks_only() -> None:
    policy = EgressPolicy.from_setting("10.1.0.0/16, 192.168.5.7")
    assert policy.refusal(ipaddress.ip_address("10.1.2.3")) is None
    assert policy.refusal(ipaddress.ip_address("192.168.5.7")) is None
    assert policy.refusal(ipaddress.ip_address("10.2.0.1")) is not None


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "file:///etc/passwd", "http:///nohost", "http://u:p@example.com/"]
)
def test_urls_that_no_address_check_can_save(url: str) -> None:
    with pytest.raises(EgressRefused):
        check_url(url)


class Endpoint:
    """A local HTTP server that counts the requests that reach it."""

    def __init__(self) -> None:
        self.hits = 0
        self.seen: list[dict[str, str]] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self.seen.append(dict(request.headers))
        if request.path == "/cookie":
            response = web.json_response({"ok": True})
            response.set_cookie("sid", "first-caller")
            return response
        if request.path == "/elsewhere":
            raise web.HTTPTemporaryRedirect(request.query["to"])
        if request.path == "/metadata-redirect":
            raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")
        if request.path == "/hop":
            raise web.HTTPFound("/ok")
        if request.path == "/big":
            return web.Response(body=b"x" * (2 * 1024 * 1024))
        return web.json_response({"ok": True, "method": request.method})

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    served = Endpoint()
    await served.server.start_server()
    try:
        yield served
    finally:
        await served.server.close()


@pytest.mark.parametrize("url", REFUSED)
async def test_refused_calls_make_no_connection(url: str, endpoint: Endpoint) -> None:
    client = EgressClient()
    port = endpoint.server.port
    try:
        with pytest.raises(EgressRefused):
            await client.request(
                "GET", url.replace("/", f":{port}/", 3).replace(f":{port}//", "//", 1)
            )
    finally:
        await client.close()
    assert endpoint.hits == 0


async def test_the_default_policy_refuses_the_local_endpoint(endpoint: Endpoint) -> None:
    client = EgressClient()
    try:
        with pytest.raises(EgressRefused, match="loopback"):
            await client.request("GET", endpoint.url("/ok"))
    finally:
        await client.close()
    assert endpoint.hits == 0


async def test_allowed_calls_redirects_and_caps(endpoint: Endpoint) -> None:
    client = EgressClient(LOOPBACK)
    try:
        answer = await client.request("POST", endpoint.url("/ok"), json={"a": 1})
        assert answer.status == 200
        assert b'"ok": true' in answer.body
        hopped = await client.request("GET", endpoint.url("/hop"))
        assert hopped.url.endswith("/ok")
        with pytest.raises(EgressRefused, match="link-local"):
            await client.request("GET", endpoint.url("/metadata-redirect"))
        with pytest.raises(EgressRefused, match="limit"):
            await client.request("GET", endpoint.url("/big"))
    finally:
        await client.close()
    assert endpoint.hits == 5, "the metadata address itself was never contacted"


@pytest.mark.parametrize(
    ("name", "value", "refused"),
    [
        ("Host", "x", True),
        ("transfer-encoding", "chunked", True),
        ("Content-Length", "1", True),
        ("Connection", "close", True),
        ("Cookie", "a=b", True),
        ("Upgrade", "h2c", True),
        ("X-Forwarded-For", "10.0.0.1", True),
        ("X-Ok", "one\r\nHost: x", True),
        ("X-Ok", "nul\0", True),
        ("Accept", "application/json", False),
        ("Authorization", "Bearer x", False),
    ],
)
def test_framing_and_identity_headers_are_refused(name: str, value: str, refused: bool) -> None:
    assert (header_refusal(name, value) is not None) is refused


def test_credential_headers_are_known_by_name() -> None:
    for name in ("Authorization", "X-Api-Key", "X-Auth-Token", "Cookie", "X-Client-Secret"):
        assert is_credential(name), name
    for name in ("Accept", "X-Shop", "Idempotency-Key", "Content-Type"):
        assert not is_credential(name), name


@pytest.mark.parametrize(
    ("source", "target", "kept"),
    [
        ("https://a.example/x", "https://a.example/y", True),
        ("https://a.example/x", "https://A.example:443/y", True),
        ("http://a.example/x", "https://a.example/y", True),  # an upgrade on the default ports
        ("https://a.example/x", "http://a.example/x", False),
        ("https://a.example/x", "https://b.example/x", False),
        ("https://a.example/x", "https://a.example:8443/x", False),
        ("http://a.example:8080/x", "https://a.example/x", False),
    ],
)
def test_which_redirects_keep_the_credentials(source: str, target: str, kept: bool) -> None:
    assert keeps_credentials(source, target) is kept


async def test_a_header_a_tenant_may_not_set_makes_no_request(endpoint: Endpoint) -> None:
    client = EgressClient(LOOPBACK)
    try:
        with pytest.raises(EgressRefused, match="Host"):
            await client.request("GET", endpoint.url("/ok"), headers={"Host": "admin.internal"})
    finally:
        await client.close()
    assert endpoint.hits == 0


async def test_the_session_keeps_no_cookie_between_calls(endpoint: Endpoint) -> None:
    client = EgressClient(LOOPBACK)
    try:
        await client.request("GET", endpoint.url("/cookie").replace("127.0.0.1", "localhost"))
        await client.request("GET", endpoint.url("/ok").replace("127.0.0.1", "localhost"))
    finally:
        await client.close()
    assert "Cookie" not in endpoint.seen[1]


async def test_another_origin_gets_no_secret_header(endpoint: Endpoint) -> None:
    client = EgressClient(EgressPolicy.from_setting("127.0.0.1/32,::1/128"))
    other_origin = endpoint.url("/ok").replace("127.0.0.1", "localhost")
    headers = {"Authorization": "Bearer s", "X-Sealed": "s", "X-Api-Key": "s", "X-Shop": "shoes"}
    try:
        await client.request(
            "GET",
            endpoint.url("/elsewhere"),
            headers=headers,
            params={"to": other_origin},
            secret_headers=["x-sealed"],
        )
    finally:
        await client.close()
    first, second = endpoint.seen
    assert {name for name in headers if name in first} == set(headers)
    assert {name for name in headers if name in second} == {"X-Shop"}
