"""Refuse the published default secrets anywhere but on the local stack.

The defaults in ``core.settings`` are in the source code, so anyone can sign a token or open a
sealed credential with them. They are tolerated only where nothing beyond this machine can
reach Switchboard: every address the settings connect to or listen on (Kafka, MongoDB, Redis,
S3, the web services and the gateway) is a loopback one. The local stack itself does not use
them either: its first run generates real ones (``core.security.local_secrets``).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from core.security.local_secrets import SECRET_FIELDS

if TYPE_CHECKING:
    from core.settings import Settings


class DefaultSecret(ValueError):
    """A process off the local stack would run with a published default secret."""


def _loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host(address: str) -> str:
    """The host of ``host``, ``host:port`` or ``[v6]:port``."""
    if address.startswith("["):
        return address[1:].partition("]")[0]
    return address.rpartition(":")[0] if address.count(":") == 1 else address


def _url_hosts(url: str) -> list[str]:
    """Every host of a URL, several for a MongoDB replica set (``mongodb://a:1,b:2/``)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return ["localhost"]
    hosts = parts.netloc.rpartition("@")[2]
    return [_host(one) for one in hosts.split(",")] if hosts else [""]


def addresses(settings: Settings) -> dict[str, list[str]]:
    """The hosts each setting points at, by the environment variable that sets it."""
    return {
        "SWITCHBOARD_KAFKA_URL": [_host(one) for one in settings.kafka_bootstrap.split(",")],
        "SWITCHBOARD_MONGO_URL": _url_hosts(settings.mongo_url),
        "SWITCHBOARD_REDIS_URL": _url_hosts(settings.redis_url),
        "SWITCHBOARD_S3_ENDPOINT": [_host(settings.s3_endpoint)],
        "SWITCHBOARD_WEB_HOST": [settings.web_host],
        "SWITCHBOARD_GATEWAY_HOST": [settings.gateway_host],
    }


def off_local_stack(settings: Settings) -> list[str]:
    """The settings whose address is not loopback: empty on the local stack."""
    return [
        variable
        for variable, hosts in addresses(settings).items()
        if not all(_loopback(host) for host in hosts)
    ]


def on_local_stack(settings: Settings) -> bool:
    return not off_local_stack(settings)


def default_secrets(settings: Settings) -> list[str]:
    """The environment variables of the secrets that still have their published default."""
    found = []
    for field, variable in SECRET_FIELDS.items():
        default = type(settings).model_fields[field].default.get_secret_value()
        if getattr(settings, field).get_secret_value() == default:
            found.append(variable)
    return found


def refuse_defaults(settings: Settings) -> None:
    """Raise :class:`DefaultSecret` off the local stack while a secret has its default value."""
    remote = off_local_stack(settings)
    published = default_secrets(settings)
    if remote and published:
        lines = [
            f"{variable} has its published default value; set it to a secret of your own "
            "(e.g. `openssl rand -hex 32`)"
            for variable in published
        ]
        lines.append(f"(this is not the local stack: {', '.join(remote)} not loopback)")
        raise DefaultSecret("\n".join(lines))
