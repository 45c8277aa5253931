"""Channel type → adapter: the one place that knows which platforms Switchboard speaks.

Adding a platform is adding its module and a line here; nothing else names a platform.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.channels import api, telegram
from core.channels.base import ChannelAdapter
from core.errors import NotFound
from core.security.egress import EgressClient
from core.settings import Settings


class UnknownChannelType(NotFound):
    """No adapter of that type: answered as a missing channel."""


class ChannelRegistry:
    """One adapter per type, made once per process, closed with it."""

    def __init__(self, adapters: Mapping[str, ChannelAdapter]) -> None:
        self._adapters = dict(adapters)

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


def channel_registry(settings: Settings, egress: EgressClient) -> ChannelRegistry:
    """Every adapter, configured from the settings; ``egress`` carries the API channel's calls."""
    adapters: list[ChannelAdapter] = [
        telegram.TelegramAdapter(settings.telegram_api_base),
        api.ApiChannelAdapter(egress),
    ]
    return ChannelRegistry({adapter.type: adapter for adapter in adapters})
