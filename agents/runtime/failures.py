"""Per-message failure handling shared by every agent.

Faust acks a message whose agent raised, so nothing may escape an agent's loop: every step runs
inside ``with_retries``, which retries transient failures (a backing service that is briefly
away) with bounded, jittered backoff, and a record that fails anyway — persistently, or past
its retries — goes to ``<topic>.dlq`` with the reason, key, offset and attempts. The partition
then moves on: a poison record never blocks the ones behind it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka.errors import KafkaError
from pymongo.errors import AutoReconnect, ConnectionFailure, NetworkTimeout, WTimeoutError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core import ids
from core.errors import ValidationFailed
from streams.contract import MESSAGES_OUTBOUND, PLATFORM_OUTBOUND
from streams.records import (
    ConversationEvent,
    DeadLetter,
    PipelineRecord,
    UndecodableRecord,
    decode,
    encode,
)
from streams.topics import DEAD_LETTERS, conversation_events

#: Topics whose dead letters are messages that did not reach their user.
DELIVERY_TOPICS = (MESSAGES_OUTBOUND, PLATFORM_OUTBOUND)

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT: tuple[type[BaseException], ...] = (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    WTimeoutError,
    RedisConnectionError,
    RedisTimeoutError,
    KafkaError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delay(self, attempt: int) -> float:
        base = min(self.max_delay_s, self.first_delay_s * 2 ** (attempt - 1))
        jitter = random.uniform(0.5, 1.0)  # noqa: S311 (spreads retries, not a secret)
        return float(base * jitter)


DEFAULT_POLICY = RetryPolicy()


def is_transient(error: BaseException) -> bool:
    if isinstance(error, KafkaError):
        return bool(getattr(error, "retriable", False)) or type(error).__name__.endswith(
            "TimeoutError"
        )
    return isinstance(error, TRANSIENT)


class GaveUp(Exception):
    """An action that failed for good: a persistent error, or a transient one past its retries."""

    def __init__(self, error: BaseException, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


async def with_retries(
    action: Callable[[], Awaitable[T]], what: str, policy: RetryPolicy = DEFAULT_POLICY
) -> T:
    """Run ``action``, again after a transient failure (bounded, jittered backoff); or give up."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await action()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not (is_transient(error) and attempt < policy.attempts):
                raise GaveUp(error, attempt) from error
            delay = policy.delay(attempt)
            log.warning(
                "%s: transient failure (attempt %d), retrying in %.2fs: %r",
                what,
                attempt,
                delay,
                error,
            )
            await asyncio.sleep(delay)


async def dead_letter(event: Any, stage: str, error: BaseException, attempts: int) -> None:
    message = event.message
    key = (
        message.key.decode(errors="replace") if isinstance(message.key, bytes) else str(message.key)
    )
    await dead_letter_value(
        message.topic, message.partition, message.offset, key, message.value, stage, error, attempts
    )


async def dead_letter_value(
    topic: str,
    partition: int,
    offset: int,
    key: str,
    value: object,
    stage: str,
    error: BaseException,
    attempts: int,
) -> None:
    """Dead-letter a record of ``topic``: one read from Kafka, or one a stage kept aside (the
    platform sender's parked sends, with partition and offset -1)."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    letter = DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        reason=str(error)[:2000] or type(error).__name__,
        error_type=type(error).__name__,
        attempts=attempts,
        failed_at=time.time(),
        value=text,
        stage=stage,
    )
    log.error(
        "%s: dead-lettered %s[%d]@%d key=%s after %d attempt(s): %r",
        stage,
        topic,
        partition,
        offset,
        key,
        attempts,
        error,
    )
    sends = [(DEAD_LETTERS[f"{topic}.dlq"], key, encode(letter))]
    failed_delivery = _delivery_failure(topic, value, letter)
    if failed_delivery is not None:
        sends.append((conversation_events, key, encode(failed_delivery)))
    # The dead-letter topic lives on the same broker as the input: if it cannot take the letter,
    # Kafka itself is away, and waiting (not acking the input) is the only way to lose nothing.
    for target, record_key, record in sends:
        attempt = 0
        while True:
            attempt += 1
            try:
                pending = await target.send(key=record_key, value=record)
                await pending
                break
            except Exception as publish_error:
                if not is_transient(publish_error):
                    raise
                await asyncio.sleep(DEFAULT_POLICY.delay(min(attempt, 6)))


def _delivery_failure(topic: str, value: object, letter: DeadLetter) -> ConversationEvent | None:
    """Operators hear of a message that could not be delivered (it is in the dead-letter topic,
    where ``switchboard replay redrive`` can send it again)."""
    if topic not in DELIVERY_TOPICS:
        return None
    try:
        record = decode(value if isinstance(value, bytes | str) else None)
    except UndecodableRecord:
        return None  # nothing says whose message it was
    kind = "delivery.failed"
    return ConversationEvent(
        **record.envelope(ids.event_id(record.message_id, kind), time.time()),
        type=kind,
        subject_id=record.message_id,
        data={
            "stage": letter.stage,
            "reason": letter.reason[:500],
            "error_type": letter.error_type,
            "attempts": letter.attempts,
            "dead_letter_topic": f"{topic}.dlq",
        },
    )


Record = TypeVar("Record", bound=PipelineRecord)


async def handle_one(
    event: Any,
    stage: str,
    kind: type[Record],
    work: Callable[[Record], Awaitable[None]],
    name: Callable[[Record], str],
) -> None:
    """One record of a stage that takes them one at a time, start to end: decoded and checked,
    worked with retries; a poison record, or one that keeps failing, goes to the dead-letter
    topic. Nothing escapes."""
    try:
        record = decode(event.message.value)
        if not isinstance(record, kind):
            raise ValidationFailed(
                f"{type(record).__name__} does not belong on {event.message.topic}"
            )
        await with_retries(lambda: work(record), f"{stage}: {name(record)}")
    except GaveUp as failure:
        await dead_letter(event, stage, failure.error, failure.attempts)
    except (UndecodableRecord, ValidationFailed) as error:  # a poison record
        await dead_letter(event, stage, error, 1)
