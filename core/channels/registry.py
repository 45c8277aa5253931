"""Channel type → adapter: the one place that knows which platforms Switchboard speaks.

Adding a platform is adding its module and a line here; nothing else names a platform.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from core.channels import api, telegram
from core.channels.base import ChannelAdapter, Credentials, RateLimits
from core.errors import NotFound
from core.security.egress import EgressClient, EgressPolicy
from core.settings import Settings

#: What a tenant gives to connect each type, for the API's description (``Credentials`` models).
CREDENTIALS: Mapping[str, type[Credentials]] = {
    adapter.type: adapter.credentials_model
    for adapter in (telegram.TelegramAdapter, api.ApiChannelAdapter)
}


class UnknownChannelType(NotFound):
    """No adapter of that type: answered as a missing channel."""


#: A call to a tenant's own endpoint (the API channel's webhook): its time, and the most of its
#: answer read (which is ignored).
TENANT_CALL_TIMEOUT_S = 10.0
TENANT_CALL_MAX_RESPONSE_BYTES = 64 * 1024


class ChannelRegistry:
    """One adapter per type, made once per process, closed with it (and what they share)."""

    def __init__(
        self,
        adapters: Mapping[str, ChannelAdapter],
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self._adapters = dict(adapters)
        self._closers = list(closers)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(self._adapters)

    def adapter(self, channel_type: str) -> ChannelAdapter:
        try:
            return self._adapters[channel_type]
        except KeyError:
            raise UnknownChannelType(f"there is no {channel_type!r} channel type") from None

    async def close(self) -> None:
        for adapter in self._adapters.values():
            await adapter.close()
        for close in self._closers:
            await close()


def channel_registry(settings: Settings) -> ChannelRegistry:
    """Every adapter, configured from the settings. Calls to tenants' own URLs (the API
    channel) go through an egress client of their own, which the registry closes."""
    egress = EgressClient(
        EgressPolicy.from_setting(
            settings.channel_allow_networks,
            timeout_s=TENANT_CALL_TIMEOUT_S,
            max_response_bytes=TENANT_CALL_MAX_RESPONSE_BYTES,
            max_redirects=0,  # a signed POST is not re-sent elsewhere
        )
    )
    telegram_limits = RateLimits(
        per_chat_per_s=settings.telegram_chat_rate_per_s,
        per_bot_per_s=settings.telegram_bot_rate_per_s,
    )
    adapters: list[ChannelAdapter] = [
        telegram.TelegramAdapter(settings.telegram_api_base, rate_limits=telegram_limits),
        api.ApiChannelAdapter(egress),
    ]
    return ChannelRegistry({adapter.type: adapter for adapter in adapters}, [egress.close])
