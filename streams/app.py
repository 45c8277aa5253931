"""The one Faust app.

Faust needs the app at import time (agents and topics are declared with it), so it is created
here without configuration; ``configure`` applies the settings once, before the worker starts.
"""

from __future__ import annotations

from typing import Any

import faust
from yarl import URL

from core.settings import Settings
from streams.faust_fixes import install_all

APP_ID = "switchboard"

app = faust.App(
    APP_ID,
    autodiscover=["agents", "tables"],
    origin="streams",
    topic_allow_declare=True,
    topic_disable_leader=False,
)


def faust_options(settings: Settings) -> dict[str, Any]:
    """Faust settings derived from Switchboard's settings."""
    from streams.contract import PARTITIONS

    return {
        "broker": [URL(url) for url in settings.kafka_url.split(";")],
        "store": "memory://",
        "datadir": str(settings.worker_datadir),
        # Tables are co-partitioned with the topics their agents consume.
        "topic_partitions": PARTITIONS,
        "topic_replication_factor": 1,
        # No standby replicas: faust-streaming 0.15.3 can crash starting standby partitions
        # during a rebalance that lands mid-recovery (it seeks to a negative offset; seen here).
        # A worker taking over a partition rebuilds its state from the changelog instead.
        "table_standby_replicas": 0,
        # The worker has no HTTP surface of its own; many workers run side by side on one host.
        "web_enabled": False,
        "producer_acks": -1,
        # Agents hand a whole batch to the producer before awaiting acks: let it fill a few
        # large produce requests rather than one small request per record.
        "producer_linger": 0.002,
        "producer_max_batch_size": 256 * 1024,
        # A worker that dies without leaving the group (SIGKILL, a lost host) holds its partitions
        # until its session times out: 10 s rather than Faust's 60 s of stalled conversations.
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 2.0,
        "broker_rebalance_timeout": 20.0,
        "broker_commit_every": 100,
        "broker_commit_interval": 1.0,
        "stream_wait_empty": False,
    }


def configure(settings: Settings) -> faust.App:
    """Apply ``settings`` to the app; call once, before the worker starts.

    Raises ``streams.faust_fixes.FaustMismatch`` when the installed Faust is not the one its
    fixes were written for: the worker must not start then.
    """
    install_all(settings)
    for name, value in faust_options(settings).items():
        setattr(app.conf, name, value)
    app.switchboard_settings = settings  # type: ignore[attr-defined]  # for agents.runtime.context
    return app
