from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from core.security.egress import EgressClient, EgressPolicy, EgressRefused, check_url

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
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
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
