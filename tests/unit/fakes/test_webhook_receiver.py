"""The fake Standard Webhooks receiver: it takes what the API channel signs and refuses the rest."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from core.channels import standard_webhooks
from core.channels.api import ApiChannelAdapter
from core.channels.base import ChannelAccount, OutboundText, SendFailed
from core.security.egress import EgressClient, EgressPolicy
from tests.fakes.webhook_receiver import WebhookReceiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + "QUJD" * 8
BODY = b'{"type":"message.created","data":{"text":"hello"}}'


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(SECRET) as served:
        yield served


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def adapter() -> AsyncIterator[ApiChannelAdapter]:
    egress = EgressClient(EgressPolicy.from_setting("127.0.0.1/32", timeout_s=2.0))
    try:
        yield ApiChannelAdapter(egress)
    finally:
        await egress.close()


def account(receiver: WebhookReceiver, secret: str = SECRET) -> ChannelAccount:
    return ChannelAccount(
        channel_id="chan-api",
        type="api",
        workspace_id="ws-1",
        application_id="app-1",
        webhook_secret=secret,
        config={"webhook_url": receiver.url},
    )


def outbound(message_id: str = "msg_1", text: str = "Your order shipped.") -> OutboundText:
    return OutboundText(
        message_id=message_id,
        chat_id="customer-9",
        text=text,
        reply_to="msg_0",
        conversation_id="conv-3",
    )


async def post(
    http: aiohttp.ClientSession, receiver: WebhookReceiver, headers: dict[str, str], body: bytes
) -> int:
    async with http.post(receiver.url, data=body, headers=headers) as response:
        return response.status


async def test_the_api_channel_s_signed_sends_are_accepted(
    receiver: WebhookReceiver, adapter: ApiChannelAdapter
) -> None:
    await adapter.send(account(receiver), outbound("msg_1", "first"))
    await adapter.send(account(receiver), outbound("msg_2", "second"))

    assert [(r.id, r.body["data"]["text"]) for r in receiver.received] == [
        ("msg_1", "first"),
        ("msg_2", "second"),
    ]
    first = receiver.received[0]
    assert abs(first.timestamp - time.time()) < 60
    assert first.body["type"] == "message.created"
    assert first.body["data"]["conversation_id"] == "conv-3"
    assert json.loads(first.raw) == first.body
    assert receiver.refused == []


async def test_a_send_signed_with_another_secret_is_refused(
    receiver: WebhookReceiver, adapter: ApiChannelAdapter
) -> None:
    with pytest.raises(SendFailed, match="answered 401"):
        await adapter.send(account(receiver, OTHER_SECRET), outbound())

    assert receiver.received == []
    [refused] = receiver.refused
    assert (refused.status, refused.reason) == (401, "no v1 signature matches the body")


async def test_a_tampered_body_is_refused(
    receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    headers = standard_webhooks.headers(SECRET, "msg_1", BODY)

    status = await post(http, receiver, headers, BODY.replace(b"hello", b"HELLO"))

    assert status == 401
    assert receiver.received == []
    assert receiver.refused[0].raw == BODY.replace(b"hello", b"HELLO")


async def test_the_signature_covers_the_raw_bytes_not_the_json(
    receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    spaced = json.dumps(json.loads(BODY), indent=2).encode()
    headers = standard_webhooks.headers(SECRET, "msg_1", BODY)

    assert await post(http, receiver, headers, spaced) == 401
    resigned = standard_webhooks.headers(SECRET, "msg_1", spaced)
    assert await post(http, receiver, resigned, spaced) == 200
    assert receiver.received[0].raw == spaced


@pytest.mark.parametrize(
    ("age_s", "accepted"),
    [(0, True), (299, True), (-299, True), (301, False), (-301, False)],
)
async def test_timestamps_must_be_within_five_minutes(
    receiver: WebhookReceiver, http: aiohttp.ClientSession, age_s: int, accepted: bool
) -> None:
    headers = standard_webhooks.headers(SECRET, "msg_1", BODY, now=time.time() - age_s)

    status = await post(http, receiver, headers, BODY)

    assert status == (200 if accepted else 401)
    assert len(receiver.received) == int(accepted)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": ""},
        {"webhook-timestamp": ""},
        {"webhook-signature": ""},
        {"webhook-timestamp": "1.7e9"},
        {"webhook-id": "msg_2"},  # the id is signed too
    ],
)
async def test_missing_or_altered_headers_are_refused(
    receiver: WebhookReceiver, http: aiohttp.ClientSession, change: dict[str, str]
) -> None:
    headers = {**standard_webhooks.headers(SECRET, "msg_1", BODY), **change}
    headers = {name: value for name, value in headers.items() if value}

    assert await post(http, receiver, headers, BODY) == 401
    assert len(receiver.refused) == 1


async def test_any_one_of_several_signatures_may_match(
    receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    good = standard_webhooks.headers(SECRET, "msg_1", BODY)
    old = standard_webhooks.sign(OTHER_SECRET, "msg_1", int(good["webhook-timestamp"]), BODY)
    rotating = {**good, "webhook-signature": f"{old} {good['webhook-signature']}"}
    asymmetric = {**good, "webhook-signature": good["webhook-signature"].replace("v1,", "v1a,")}

    assert await post(http, receiver, rotating, BODY) == 200
    assert await post(http, receiver, asymmetric, BODY) == 401


async def test_a_signed_body_that_is_not_json_is_refused(
    receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    headers = standard_webhooks.headers(SECRET, "msg_1", b"not json")

    assert await post(http, receiver, headers, b"not json") == 400
    assert receiver.refused[0].reason == "the body is not JSON"


async def test_the_receiver_s_clock_decides_what_is_stale(http: aiohttp.ClientSession) -> None:
    now = time.time()
    async with WebhookReceiver(SECRET, clock=lambda: now + 3600, status=204) as late:
        assert await post(http, late, standard_webhooks.headers(SECRET, "a", BODY), BODY) == 401
        late_headers = standard_webhooks.headers(SECRET, "b", BODY, now=now + 3600)
        assert await post(http, late, late_headers, BODY) == 204
        assert late.refused[0].reason == "webhook-timestamp is too old"


async def test_down_answers_503_and_the_send_is_retried_later(
    receiver: WebhookReceiver, adapter: ApiChannelAdapter
) -> None:
    await receiver.down()
    with pytest.raises(SendFailed) as failed:
        await adapter.send(account(receiver), outbound())
    await receiver.up()
    await adapter.send(account(receiver), outbound())

    assert not failed.value.permanent
    assert failed.value.reason == "the webhook URL answered 503"
    assert receiver.attempts == 2
    assert [r.id for r in receiver.received] == ["msg_1"]


async def test_down_can_refuse_connections_and_come_back_on_the_same_url(
    receiver: WebhookReceiver, adapter: ApiChannelAdapter
) -> None:
    await adapter.send(account(receiver), outbound("msg_1"))  # leaves a pooled connection
    url = receiver.url

    await receiver.down(refuse_connections=True)
    for _ in range(2):
        with pytest.raises(SendFailed) as failed:
            await adapter.send(account(receiver), outbound("msg_2"))
        assert not failed.value.permanent
    await receiver.up()
    await adapter.send(account(receiver), outbound("msg_2"))

    assert receiver.url == url
    assert receiver.attempts == 2
    assert [r.id for r in receiver.received] == ["msg_1", "msg_2"]


def test_the_secret_must_be_a_standard_webhooks_secret() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        WebhookReceiver("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    with pytest.raises(ValueError, match="2xx"):
        WebhookReceiver(SECRET, status=500)
