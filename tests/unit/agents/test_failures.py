from __future__ import annotations

from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError
from pymongo.errors import AutoReconnect, DuplicateKeyError

from agents.failures import RetryPolicy, is_transient
from streams.records import UndecodableRecord


def test_transient_or_not() -> None:
    assert is_transient(AutoReconnect("primary stepped down"))
    assert is_transient(KafkaTimeoutError())
    assert is_transient(UnknownTopicOrPartitionError())
    assert not is_transient(UndecodableRecord("not JSON"))
    assert not is_transient(DuplicateKeyError("dup"))
    assert not is_transient(KeyError("x"))


def test_backoff_is_bounded() -> None:
    policy = RetryPolicy(attempts=6, first_delay_s=0.2, max_delay_s=5.0)
    delays = [policy.delay(n) for n in range(1, 20)]
    assert all(0 < d <= 5.0 for d in delays)
    assert policy.delay(1) <= 0.2
